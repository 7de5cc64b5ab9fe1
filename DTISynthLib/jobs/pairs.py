"""`dtisynth pairs`: a 3-direction input and a 6-direction target from a multi-direction scan."""

import json
from pathlib import Path

from ..core.atomic import atomic_output_dir, write_text_atomic
from ..core.dwi import select_shell
from ..core.gradient_schemes import DEFAULT_B
from ..core.output_layout import DTI6, DWI3, PAIRS_REPORT, acquisition_name
from ..core.progress import NullReporter
from ..io.files import load_dwi, save_dwi
from ..simulation.pairs import ANGLE_WARNING_DEGREES, MODES, make_pairs
from .options import add_jsonl_option, positive_float

NAME = "pairs"
HELP = "3-direction input and 6-direction target from a multi-direction scan"


def add_arguments(parser):
    parser.add_argument("dwi", help="multi-direction DWI (NIfTI + bval/bvec, NRRD or DICOM folder)")
    parser.add_argument("--bval")
    parser.add_argument("--bvec")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--mode", choices=MODES, default="nearest",
                        help="nearest measured volumes (default) or signals predicted from the full tensor fit")
    parser.add_argument("--b", type=positive_float, default=DEFAULT_B, help="b-value of predicted signals (tensor mode)")
    parser.add_argument("--shell", type=float, help="shell to use in multi-shell data (s/mm^2)")
    add_jsonl_option(parser)


def run(args, reporter):
    outputs, report = run_pairs(args.dwi, args.out, args.mode, args.b, args.bval, args.bvec, args.shell, reporter)
    angles = report["dwi3_angle_degrees"] + report["dti6_angle_degrees"]
    reporter.result(outputs, f"wrote {args.out}; largest angle from nominal {max(angles):.1f} degrees"
                    + "".join(f"\nwarning: {w}" for w in report["warnings"]))


def run_pairs(path, out_dir, mode="nearest", b=DEFAULT_B, bval=None, bvec=None, shell=None, reporter=NullReporter()):
    """Write <stem>_acq-dwi3_dwi and <stem>_acq-dti6_dwi (NIfTI + bval/bvec) and pairs.json."""
    dwi = select_shell(load_dwi(path, bval, bvec), shell)
    reporter.progress("pairs", 0.1, f"{mode} from {dwi.data.shape[3]} volumes")
    dwi3, dti6, report = make_pairs(dwi, mode, b)
    stem = Path(path).name.split(".")[0] if not Path(path).is_dir() else Path(path).name
    warnings = [f"{name} direction {i + 1}: {angle:.1f} degrees from nominal"
                for name in (DWI3, DTI6) for i, angle in enumerate(report[f"{name}_angle_degrees"])
                if angle > ANGLE_WARNING_DEGREES]
    report["warnings"] = warnings
    with atomic_output_dir(out_dir) as staging:
        written = save_dwi(staging / acquisition_name(stem, DWI3), dwi3) + \
            save_dwi(staging / acquisition_name(stem, DTI6), dti6)
        write_text_atomic(staging / PAIRS_REPORT, json.dumps(report, indent=2, sort_keys=True) + "\n")
        names = [p.name for p in written] + [PAIRS_REPORT]
    reporter.progress("pairs", 1.0, "; ".join(warnings) or "all directions within 10 degrees")
    return [Path(out_dir) / name for name in names], report
