"""The README's main job at full size, `dtisynth demo` (three 128 x 128 x 76 phantom subjects, paper 2's
realism autoencoders), against the small demo the test suite runs (Testing/Python/test_cli.py:
SMALL_DEMO), in one run: wall time and peak RSS of each, their ratio, and the full-size demo's ROI
values against the phantom's ground truth with the bounds the suite's demo test holds the small one to
(acquired FA 0 to 0.05 above the truth, synthetic FA and MD within 0.15 of it, realism index < 2).

    .venv/bin/python benchmarks/bench_demo.py [--keep DIR]
"""

import argparse
import csv
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tensor_fit import run_measured  # noqa: E402  (one way to time a process and its peak RSS)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from DTISynthLib.generators.runner import cpu_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SMALL = ("--grid", "128x128x24", "--realism-voxels", "20000", "--realism-epochs", "10")  # test_cli's SMALL_DEMO
BOUNDS = {"acquired FA - truth": (0.0, 0.05), "|synthetic FA - truth|": (0.0, 0.15),
          "|synthetic MD / truth - 1|": (0.0, 0.15)}


def roi_errors(out):
    rows = [line.split("\t") for line in (out / "roi_values.tsv").read_text().splitlines()[1:]]
    errors = {name: [] for name in BOUNDS}
    for row in rows:
        fa_acquired, fa_synthetic, fa_truth = map(float, row[2:5])
        md_synthetic, md_truth = map(float, row[7:9])
        errors["acquired FA - truth"].append(fa_acquired - fa_truth)
        errors["|synthetic FA - truth|"].append(abs(fa_synthetic - fa_truth))
        errors["|synthetic MD / truth - 1|"].append(abs(md_synthetic / md_truth - 1))
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="keep both demos' outputs in this folder")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-demo-"))
    runs = {}
    for label, options in (("full size (README's make demo)", ()), ("small (the test suite's)", SMALL)):
        out = work / ("full" if not options else "small")
        shutil.rmtree(out, ignore_errors=True)
        runs[label] = run_measured([sys.executable, "-m", "DTISynthLib", "demo", "--out", out, *options])[:2], out
    print(f"# dtisynth demo, {cpu_model()}")
    print("| demo | wall s | peak RSS MiB | realism index |")
    print("|---|---|---|---|")
    for label, ((wall, rss), out) in runs.items():
        with open(out / "evaluation" / "realism_index.csv") as f:
            realism = {r["subject"]: float(r["realism_index"]) for r in csv.DictReader(f)}["all subjects"]
        print(f"| {label} | {wall:.1f} | {rss:.0f} | {realism:.2f} |")
    (full_wall, _), full = runs["full size (README's make demo)"]
    (small_wall, _), _ = runs["small (the test suite's)"]
    print(f"\nfull / small wall time: {full_wall / small_wall:.1f}x\n")
    print("| full-size demo, over the 5 ROIs | worst | bound |")
    print("|---|---|---|")
    failed = False
    for name, values in roi_errors(full).items():
        low, high = BOUNDS[name]
        worst = max(values, key=lambda v: max(low - v, v - high))
        failed |= not all(low <= v < high for v in values)
        print(f"| {name} | {worst:.3f} | {low:g} to {high:g} |")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
