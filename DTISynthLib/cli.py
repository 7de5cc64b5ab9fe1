"""Command line: `dtisynth ...` and `python -m DTISynthLib ...`.

Each job prints a progress bar on stderr, or with --jsonl JSON-lines events on stdout (progress.py).
Exit codes: 0 success, 2 bad input or usage, 1 unexpected failure.
"""

import argparse
import sys

from . import __version__
from .dwi_files import FORMATS
from .errors import InputError
from .progress import ProgressReporter
from .tensor_fit import METHODS
from .tensor_maps import EIGEN_POLICIES, MAP_NAMES


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
        elif args.job == "demo":
            from .demo import run_demo
            outputs, message = run_demo(args.out, reporter)
            reporter.result(outputs, message)
    except (InputError, ValueError) as exc:
        reporter.error(str(exc))
        return 2
    return 0
