"""Rigid (6 degrees of freedom) registration of two volumes with SimpleITK: Mattes mutual
information, multi-resolution, as the seed paper did with FSL FLIRT.

Frames: our affines map voxels to RAS mm; ITK's physical space is LPS (converted in itk.py only).
Result: a 4x4 rigid transform M in the RAS world frame such that the anatomy at world point x in
the fixed image lies at M x in the moving image (the convention of the cohort's recorded
misregistration). Deterministic: fixed sampling seed, one thread.
"""

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .itk import (
    FLIP,
    execute_deterministic,
    mattes_method,
    set_pyramid,
    to_sitk,
    transform_to_matrix,
)


@dataclass
class RigidResult:
    """matrix: 4x4 RAS world transform (fixed point x -> moving point M x); metric: final Mattes MI
    (more negative is better); correlation: Pearson correlation of the fixed image and the moving
    image resampled onto it, inside the fixed image's foreground (a quality figure in [-1, 1])."""

    matrix: np.ndarray
    metric: float
    correlation: float


def register_rigid(fixed, fixed_affine, moving, moving_affine, seed=1):
    """Rigidly register `moving` to `fixed` (3D arrays with RAS affines).

    seed: the metric's sampling seed; 0 is refused because SimpleITK reads it as "seed from the wall
    clock", which made repeated registrations differ by up to 0.05 mm.
    """
    method = mattes_method(seed, sampling=0.5, bins=50)
    fixed_img, moving_img = to_sitk(fixed, fixed_affine), to_sitk(moving, moving_affine)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=300,
                                                    relaxationFactor=0.6, gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    set_pyramid(method, fixed_affine)
    method.SetNumberOfThreads(1)
    initial = sitk.CenteredTransformInitializer(fixed_img, moving_img, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.MOMENTS)
    method.SetInitialTransform(initial, inPlace=False)
    transform = execute_deterministic(method, fixed_img, moving_img)
    matrix = FLIP @ transform_to_matrix(transform) @ FLIP
    resampled = sitk.GetArrayFromImage(sitk.Resample(moving_img, fixed_img, transform, sitk.sitkLinear, 0.0))
    fixed_array = sitk.GetArrayFromImage(fixed_img)
    foreground = fixed_array > np.percentile(fixed_array, 50)
    correlation = float(np.corrcoef(fixed_array[foreground], resampled[foreground])[0, 1])
    return RigidResult(matrix, float(method.GetMetricValue()), correlation)


def rigid_difference(estimated, truth, points):
    """(max rotation angle in degrees, mean / max displacement in mm at `points` (N, 3)) between two rigid maps."""
    delta = np.linalg.inv(truth) @ estimated
    angle = np.degrees(np.arccos(np.clip((np.trace(delta[:3, :3]) - 1) / 2, -1.0, 1.0)))
    moved = points @ estimated[:3, :3].T + estimated[:3, 3]
    expected = points @ truth[:3, :3].T + truth[:3, 3]
    distance = np.linalg.norm(moved - expected, axis=1)
    return float(angle), float(distance.mean()), float(distance.max())


def resample_rigid(volume, moving_affine, fixed_affine, fixed_shape, matrix, order=1, workers=2):
    """Resample a moving volume (x, y, z[, n]) onto the fixed grid through a rigid RAS map `matrix`
    (fixed world point x -> moving world point M x), trilinear by default.

    Each moving voxel covers half a voxel around its centre: a fixed point inside that cell of an edge
    voxel takes the edge value (scipy's "nearest" extension), a point beyond every cell is zero.
    scipy's "constant" mode instead zeroes any point outside [0, n - 1], even by 1e-12 voxels from
    rounding, which blanked or darkened whole edge slices of grids that share their slices.

    Fixed voxel index -> moving voxel index is one affine map, so scipy's affine_transform evaluates it
    per voxel without a coordinate array; volumes run on `workers` threads (scipy releases the GIL).
    """
    from concurrent.futures import ThreadPoolExecutor

    from scipy import ndimage

    to_moving = np.linalg.inv(moving_affine) @ matrix @ fixed_affine  # fixed ijk -> moving ijk
    volume = np.asarray(volume, dtype=np.float32)
    channels = volume.reshape(volume.shape[:3] + (-1,))
    out = np.empty(tuple(fixed_shape[:3]) + (channels.shape[3],), dtype=np.float32)
    # rounding to the nearest voxel with zero padding marks the points inside some moving voxel's cell
    outside = ndimage.affine_transform(np.ones(channels.shape[:3], np.float32), to_moving[:3, :3], to_moving[:3, 3],
                                       output_shape=tuple(fixed_shape[:3]), output=np.float32, order=0,
                                       mode="grid-constant", cval=0.0) < 0.5

    def one(c):
        out[..., c] = ndimage.affine_transform(np.ascontiguousarray(channels[..., c]), to_moving[:3, :3],
                                               to_moving[:3, 3], output_shape=tuple(fixed_shape[:3]),
                                               output=np.float32, order=order, mode="nearest")
        out[..., c][outside] = 0.0

    with ThreadPoolExecutor(max(1, min(workers, channels.shape[3]))) as pool:
        list(pool.map(one, range(channels.shape[3])))
    return out.reshape(tuple(fixed_shape[:3]) + volume.shape[3:])
