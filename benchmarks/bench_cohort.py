"""`dtisynth bids` on a BIDS dataset of full-size phantom subjects (128 x 128 x 76, default model set), in
one run: one session after another without Dask (`--workers 0`), a local Dask cluster of 1 worker,
and of 2 workers; then the two clusters as before 2026-12-07, whose workers ran with Dask's
MALLOC_TRIM_THRESHOLD_=65536 (glibc's adaptive mmap threshold off: every large numpy temporary mapped
and page-faulted anew; the same variable set in the command's environment reproduces it). Each in a
fresh process, from a shell without thread variables: wall time, sessions per minute, the peak RSS of
its largest process (a worker's, for the clusters), and the ratios: the scheduler's cost (1 worker
against none) and the speed-up of 2 workers (target, issue 38: at least 1.8x one worker on 2 cores).

    .venv/bin/python benchmarks/bench_cohort.py [--subjects 6] [--keep DIR]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tensor_fit import run_measured  # noqa: E402  (one way to time a process and its peak RSS)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from DTISynthLib.generators.runner import cpu_model  # noqa: E402
from DTISynthLib.io import bids  # noqa: E402
from DTISynthLib.simulation.cohort import write_cohort  # noqa: E402

DASK_MALLOC_TRIM = "65536"  # distributed.nanny.pre-spawn-environ's default


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--keep", help="keep the dataset and the derivatives in this folder")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-cohort-"))
    dataset = work / "bids"
    if not (dataset / "dataset_description.json").exists():
        write_cohort(dataset, args.subjects, "sampled", seed=11)
        shutil.rmtree(dataset / "derivatives")
    # a user's shell: no thread variables (Dask sets its workers' OMP_NUM_THREADS=1 only where none is set)
    shell = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS") and k != "MALLOC_TRIM_THRESHOLD_"}
    before = dict(shell, MALLOC_TRIM_THRESHOLD_=DASK_MALLOC_TRIM)
    runs = {}
    for label, workers, env in (("one after another (no Dask)", "0", shell), ("Dask, 1 worker", "1", shell),
                                ("Dask, 2 workers", "2", shell), ("Dask, 1 worker, before", "1", before),
                                ("Dask, 2 workers, before", "2", before)):
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        wall, rss, _ = run_measured([sys.executable, "-m", "DTISynthLib", "bids", dataset, out, "participant",
                                     "--workers", workers, "--skip-bids-validation"], env)  # validator timed below
        runs[label] = (wall, rss)
    start = time.perf_counter()
    validator = bids.validator_errors(dataset)
    validation = time.perf_counter() - start
    print(f"# dtisynth bids, {args.subjects} phantom subjects 128 x 128 x 76, default models; {cpu_model()}")
    print("| run | wall s | sessions / min | peak RSS MiB (largest process) |")
    print("|---|---|---|---|")
    for label, (wall, rss) in runs.items():
        print(f"| {label} | {wall:.1f} | {60 * args.subjects / wall:.2f} | {rss:.0f} |")
    none, one, two, one_before, two_before = (runs[label][0] for label in runs)
    print(f"\nscheduler's cost (1 worker / none): {one / none:.2f}x wall time (before: {one_before / none:.2f}x); "
          f"2 workers against 1: {one / two:.2f}x faster (before: {one_before / two_before:.2f}x); 2 workers against "
          f"none: {none / two:.2f}x (before: {none / two_before:.2f}x)")
    print(f"the BIDS validator on the dataset (each run's first step unless --skip-bids-validation): "
          f"{validation:.1f} s, {'not installed' if validator is None else f'{len(validator)} error code(s)'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
