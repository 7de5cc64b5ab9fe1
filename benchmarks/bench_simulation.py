"""One full-size simulated subject (128 x 128 x 76, both acquisitions, ground truth, files written).

Prints a table of wall time (median and min of --repeats) and peak memory per stage, and the signal
simulation of the same voxels against dipy's multi_tensor (the peer), measured in this one run.
Target (issue 3): one full-size subject in <= 30 s on this machine.

    .venv/bin/python benchmarks/bench_simulation.py [--repeats 3]
"""

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from DTISynthLib.core.gradient_schemes import dti_6
from DTISynthLib.simulation.cohort import (
    PAPER_GRID,
    draw_subject,
    scanner_affine,
    simulate_subject,
    subject_tissue,
    write_subject,
)
from DTISynthLib.simulation.signals import reference_pools, simulate_signals


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-voxels", type=int, default=5000)
    args = parser.parse_args()
    pools = reference_pools()
    rows = {"simulate subject (tissue x2, signals, noise, truth)": [], "write subject (NIfTI, JSON)": [],
            "total": []}
    for i in range(args.repeats):
        params = draw_subject("sub-001", 100 + i)
        t_sim, subject = timed(lambda: simulate_subject(params, "sampled", pools, PAPER_GRID))
        with tempfile.TemporaryDirectory() as tmp:
            t_write, _ = timed(lambda: write_subject(Path(tmp), subject))
        rows["simulate subject (tissue x2, signals, noise, truth)"].append(t_sim)
        rows["write subject (NIfTI, JSON)"].append(t_write)
        rows["total"].append(t_sim + t_write)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # Peer: dipy's per-voxel multi_tensor on the same compartments (syn scheme: axially symmetric).
    from dipy.core.gradients import gradient_table
    from dipy.sims.voxel import multi_tensor

    params = draw_subject("sub-001", 1, vary=False)
    tissue = subject_tissue(params, scanner_affine(), PAPER_GRID, params.head_pose, "syn", pools)[1]
    bvals, gradients = dti_6()
    n_all = len(tissue.fractions)
    t_ours, _ = timed(lambda: simulate_signals(tissue, bvals, gradients, "syn", None))
    table = gradient_table(bvals, bvecs=gradients)
    pick = np.random.default_rng(0).choice(n_all, args.peer_voxels, replace=False)

    def dipy_loop():
        for n in pick:
            weight = tissue.fractions[n] * tissue.tissue_s0[n]
            share = np.r_[weight[0] * tissue.fibre_fractions[n], weight[1], weight[2]]
            evals = [np.linalg.eigvalsh(c)[::-1] for c in tissue.compartments[n]]
            sticks = np.vstack([tissue.fibre_directions[n], tissue.fibre_directions[n, :2]])
            multi_tensor(table, np.array(evals), S0=share.sum(), angles=sticks, fractions=100 * share / share.sum(),
                         snr=None)

    t_dipy_subset, _ = timed(dipy_loop)
    t_dipy = t_dipy_subset * n_all / args.peer_voxels

    print(f"\nSimulated subject, {PAPER_GRID[0]}x{PAPER_GRID[1]}x{PAPER_GRID[2]} (1.72x1.72x2 mm), {args.repeats} repeats, "
          f"{time.strftime('%Y-%m-%d %H:%M')}; peak RSS of the run {peak_mib:.0f} MiB")
    print(f"{'stage':54} {'median s':>9} {'min s':>7}")
    for name, values in rows.items():
        print(f"{name:54} {statistics.median(values):9.2f} {min(values):7.2f}")
    print(f"\nSignals of one acquisition (b0 + 6), {n_all} tissue voxels")
    print(f"{'tool':54} {'seconds':>9} {'x ours':>7}")
    print(f"{'DTISynth simulate_signals (vectorised)':54} {t_ours:9.2f} {1.0:7.2f}")
    print(f"{'dipy multi_tensor per voxel (' + str(args.peer_voxels) + ' timed, scaled)':54} {t_dipy:9.2f} "
          f"{t_dipy / t_ours:7.1f}")
    target = statistics.median(rows["total"])
    print(f"\ntarget <= 30 s per full-size subject: {'met' if target <= 30 else 'NOT met'} ({target:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
