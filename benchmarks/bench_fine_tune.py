"""Adapt the default model set to a scanner (`dtisynth train --init-from`), measured: fine-tune the
shipped tensor-unet set on a real person it never saw, then score the default and the fine-tuned set on
people neither saw (benchmarks/bench_quality.py's real-scan table: truth is the fit of all the scan's
directions, input the volumes nearest x, y, z).

People (../shared/data/real, its README): fine-tuned on the person scanned on three Siemens systems
over 15 years (11 series: Trio 2007 and 2010, Prisma 2018 in five slab orientations, Prisma 2022 in
four head positions); model selection on the Siemens Prisma sagittal person (one series; the default
set trained on it); scored on OpenNeuro ds000114 sub-01 (a Siemens 3T at b=1000, as most of the
fine-tuning series) and the Siemens Prisma XA30 person (b=2500), which neither set saw. The pairs are
tensor-mode pairs (the fit of every direction, predicted at the scan's own b), as the default set's
real training data.

    .venv/bin/python benchmarks/bench_fine_tune.py [--epochs N] [--lr R] [--keep DIR]
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from DTISynthLib.generators.package import DEFAULT_MODELS  # noqa: E402
from DTISynthLib.generators.runner import cpu_model  # noqa: E402

REAL = REPO.parent / "shared" / "data" / "real"
TUNE = {"siemens3": [("siemens_trio07_b1000", 1000), ("siemens_trio_b1000", 1000),
                     *((f"siemens_prisma18_{k}_b2000", 2000) for k in ("ortho", "roll", "pitch", "yaw", "2axis")),
                     *((f"siemens_prisma_decub_{k}_b1000", 1000) for k in ("HFS", "HFP", "HFDL", "HFDR"))],
        "siemens_sag": [("siemens_prisma_sag_b2000", 2000)]}
VALIDATION = "dev_siemens_prisma_sag_b2000"
TEST_SCANS = ("ds114", "xa30")


def run(command, log):
    started = time.perf_counter()
    subprocess.run([str(c) for c in command], check=True, stdout=log, stderr=subprocess.STDOUT)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="fine-tuning epochs (default: train's --init-from default)")
    parser.add_argument("--lr", type=float, help="fine-tuning learning rate (default: train's --init-from default)")
    parser.add_argument("--keep", help="keep the pairs, the fine-tuned set and the logs in this folder")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-fine-tune-"))
    work.mkdir(parents=True, exist_ok=True)
    dtisynth = [sys.executable, "-m", "DTISynthLib"]
    with open(work / "log.txt", "a") as log:
        prepared = 0.0
        for person, series in TUNE.items():
            for name, b in series:
                out = work / "data" / "real" / person / name
                if not out.exists():
                    prepared += run([*dtisynth, "pairs", REAL / f"dev_{name}" / f"dev_{name}.nii.gz", "--mode",
                                     "tensor", "--b", b, "--out", out], log)
        tuned = work / "tensor-unet-tuned"
        shutil.rmtree(tuned, ignore_errors=True)
        epochs = (["--epochs", args.epochs] if args.epochs else []) + (["--lr", args.lr] if args.lr else [])
        tuning = run([*dtisynth, "train", "--init-from", DEFAULT_MODELS, "--data", work / "data", "--out", tuned,
                      "--batch-size", "8", "--validation-subjects", VALIDATION, "--seed", "0", *epochs], log)
        started = time.perf_counter()
        table = subprocess.run([sys.executable, REPO / "benchmarks" / "bench_quality.py", "--subjects", "0",
                                "--no-oblique", "--scans", *TEST_SCANS, "--models", DEFAULT_MODELS, tuned,
                                "--out", work / "quality"], check=True, capture_output=True, text=True)
        scoring = time.perf_counter() - started
        log.write(table.stderr)
    print(f"# the default set fine-tuned on a new person (11 series), scored on two people neither saw; {cpu_model()}")
    print(f"pairs {prepared:.0f} s, fine-tuning {tuning:.0f} s, scoring {scoring:.0f} s; tuned set in {tuned}")
    print(table.stdout)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
