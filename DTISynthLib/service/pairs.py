"""The pairs job: a 3-direction input and a 6-direction target from a multi-direction scan."""

import json
from pathlib import Path

from ..core.atomic import atomic_output_dir, write_text_atomic
from ..core.dwi import select_shell
from ..core.output_layout import DTI6, DWI3, PAIRS_REPORT, acquisition_name
from ..core.progress import NullReporter
from ..io.files import load_dwi, save_dwi
from ..simulation.pairs import ANGLE_WARNING_DEGREES, make_pairs


def write_pairs(request, reporter=NullReporter()):
    """Write <stem>_acq-dwi3_dwi and <stem>_acq-dti6_dwi (NIfTI + bval/bvec) and pairs.json
    (requests.PairsRequest); returns the written paths and the report."""
    path, out_dir, mode = request.dwi, request.out, request.mode
    dwi = select_shell(load_dwi(path, request.bval, request.bvec), request.shell)
    reporter.progress("pairs", 0.1, f"{mode} from {dwi.data.shape[3]} volumes")
    dwi3, dti6, report = make_pairs(dwi, mode, request.b)
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
