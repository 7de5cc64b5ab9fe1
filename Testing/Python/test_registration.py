"""Rigid registration that never makes things worse, on real b=0 volumes from ../shared/data/real made
thick and few-slice (two slices averaged into one), registered to themselves and to copies of
themselves under known rotations up to 30 degrees (the same voxels under a rotated header: the
answer is known exactly, with no interpolation in the data)."""

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import real_dwi_path

from DTISynthLib.core.errors import InputError
from DTISynthLib.registration.itk import MIN_LEVEL_VOXELS, pyramid_levels
from DTISynthLib.registration.rigid import (
    EARLY_STOP_CORRELATION,
    register_rigid,
    rigid_difference,
    same_acquisition,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_registration import ROTATIONS, corners, rotated_header, thick_b0  # noqa: E402  (its cases, one way)


@pytest.mark.parametrize("name, slices, rotations", [
    ("dev_philips_achieva_b1000", 25, ROTATIONS),  # 128 x 128 x 25, 1.75 x 1.75 x 5 mm
    ("dev_uih_umr770_b930", 10, ROTATIONS[::3]),  # 64 x 64 x 10, 3.5 x 3.5 x 8.4 mm
])
def test_thick_few_slice_volumes_register_to_themselves_and_to_rotated_copies(name, slices, rotations):
    volume, affine = thick_b0(real_dwi_path(name), slices=slices)
    assert volume.shape[2] == slices
    itself = register_rigid(volume, affine, volume, affine)
    assert itself.chosen == "same acquisition" and np.array_equal(itself.matrix, np.eye(4))
    assert itself.correlation == pytest.approx(1.0)
    # Not one acquisition (noise added): optimised, and never worse than the header's alignment.
    noisy = volume + np.random.default_rng(0).normal(0, 0.02 * volume.max(), volume.shape).astype(np.float32)
    again = register_rigid(volume, affine, noisy, affine)
    assert again.chosen != "same acquisition" and again.correlation >= again.candidates["header"] - 1e-4
    assert rigid_difference(again.matrix, np.eye(4), corners(affine, volume.shape))[2] < 0.5
    # the other two starts run only when the descent from the headers stays below the early stop
    stopped = again.candidates["optimised from header"] >= EARLY_STOP_CORRELATION
    assert len(again.candidates) == (2 if stopped else 6), again.candidates
    for degrees, axis in rotations:
        moving_affine, truth = rotated_header(affine, volume.shape, degrees, axis)
        result = register_rigid(volume, affine, volume, moving_affine)
        angle, _, worst_mm = rigid_difference(result.matrix, truth, corners(affine, volume.shape))
        assert angle < 0.2 and worst_mm < 0.3, (degrees, axis, angle, worst_mm, result.chosen, result.candidates)
        assert result.correlation > 0.999
        assert result.correlation == pytest.approx(max(result.candidates.values()), abs=1e-4)
        assert set(result.candidates) == {"header", "optimised from header"}  # found from the headers: stopped there


def test_the_pyramid_keeps_every_axis_and_tiny_volumes_are_refused():
    assert pyramid_levels(1.72) == ([4, 2], pytest.approx([4 * 1.72 / 3.5, 2 * 1.72 / 3.5]))
    for shape in ((128, 128, 25), (64, 64, 10), (80, 80, 20), (96, 96, 8)):
        shrinks, sigmas = pyramid_levels(1.72, shape)
        assert all(min(shape) // f >= min(MIN_LEVEL_VOXELS, min(shape)) for f in shrinks), (shape, shrinks)
        assert sigmas[0] > 0  # a level that may not shrink still smooths
    volume = np.ones((32, 32, 3), np.float32)
    with pytest.raises(InputError, match="at least 4 voxels along every axis.*32, 32, 3"):
        register_rigid(volume, np.eye(4), volume, np.eye(4))
    assert same_acquisition(volume, np.eye(4), volume.copy(), np.eye(4))
    shifted = np.eye(4)
    shifted[0, 3] = 0.5
    assert not same_acquisition(volume, np.eye(4), volume, shifted)
    assert not same_acquisition(volume, np.eye(4), volume * 1.01, np.eye(4))


def test_registrations_side_by_side_run_on_one_itk_thread_and_the_last_out_restores_the_default():
    import threading

    import SimpleITK as sitk

    from DTISynthLib.registration.itk import execute_deterministic

    class Method:  # stands in for an ImageRegistrationMethod: waits inside Execute until released
        def __init__(self):
            self.inside, self.release, self.seen = threading.Event(), threading.Event(), None

        def Execute(self, fixed, moving):
            self.seen = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
            self.inside.set()
            self.release.wait(10)
            return "done"

    own = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(3)
    try:
        first, second = Method(), Method()
        threads = [threading.Thread(target=execute_deterministic, args=(m, None, None)) for m in (first, second)]
        threads[0].start()
        assert first.inside.wait(10)
        threads[1].start()
        assert second.inside.wait(10)
        first.release.set()  # they leave in the order they came
        threads[0].join(10)
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 1  # the second still runs on one
        second.release.set()
        threads[1].join(10)
        assert (first.seen, second.seen) == (1, 1)
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 3
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(own)
