"""Command line: `dtisynth ...` and `python -m DTISynthLib ...`.

Each job prints a progress bar on stderr, or with --jsonl JSON-lines events on stdout (progress.py).
Exit codes: 0 success, 2 bad input or usage, 1 unexpected failure.
"""

import argparse

from . import __version__
from .cohort import PAPER_GRID
from .dwi_files import FORMATS
from .errors import InputError
from .gradient_schemes import DEFAULT_B
from .pairs import MODES
from .progress import ProgressReporter
from .simulation import SCHEMES
from .synthesis import PRECISIONS
from .tensor_fit import METHODS
from .tensor_maps import EIGEN_POLICIES, MAP_NAMES
from .train_config import AMP_MODES
from .training_data import INTENSITY_MODES


def parse_grid(text, dims=3):
    """'128x128x76' -> (128, 128, 76); with dims=2, '128x128' -> (128, 128). Each size at least 8."""
    try:
        grid = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        grid = ()
    if len(grid) != dims or min(grid) < 8:
        example = "x".join(["128", "128", "76"][:dims])
        raise argparse.ArgumentTypeError(f"expected a grid like {example} (each at least 8), not {text!r}")
    return grid


def parse_slice_grid(text):
    return parse_grid(text, dims=2)


def build_parser():
    parser = argparse.ArgumentParser(prog="dtisynth", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"dtisynth {__version__}")
    jobs = parser.add_subparsers(dest="job", required=True)

    fit = jobs.add_parser("fit", help="fit diffusion tensors and write FA / MD / AD / RD / colour maps")
    fit.add_argument("dwi", help="DWI: .nii/.nii.gz (+ FSL bval/bvec), .nrrd/.nhdr (Slicer DWI) or a DICOM folder")
    fit.add_argument("--bval", help="FSL b-values file (default: beside the NIfTI, same name)")
    fit.add_argument("--bvec", help="FSL b-vectors file (default: beside the NIfTI, same name)")
    fit.add_argument("--out", required=True, help="output folder")
    fit.add_argument("--mask", help="brain mask on the DWI grid (default: computed from the mean b=0)")
    fit.add_argument("--method", choices=METHODS, default="iwls",
                     help="ols, wls (OLS-predicted weights, as dipy) or iwls (MRtrix3's default; default)")
    fit.add_argument("--maps", default=",".join(MAP_NAMES), help=f"comma list from {','.join(MAP_NAMES)} (default: all)")
    fit.add_argument("--format", choices=FORMATS, default="nifti", help="output format (default nifti)")
    fit.add_argument("--eigenvalues", choices=EIGEN_POLICIES, default="keep",
                     help="negative eigenvalues: keep (as MRtrix3; default) or clip to 0 (as dipy)")
    fit.add_argument("--shell", type=float, help="b-value of the shell to fit in multi-shell data (s/mm^2)")
    fit.add_argument("--jsonl", action="store_true", help="JSON-lines progress events on stdout")

    simulate = jobs.add_parser("simulate", help="simulate paired DWI / DTI data on the digital brain phantom")
    what = simulate.add_subparsers(dest="what", required=True)
    cohort = what.add_parser("cohort", help="N subjects: 3-direction DWI, 6-direction DTI and ground truth")
    cohort.add_argument("--n", type=int, required=True, help="number of subjects")
    cohort.add_argument("--out", required=True, help="output folder (BIDS-like layout)")
    cohort.add_argument("--scheme", choices=SCHEMES, default="sampled",
                        help="eigenvalue scheme of paper 2 (default sampled, from the embedded reference subject)")
    cohort.add_argument("--sample-from", help="DWI whose tensor fit supplies the eigenvalues (sampled schemes)")
    cohort.add_argument("--snr", type=float, default=30.0, help="b=0 white-matter SNR (default 30)")
    cohort.add_argument("--grid", type=parse_grid, default=PAPER_GRID,
                        help="voxels, e.g. 128x128x76 (default; the field of view is fixed at 220x220x152 mm)")
    cohort.add_argument("--seed", type=int, required=True, help="random seed: the same seed gives the same bytes")
    cohort.add_argument("--no-variation", action="store_true",
                        help="no pose, misregistration, deformation or diffusivity variation between subjects")
    cohort.add_argument("--jsonl", action="store_true", help="JSON-lines progress events on stdout")

    atlas = what.add_parser("atlas", help="the embedded default atlas: ROI labels, T1-like, FA and b=0 templates")
    atlas.add_argument("--out", required=True, help="output folder")
    atlas.add_argument("--grid", type=parse_grid, default=PAPER_GRID, help="voxels (default 128x128x76)")
    atlas.add_argument("--jsonl", action="store_true", help="JSON-lines progress events on stdout")

    pairs = jobs.add_parser("pairs", help="3-direction input and 6-direction target from a multi-direction scan")
    pairs.add_argument("dwi", help="multi-direction DWI (NIfTI + bval/bvec, NRRD or DICOM folder)")
    pairs.add_argument("--bval")
    pairs.add_argument("--bvec")
    pairs.add_argument("--out", required=True, help="output folder")
    pairs.add_argument("--mode", choices=MODES, default="nearest",
                       help="nearest measured volumes (default) or signals predicted from the full tensor fit")
    pairs.add_argument("--b", type=float, default=DEFAULT_B, help="b-value of predicted signals (tensor mode)")
    pairs.add_argument("--shell", type=float, help="shell to use in multi-shell data (s/mm^2)")
    pairs.add_argument("--jsonl", action="store_true", help="JSON-lines progress events on stdout")

    train = jobs.add_parser("train", help="train pix2pix generators, one per DTI direction (runs under torchrun too)")
    train.add_argument("--data", required=True, help="folder of <name>_acq-dwi3_dwi / <name>_acq-dti6_dwi pairs")
    train.add_argument("--out", required=True, help="model folder (manifest.json + safetensors weights)")
    train.add_argument("--direction", default="all", help="all (default) or a comma list of 1-6")
    train.add_argument("--epochs", type=int, default=100, help="epochs at constant learning rate (default 100)")
    train.add_argument("--decay-epochs", type=int, default=0, help="further epochs of linear decay (default 0)")
    train.add_argument("--batch-size", type=int, default=1)
    train.add_argument("--accumulate", type=int, default=1, help="micro-batches per optimiser step")
    train.add_argument("--lr", type=float, default=2e-4)
    train.add_argument("--lambda-l1", type=float, default=100.0)
    train.add_argument("--ngf", type=int, default=64)
    train.add_argument("--ndf", type=int, default=64)
    train.add_argument("--depth", type=int, default=7, help="down-samplings: 7 for 128 x 128, 8 for 256 x 256")
    train.add_argument("--grid", type=parse_slice_grid, help="slice grid H x W (default: from the data)")
    train.add_argument("--intensity", choices=INTENSITY_MODES, default="paper",
                       help="paper (raw, clipped at 255) or relative (signal / b=0, full precision)")
    train.add_argument("--quantise-8bit", action="store_true", help="8-bit values, as the paper's PNG files")
    train.add_argument("--validation-fraction", type=float, default=0.1)
    train.add_argument("--no-register", action="store_true", help="the DWI is already on the DTI grid")
    train.add_argument("--flip-augment", action="store_true",
                       help="left-right flips, pairing each direction with its mirrored partner")
    train.add_argument("--no-dropout", action="store_true")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--nondeterministic", action="store_true", help="allow faster non-deterministic kernels")
    train.add_argument("--amp", choices=AMP_MODES, default="none", help="autocast: bf16 (CPU / GPU), fp16 (GPU)")
    train.add_argument("--channels-last", action="store_true")
    train.add_argument("--device", default="auto", help="auto, cpu or cuda")
    train.add_argument("--weights-dtype", choices=("float32", "float16"), default="float32")
    train.add_argument("--resume", action="store_true", help="continue each direction from its last checkpoint")
    train.add_argument("--jsonl", action="store_true", help="JSON-lines progress events on stdout")

    synth = jobs.add_parser("synthesize", help="synthesize a 6-direction DTI from a 3-direction DWI, with maps")
    synth.add_argument("--dwi", required=True, help="3-direction DWI with b=0 (NIfTI + bval/bvec, NRRD or DICOM folder)")
    synth.add_argument("--bval")
    synth.add_argument("--bvec")
    synth.add_argument("--b0", help="reference b=0 to register the DWI to (default: the DWI's own b=0)")
    synth.add_argument("--models", help="model folder (default: the shipped demo set)")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    synth.add_argument("--force-b", action="store_true", help="accept a b-value other than the models'")
    synth.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="auto (default: bf16 where the hardware computes it natively, else fp32), fp32, or bf16 "
                            "(autocast + channels_last with an fp32 output layer)")
    synth.add_argument("--jsonl", action="store_true", help="JSON-lines progress events on stdout")

    evaluate = jobs.add_parser("evaluate", help="compare synthetic with original DTI: atlas ROIs, statistics, report")
    evaluate.add_argument("--original", required=True,
                          help="the acquired DTI (b=0 + 6 or more directions), or a cohort folder of "
                               "<subject>_acq-dti6_dwi files")
    evaluate.add_argument("--synthetic", required=True,
                          help="a `dtisynth synthesize` output folder (or its synthetic_dti file); for a cohort, "
                               "a folder with one such folder per subject")
    evaluate.add_argument("--out", required=True, help="output folder")
    evaluate.add_argument("--atlas", action="append", default=[],
                          help="atlas folder (atlas_dseg.nii.gz, atlas_b0 / atlas_FA.nii.gz, labels.tsv); repeat "
                               "for several; 'embedded' is the phantom atlas (the default)")
    evaluate.add_argument("--rois", type=lambda text: [r for r in text.split(",") if r],
                          help="comma-separated ROIs (default: the seed paper's five)")
    evaluate.add_argument("--jobs", type=int, default=1, help="subjects evaluated in parallel (cohort mode)")
    evaluate.add_argument("--jsonl", action="store_true", help="JSON-lines progress events on stdout")

    scene = jobs.add_parser("scene", help="write a Slicer scene bundle (.mrb) of synthesis (and evaluation) results")
    scene.add_argument("--results", required=True, help="a `dtisynth synthesize` output folder")
    scene.add_argument("--evaluation", help="a `dtisynth evaluate` output folder for the same subject")
    scene.add_argument("--out", required=True, help="the scene file (.mrb)")
    scene.add_argument("--name", default="DTISynth", help="name of the subject-hierarchy folder and node prefix")
    scene.add_argument("--jsonl", action="store_true", help="JSON-lines progress events on stdout")

    demo = jobs.add_parser("demo", help="simulate a phantom, fit it and write maps and a montage")
    demo.add_argument("--out", required=True, help="output folder")
    demo.add_argument("--jsonl", action="store_true", help="JSON-lines progress events on stdout")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    reporter = ProgressReporter(jsonl=args.jsonl)
    try:
        if args.job == "fit":
            from .fit_job import run_fit
            outputs = run_fit(args.dwi, args.out, args.bval, args.bvec, args.mask, args.method, args.maps,
                              args.format, args.eigenvalues, args.shell, reporter)
            reporter.result(outputs, f"wrote {len(outputs)} files to {args.out}")
        elif args.job == "simulate" and args.what == "atlas":
            from .cohort import write_atlas
            outputs = write_atlas(args.out, args.grid)
            reporter.result(outputs, f"wrote the atlas ({len(outputs)} files) to {args.out}")
        elif args.job == "simulate":
            from .cohort import write_cohort
            outputs = write_cohort(args.out, args.n, args.scheme, args.seed, args.snr, args.grid, args.sample_from,
                                   vary=not args.no_variation, reporter=reporter)
            reporter.result(outputs, f"wrote {args.n} subjects ({len(outputs)} files) to {args.out}")
        elif args.job == "pairs":
            from .pairs import run_pairs
            outputs, report = run_pairs(args.dwi, args.out, args.mode, args.b, args.bval, args.bvec, args.shell,
                                        reporter)
            angles = report["dwi3_angle_degrees"] + report["dti6_angle_degrees"]
            reporter.result(outputs, f"wrote {args.out}; largest angle from nominal {max(angles):.1f} degrees"
                            + "".join(f"\nwarning: {w}" for w in report["warnings"]))
        elif args.job == "train":
            from .train_config import TrainConfig
            from .train_job import describe, parse_directions, run_training
            from .training_data import Intensity
            config = TrainConfig(epochs=args.epochs, decay_epochs=args.decay_epochs, lr=args.lr,
                                 lambda_l1=args.lambda_l1, batch_size=args.batch_size, accumulate=args.accumulate,
                                 ngf=args.ngf, ndf=args.ndf, depth=args.depth, dropout=not args.no_dropout,
                                 seed=args.seed, deterministic=not args.nondeterministic, amp=args.amp,
                                 channels_last=args.channels_last, flip_augment=args.flip_augment, device=args.device)
            manifest = run_training(args.data, args.out, parse_directions(args.direction), config,
                                    Intensity(args.intensity, args.quantise_8bit), args.grid, args.validation_fraction,
                                    not args.no_register, args.resume, args.weights_dtype, reporter)
            reporter.result([manifest], f"model package in {args.out}: {describe(args.out)}")
        elif args.job == "synthesize":
            from .synthesis import keep_freed_heap_memory, run_synthesis
            keep_freed_heap_memory()
            outputs, report = run_synthesis(args.dwi, args.out, args.b0, args.models, args.device, args.force_b,
                                            args.bval, args.bvec, reporter, args.precision)
            reporter.result(outputs, f"synthetic DTI in {args.out}" + "".join(f"\nwarning: {w}" for w in report["warnings"]))
        elif args.job == "evaluate":
            from .evaluation import run_evaluation
            outputs, summary = run_evaluation(args.original, args.synthetic, args.out, args.atlas, args.rois,
                                              args.jobs, reporter)
            flagged = sum(1 for row in summary["table2"] if row["flag"])
            reporter.result(outputs, f"evaluation of {len(summary['subjects'])} subject(s) in {args.out}; report "
                            f"{args.out}/report.html" + (f"\nwarning: {flagged} flagged row(s) in table2.csv" if flagged
                                                         else ""))
        elif args.job == "scene":
            from .mrml_adapter import write_scene_bundle
            reporter.progress("scene", 0.0, f"nodes from {args.results}")
            out, roles = write_scene_bundle(args.results, args.out, args.evaluation, args.name)
            reporter.result([out], f"Slicer scene {out} with {len(roles)} nodes: open it in Slicer (File > Add Data)")
        elif args.job == "demo":
            from .demo import run_demo
            from .synthesis import keep_freed_heap_memory
            keep_freed_heap_memory()
            outputs, message = run_demo(args.out, reporter)
            reporter.result(outputs, message)
    except (InputError, ValueError) as exc:
        reporter.error(str(exc))
        return 2
    return 0
