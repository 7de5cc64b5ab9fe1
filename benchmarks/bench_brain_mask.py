"""The brain mask against the recipe it replaced and against MRtrix3's dwi2mask (an independent peer),
on every shared real series and on full-size phantom subjects (whose truth is known), in one run.

The previous recipe (full_filter_mask): two passes of scipy's 5 x 5 x 5 median filter at full
resolution, threaded on two slabs as it was, and Otsu's threshold of the filtered image. Today's
(fit.brain_mask): the same decision without the filter (majority of the thresholded b=0, a threshold
from the half-resolution filter). Prints per series: Dice of each with the peer (phantom: with the
truth), of the two with each other, and each one's time; then the means. Target (issue 38): a fraction
of a second, the same mask where the previous one is right (no series further from the peer).

    .venv/bin/python benchmarks/bench_brain_mask.py [--phantoms 2] [--series TEXT ...]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("DTISYNTH_SHARED", REPO.parent / "shared"))


def full_filter_mask(b0, median_radius=2, passes=2):
    """The recipe before 2026-12-07 (dipy's median_otsu with radius 2, 2 passes), as a reference."""
    from DTISynthLib.fit.brain_mask import largest_filled_component, otsu_threshold

    b0 = np.asarray(b0, np.float32)
    corners = np.argwhere(b0 > otsu_threshold(b0))
    reach = median_radius * passes + 2
    low, high = np.maximum(corners.min(0) - reach, 0), np.minimum(corners.max(0) + reach + 1, b0.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    smoothed = b0[box]
    for _ in range(passes):
        smoothed = _median_two_slabs(smoothed, 2 * median_radius + 1)
    mask = np.zeros(b0.shape, bool)
    mask[box] = smoothed > otsu_threshold(smoothed)
    return largest_filled_component(mask)  # the step the two recipes share


def _median_two_slabs(volume, size):
    """scipy's median filter on two slabs along the first axis (each padded by the reach), as it ran."""
    reach, n = size // 2, volume.shape[0]
    if n < 4 * size:
        return ndimage.median_filter(volume, size=size)
    out = np.empty_like(volume)

    def slab(bounds):
        low, high = bounds
        pad_low, pad_high = max(low - reach, 0), min(high + reach, n)
        out[low:high] = ndimage.median_filter(volume[pad_low:pad_high], size=size)[low - pad_low:high - pad_low]

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(slab, [(0, n // 2), (n // 2, n)]))
    return out


def dice(a, b):
    return 2 * float((a & b).sum()) / max(int(a.sum() + b.sum()), 1)


def timed(function, b0):
    start = time.perf_counter()
    mask = function(b0)
    return mask, time.perf_counter() - start


def main():
    from DTISynthLib.fit.brain_mask import brain_mask
    from DTISynthLib.io.files import load_dwi
    from DTISynthLib.io.nifti import read_nifti
    from DTISynthLib.simulation.cohort import draw_subject, simulate_subject

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phantoms", type=int, default=2)
    parser.add_argument("--series", nargs="+", help="only the shared series whose name contains one of these")
    args = parser.parse_args()
    rows = []
    print(f"{'series':46s} {'vs peer: before':>15s} {'today':>7s} {'before vs today':>16s} {'before s':>9s} {'today s':>8s}")
    for seed in range(args.phantoms):
        subject = simulate_subject(draw_subject(f"sub-mask{seed}", 7100 + seed))
        b0, truth = subject.dti.mean_b0(), subject.tissue.sum(-1) > 0.5
        rows.append((f"phantom {seed + 1} (truth)", b0, truth))
    with tempfile.TemporaryDirectory() as work:
        for folder in sorted(p for p in (SHARED / "data" / "real").iterdir() if p.is_dir()):
            if args.series and not any(text in folder.name for text in args.series):
                continue
            dwi_file = folder / f"{folder.name}.nii.gz"
            peer_file = Path(work) / f"{folder.name}.nii"
            subprocess.run(["dwi2mask", str(dwi_file), str(peer_file), "-fslgrad", str(folder / f"{folder.name}.bvec"),
                            str(folder / f"{folder.name}.bval"), "-quiet", "-nthreads", "2"], check=True)
            rows.append((folder.name, load_dwi(dwi_file).mean_b0(), read_nifti(peer_file)[0] > 0))
        table = []
        for name, b0, reference in rows:
            before, t_before = timed(full_filter_mask, b0)
            today, t_today = timed(brain_mask, b0)
            table.append((dice(before, reference), dice(today, reference), dice(before, today), t_before, t_today))
            print(f"{name:46s} {table[-1][0]:15.4f} {table[-1][1]:7.4f} {table[-1][2]:16.4f} {t_before:9.2f} "
                  f"{t_today:8.3f}", flush=True)
    values = np.array(table)
    print(f"{'mean':46s} {values[:, 0].mean():15.4f} {values[:, 1].mean():7.4f} {values[:, 2].mean():16.4f} "
          f"{values[:, 3].mean():9.2f} {values[:, 4].mean():8.3f}")
    print(f"today further from the reference than before, by more than 0.001: "
          f"{int((values[:, 1] < values[:, 0] - 0.001).sum())} of {len(values)}; time ratio today / before "
          f"{values[:, 4].sum() / values[:, 3].sum():.3f}")


if __name__ == "__main__":
    main()
