"""Rigid registration with and without the early stop (registration.rigid.EARLY_STOP_CORRELATION), in
one run, on: full-size phantom subjects (DWI b=0 to their acquired DTI's b=0: synthesize --b0's
case), real cross-series pairs of one person from ../shared/data/real (phase encoding reversed,
slabs tilted, the head turned or lying prone / on its side, two scanners years apart), and real b=0
volumes made thick and few-slice under known rotations up to 30 degrees (test_registration's cases).

Per case: the descent from the header's correlation, whether the registration stopped there, the
candidate the full search chose, how far the early result lies from the full one (degrees, mm at the
fixed volume's corners), each one's largest error at those corners where the truth is known, and
both times. Target (issue 38): the same result where it stops early,
less time.

    .venv/bin/python benchmarks/bench_registration.py [--phantoms 3]
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("DTISYNTH_SHARED", REPO.parent / "shared"))
ROTATIONS = ((10.0, (0, 0, 1)), (20.0, (1, 0, 0)), (30.0, (0, 1, 0)), (30.0, (1, 1, 1)))
PAIRS = (("siemens_prisma_xa30_PA_b2500", "siemens_prisma_xa30_AP_b2500"),
         ("uih_umr770_b930", "uih_umr770_ap_b930"), ("uih_umr770_b930", "uih_umr770_pa_rotated_b930"),
         ("siemens_prisma_sag_b2000", "siemens_prisma_sag_hf_b2000"),
         ("siemens_prisma_sag_b2000", "siemens_prisma_sag_mosaic_b2000"),
         ("canon_galan_v60_pa_ortho_b1500", "canon_galan_v60_pa_headturn_b1500"),
         ("canon_galan_v60_pa_ortho_b1500", "canon_galan_v60_pa_ax20_b1500"),
         ("canon_galan_v60_pa_ortho_b1500", "canon_galan_v60_pa_all20_b1500"),
         ("canon_galan_v60_pa_ortho_b1500", "canon_galan_v60_sagittal_ortho_b1500"),
         ("siemens_prisma18_ortho_b2000", "siemens_prisma18_roll_b2000"),
         ("siemens_prisma18_ortho_b2000", "siemens_prisma18_yaw_b2000"),
         ("siemens_prisma18_ortho_b2000", "siemens_prisma18_2axis_b2000"),
         ("siemens_prisma_decub_HFS_b1000", "siemens_prisma_decub_HFP_b1000"),
         ("siemens_prisma_decub_HFS_b1000", "siemens_prisma_decub_HFDL_b1000"),
         ("siemens_trio_b1000", "siemens_trio07_b1000"))
THICK = (("philips_achieva_b1000", 25, ROTATIONS), ("uih_umr770_b930", 10, ROTATIONS[::3]))


def real_path(name):
    return SHARED / "data" / "real" / f"dev_{name}" / f"dev_{name}.nii.gz"


def thick_b0(path, factor=2, slices=None):
    """The scan's first b=0, `factor` slices averaged into one (thicker slices, fewer of them), centred
    crop to `slices`; returns (volume, voxel -> RAS affine)."""
    from DTISynthLib.io.files import load_dwi

    dwi = load_dwi(path)
    b0 = dwi.data[..., int(np.argmin(dwi.bvals))]
    n = b0.shape[2] // factor * factor
    volume = b0[..., :n].reshape(b0.shape[0], b0.shape[1], n // factor, factor).mean(-1)
    affine = dwi.affine.copy()
    affine[:3, 3] += affine[:3, 2] * (factor - 1) / 2
    affine[:3, 2] *= factor
    first = (volume.shape[2] - (slices or volume.shape[2])) // 2
    affine[:3, 3] += affine[:3, 2] * first
    return volume[..., first:first + (slices or volume.shape[2])].astype(np.float32), affine


def rotated_header(affine, shape, degrees, axis):
    """(affine of the same voxels rotated by `degrees` about `axis` through the volume's centre, the world
    map M: the anatomy at world x in the original lies at M x in the rotated copy)."""
    centre = (affine @ np.r_[(np.asarray(shape) - 1) / 2, 1])[:3]
    world = np.eye(4)
    unit = np.asarray(axis, float) / np.linalg.norm(axis)
    world[:3, :3] = Rotation.from_rotvec(np.radians(degrees) * unit).as_matrix()
    world[:3, 3] = centre - world[:3, :3] @ centre
    return world @ affine, world


def corners(affine, shape):
    """The world (RAS mm) positions of a grid's eight corner voxels."""
    return np.array([(affine @ np.r_[i, j, k, 1])[:3] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                     for k in (0, shape[2] - 1)])


def cases(phantoms):
    """(name, fixed, fixed affine, moving, moving affine, the true map or None) of every case."""
    from DTISynthLib.io.files import load_dwi
    from DTISynthLib.simulation.cohort import draw_subject, simulate_subject

    for i in range(1, phantoms + 1):
        subject = simulate_subject(draw_subject(f"sub-{i:03d}", 3), "sampled")
        yield (f"phantom sub-{i:03d}", subject.dti.mean_b0(), subject.dti.affine, subject.dwi.data[..., 0],
               subject.dwi.affine, subject.parameters.misregistration)
    for fixed, moving in PAIRS:
        if not real_path(fixed).exists() or not real_path(moving).exists():
            continue
        (a, a_affine), (b, b_affine) = ((d.mean_b0(), d.affine) for d in map(load_dwi, map(real_path, (fixed, moving))))
        yield f"{fixed} <- {moving}", a, a_affine, b, b_affine, None
    for name, slices, rotations in THICK:
        if not real_path(name).exists():
            continue
        volume, affine = thick_b0(real_path(name), slices=slices)
        noisy = volume + np.random.default_rng(0).normal(0, 0.02 * volume.max(), volume.shape).astype(np.float32)
        yield f"{name} thick, noise added", volume, affine, noisy, affine, np.eye(4)
        for degrees, axis in rotations:
            yield (f"{name} thick, rotated {degrees:g} about {axis}", volume, affine, volume,
                   *rotated_header(affine, volume.shape, degrees, axis))


def main():
    from DTISynthLib.generators.runner import cpu_model
    from DTISynthLib.registration import rigid

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantoms", type=int, default=3)
    args = parser.parse_args()
    threshold = rigid.EARLY_STOP_CORRELATION
    print(f"# rigid registration, early stop at correlation {threshold} against the full search; {cpu_model()}")
    print("| case | descent from header | stopped early | full search chose | early vs full: degrees / mm "
          "| error full / early: mm | full s | early s |")
    print("|---|---|---|---|---|---|---|---|")
    totals, worst = np.zeros(2), np.zeros(2)
    try:
        for name, fixed, fixed_affine, moving, moving_affine, truth in cases(args.phantoms):
            results = {}
            for label, stop in (("full", 2.0), ("early", threshold)):  # 2: no correlation reaches it
                rigid.EARLY_STOP_CORRELATION = stop
                start = time.perf_counter()
                results[label] = rigid.register_rigid(fixed, fixed_affine, moving, moving_affine), \
                    time.perf_counter() - start
            (full, full_s), (early, early_s) = results["full"], results["early"]
            points = corners(fixed_affine, fixed.shape)
            degrees, _, mm = rigid.rigid_difference(early.matrix, full.matrix, points)
            errors = "" if truth is None else " / ".join(f"{rigid.rigid_difference(r.matrix, truth, points)[2]:.3f}"
                                                          for r in (full, early))
            stopped = "optimised from moments" not in early.candidates
            totals += full_s, early_s
            if stopped:
                worst = np.maximum(worst, (degrees, mm))
            print(f"| {name} | {full.candidates['optimised from header']:.4f} | {'yes' if stopped else 'no'} "
                  f"| {full.chosen} | {degrees:.3f} / {mm:.3f} | {errors} | {full_s:.2f} | {early_s:.2f} |", flush=True)
    finally:
        rigid.EARLY_STOP_CORRELATION = threshold
    print(f"\ntotal {totals[0]:.1f} s full, {totals[1]:.1f} s with the early stop ({totals[1] / totals[0]:.2f}x); "
          f"where it stopped early, at most {worst[0]:.3f} degrees / {worst[1]:.3f} mm from the full search")


if __name__ == "__main__":
    main()
