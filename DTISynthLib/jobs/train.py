"""`dtisynth train`: paired data -> a model package of the chosen generator kind (runs under torchrun
too). The kind's own training step does the work (generators.registry)."""

import argparse
from pathlib import Path

from ..core.atomic import make_output_dir, remove_empty_folders
from ..core.progress import NullReporter
from ..generators.intensity import INTENSITY_MODES
from ..generators.package import read_manifest
from ..generators.registry import DEFAULT_KIND, KINDS
from ..generators.runner import DEVICES
from ..training.config import AMP_MODES
from .options import (
    add_jsonl_option,
    fraction,
    non_negative_float,
    non_negative_int,
    parse_slice_grid,
    positive_float,
    positive_int,
)

NAME = "train"
HELP = "train a model package: six pix2pix generators (also under torchrun) or one tensor-unet"


def add_arguments(parser):
    parser.add_argument("--data", required=True,
                        help="folder of <name>_acq-dwi3_dwi / <name>_acq-dti6_dwi pairs (tensor-unet uses only the "
                             "6-direction DTIs: noise-free phantom subjects, tensor-mode pairs of real scans)")
    parser.add_argument("--out", required=True, help="model folder (manifest.json + safetensors weights)")
    parser.add_argument("--kind", choices=sorted(KINDS), default=DEFAULT_KIND,
                        help=f"generator kind (default {DEFAULT_KIND}: the seed paper's six pix2pix models)")
    parser.add_argument("--direction", type=parse_directions, default="all", help="all (default) or a comma list of 1-6")
    parser.add_argument("--epochs", type=positive_int, default=100, help="epochs at constant learning rate (default 100)")
    parser.add_argument("--decay-epochs", type=non_negative_int, default=0, help="further epochs of linear decay (default 0)")
    parser.add_argument("--batch-size", type=positive_int, default=1)
    parser.add_argument("--accumulate", type=positive_int, default=1, help="micro-batches per optimiser step")
    parser.add_argument("--lr", type=positive_float, default=2e-4)
    parser.add_argument("--lambda-l1", type=non_negative_float, default=100.0)
    parser.add_argument("--ngf", type=positive_int, default=64)
    parser.add_argument("--ndf", type=positive_int, default=64)
    parser.add_argument("--depth", type=positive_int, default=7, help="down-samplings: 7 for 128 x 128, 8 for 256 x 256")
    parser.add_argument("--grid", type=parse_slice_grid, help="slice grid H x W (default: from the data)")
    parser.add_argument("--intensity", choices=INTENSITY_MODES, default="paper",
                        help="paper (raw, clipped at 255) or relative (signal / b=0, full precision)")
    parser.add_argument("--quantise-8bit", action="store_true", help="8-bit values, as the paper's PNG files")
    parser.add_argument("--validation-fraction", type=fraction, default=0.1)
    parser.add_argument("--validation-subjects", type=lambda text: [s for s in text.split(",") if s],
                        help="comma list of subject names to hold out for validation (instead of a random "
                             "--validation-fraction of them)")
    parser.add_argument("--no-register", action="store_true", help="the DWI is already on the DTI grid")
    parser.add_argument("--flip-augment", action="store_true",
                        help="left-right flips, pairing each direction with its mirrored partner")
    parser.add_argument("--no-dropout", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nondeterministic", action="store_true", help="allow faster non-deterministic kernels")
    parser.add_argument("--amp", choices=AMP_MODES, default="none", help="autocast: bf16 (CPU / GPU), fp16 (GPU)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto (default: a CUDA GPU if any), cpu or cuda")
    parser.add_argument("--weights-dtype", choices=("float32", "float16"), default="float32")
    parser.add_argument("--resume", action="store_true", help="continue each direction from its last checkpoint")
    add_jsonl_option(parser)


def run(args, reporter):
    from ..generators.intensity import Intensity
    from ..training.config import TrainConfig

    config = TrainConfig(epochs=args.epochs, decay_epochs=args.decay_epochs, lr=args.lr, lambda_l1=args.lambda_l1,
                         batch_size=args.batch_size, accumulate=args.accumulate, ngf=args.ngf, ndf=args.ndf,
                         depth=args.depth, dropout=not args.no_dropout, seed=args.seed,
                         deterministic=not args.nondeterministic, amp=args.amp, channels_last=args.channels_last,
                         flip_augment=args.flip_augment, device=args.device)
    manifest = run_training(args.data, args.out, args.direction, config,
                            Intensity(args.intensity, args.quantise_8bit), args.grid, args.validation_fraction,
                            not args.no_register, args.resume, args.weights_dtype, reporter, args.kind,
                            args.validation_subjects)
    reporter.result([manifest], f"model package in {args.out}: {describe(args.out)}")


def run_training(data_dir, out_dir, directions, config, intensity, grid=None, validation_fraction=0.1,
                 register=True, resume=False, weights_dtype="float32", reporter=NullReporter(), kind=DEFAULT_KIND,
                 validation_subjects=None):
    """Train a model package of generator `kind` in `out_dir` (written or updated); returns its manifest
    path. directions: DTI directions (1-6) to train."""
    from ..generators.registry import kind_named
    from ..training.config import TrainingRequest

    trainer = kind_named(kind)
    created = make_output_dir(out_dir)
    request = TrainingRequest(Path(data_dir), Path(out_dir), config, intensity, list(directions), grid,
                              validation_fraction, register, resume, weights_dtype, reporter, validation_subjects)
    try:
        manifest = trainer.train(request)
    except BaseException:
        remove_empty_folders(created)  # checkpoints written before the failure stay for --resume
        raise
    from .input_check import add_input_check

    add_input_check(out_dir, data_dir, reporter=reporter)  # the out-of-distribution check of its training inputs
    return manifest


def parse_directions(text):
    """'all' or a comma list of 1-6 -> sorted indices (an option type: a bad value is a usage error)."""
    if text == "all":
        return list(range(1, 7))
    try:
        values = sorted({int(v) for v in text.split(",")})
    except ValueError:
        values = []
    if not values or min(values) < 1 or max(values) > 6:
        raise argparse.ArgumentTypeError(f"expected 'all' or a comma list of numbers 1-6, not {text!r}")
    return values


def describe(out_dir):
    """Each trained network's validation L1, from the package's manifest."""
    manifest = read_manifest(out_dir)
    entries = manifest.get("networks") or manifest["directions"]
    return ", ".join(f"{e.get('name', 'd' + str(e.get('index')))}: val L1 "
                     f"{e.get('validation', {}).get('val_L1', float('nan')):.4f}" for e in entries)
