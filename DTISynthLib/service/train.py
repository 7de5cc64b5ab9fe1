"""The training job: paired data -> a model package of the chosen generator kind (runs under
torchrun too). The kind's own training step does the work (generators.registry); the package then
gains the out-of-distribution check of its training inputs (service.input_check)."""

import os
from pathlib import Path

from ..core.atomic import make_output_dir, remove_empty_folders
from ..core.progress import NullReporter
from ..generators.intensity import Intensity
from ..generators.package import read_manifest
from ..generators.registry import kind_named, trainer_of
from ..training.config import TrainConfig, TrainingRun
from .input_check import add_input_check


def train_config(request):
    """The training hyper-parameters of a requests.TrainingRequest."""
    return TrainConfig(epochs=request.epochs, decay_epochs=request.decay_epochs, lr=request.lr,
                       lambda_l1=request.lambda_l1, batch_size=request.batch_size, accumulate=request.accumulate,
                       ngf=request.ngf, ndf=request.ndf, depth=request.depth, dropout=not request.no_dropout,
                       seed=request.seed, deterministic=not request.nondeterministic, amp=request.amp,
                       channels_last=request.channels_last, flip_augment=request.flip_augment, device=request.device)


def train(request, reporter=NullReporter()):
    """Train a model package (requests.TrainingRequest) in request.out (written or updated); returns its
    manifest path."""
    train_kind = trainer_of(kind_named(request.kind))
    created = make_output_dir(request.out)
    run = TrainingRun(Path(request.data), Path(request.out), train_config(request),
                      Intensity(request.intensity or Intensity().mode, request.quantise_8bit), list(request.direction),
                      request.grid, request.validation_fraction, not request.no_register, request.resume,
                      request.weights_dtype, reporter, request.validation_subjects, request.intensity is not None)
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
