"""The one CSV writer and the figure helper (core.tables): cells are quoted, never altered; writing a
figure leaves matplotlib's process-wide state as it was."""

import csv
import io
import subprocess
import sys
from pathlib import Path

from DTISynthLib.core.tables import csv_text

REPO = Path(__file__).resolve().parents[2]


def test_csv_cells_with_commas_and_quotes_round_trip_unaltered():
    rows = [{"roi": "thalamus", "subjects": "['sub-001', 'sub-002']", "note": 'said "noisy", twice', "p": 0.012345678,
             "missing": float("nan"), "none": None}]
    text = csv_text(rows, float_format=".6g")
    assert text.splitlines()[0] == "roi,subjects,note,p,missing,none" and text.endswith("\n") and "\r" not in text
    (back,) = list(csv.DictReader(io.StringIO(text)))
    assert back == {"roi": "thalamus", "subjects": "['sub-001', 'sub-002']", "note": 'said "noisy", twice',
                    "p": "0.0123457", "missing": "", "none": ""}  # the evaluation once wrote "['sub-001'; 'sub-002']"
    assert csv_text(rows, ["p", "roi"]).splitlines()[1] == "0.012345678,thalamus"  # as Python writes floats
    assert csv_text([], ["a", "b"]) == "a,b\n"
    tsv = csv_text([{"key": "sub-04", "message": 'expected "x"\tgot y'}], delimiter="\t")
    assert tsv.splitlines()[0] == "key\tmessage"
    back = list(csv.DictReader(io.StringIO(tsv), delimiter="\t"))
    assert back == [{"key": "sub-04", "message": 'expected "x"\tgot y'}]


def test_writing_figures_changes_no_matplotlib_state(tmp_path):
    """A program with its own backend (Slicer's, a notebook's) keeps it; pyplot is never imported."""
    code = """
import sys, matplotlib, numpy as np
matplotlib.use("svg")
from DTISynthLib.evaluation.montage import write_montage
from DTISynthLib.evaluation.calibration import write_calibration_figure
volume = np.random.default_rng(0).uniform(0, 1, (8, 8, 4))
write_montage(sys.argv[1] + "/m.png", [("a", {"fa": volume, "md": volume * 1e-3})], np.eye(4))
write_calibration_figure(sys.argv[1] + "/c.png", {"s": [dict(low=0.0, high=1.0, median_angle_degrees=10.0,
                                                              wm_share=1.0)]}, 20.0)
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""
    folder = tmp_path
    run = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["svg", "False"]
    assert (folder / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (folder / "c.png").stat().st_size > 1000
