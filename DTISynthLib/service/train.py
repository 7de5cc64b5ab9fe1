"""The training job: paired data -> a model package of the chosen generator kind (runs under
torchrun too). The kind's own training step does the work (generators.registry); the package then
gains the out-of-distribution check of its training inputs (service.input_check)."""

import os
from pathlib import Path

from ..core.atomic import make_output_dir, remove_empty_folders
from ..core.errors import InputError
from ..core.progress import NullReporter
from ..generators.intensity import Intensity
from ..generators.package import read_manifest
from ..generators.registry import DEFAULT_KIND, kind_named, trainer_of
from ..training.config import TrainConfig, TrainingRun
from .input_check import add_input_check


FINE_TUNING = {"epochs": 10, "lr": 1e-4}  # --init-from's defaults: a tenth of the default set's rate, briefly


def parent_package(request):
    """The checked manifest of --init-from (None without it); refuses a --kind, --ngf, --depth or --grid
    that is not the package's own (fine-tuning keeps its architecture, and its model grid and voxel size:
    the spatial scale its network learned; a site's pairs are resampled onto them)."""
    if request.init_from is None:
        if request.add_direction_channels:
            raise InputError("--add-direction-channels", "with --init-from (a tensor-unet package without them)",
                             "no --init-from")
        return None
    parent = read_manifest(request.init_from)
    generator = parent.architecture.get("generator") or {}
    for option, given, own in (("--kind", request.kind, parent.kind), ("--ngf", request.ngf, generator.get("ngf")),
                               ("--depth", request.depth, generator.get("depth")),
                               ("--grid", request.grid and tuple(request.grid), parent.grid)):
        if given is not None and given != own:
            raise InputError(option, f"the --init-from package's own ({own}) or left out", repr(given))
    return parent


def train_config(request, parent=None):
    """The training hyper-parameters of a requests.TrainingRequest: the options left out take
    TrainConfig's defaults, or with a parent package (--init-from) its architecture and fine-tuning's
    epochs and learning rate."""
    defaults = TrainConfig()
    generator = parent.architecture.get("generator", {}) if parent else {}
    tuning = FINE_TUNING if parent else {"epochs": defaults.epochs, "lr": defaults.lr}
    given = {"epochs": request.epochs, "lr": request.lr, "ngf": request.ngf, "depth": request.depth}
    chosen = {k: v if v is not None else generator.get(k, tuning.get(k, getattr(defaults, k)))
              for k, v in given.items()}
    return TrainConfig(**chosen, decay_epochs=request.decay_epochs, lambda_l1=request.lambda_l1,
                       batch_size=request.batch_size, accumulate=request.accumulate, ndf=request.ndf,
                       dropout=not request.no_dropout, seed=request.seed, deterministic=not request.nondeterministic,
                       amp=request.amp, channels_last=request.channels_last, flip_augment=request.flip_augment,
                       device=request.device, loader_workers=request.workers)


def train(request, reporter=NullReporter()):
    """Train a model package (requests.TrainingRequest) in request.out (written or updated); returns its
    manifest path."""
    parent = parent_package(request)
    train_kind = trainer_of(kind_named(request.kind or (parent.kind if parent else DEFAULT_KIND)))
    created = make_output_dir(request.out)
    run = TrainingRun(Path(request.data), Path(request.out), train_config(request, parent),
                      Intensity(request.intensity or Intensity().mode, request.quantise_8bit), list(request.direction),
                      request.grid, request.validation_fraction, not request.no_register, request.resume,
                      request.weights_dtype, reporter, request.validation_subjects, request.intensity is not None,
                      request.init_from, request.add_direction_channels)
    try:
        manifest = train_kind(run)
    except BaseException:
        remove_empty_folders(created)  # checkpoints written before the failure stay for --resume
        raise
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun the package is rank 0's to write
        add_input_check(request.out, request.data, reporter=reporter)  # the out-of-distribution check of its inputs
    return manifest


def describe(out_dir):
    """Each trained network's validation L1, from the package's manifest."""
    manifest = read_manifest(out_dir)
    entries = manifest.data.get("networks") or manifest.data["directions"]
    return ", ".join(f"{e.get('name', 'd' + str(e.get('index')))}: val L1 "
                     f"{e.get('validation', {}).get('val_L1', float('nan')):.4f}" for e in entries)
