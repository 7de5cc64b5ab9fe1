"""Rigid (6 degrees of freedom) registration of two b=0 volumes with SimpleITK: normalised
correlation, multi-resolution, several starts, never worse than the start (register_rigid).

Both images are b=0 (T2-weighted EPI) of one subject, so one contrast: correlation is the metric. The
seed paper used FSL FLIRT; Mattes mutual information, used here before, let the optimiser drift on
small or thick-slice volumes (a 64 x 64 x 10 slab of 8.4 mm slices: 12 degrees off after 300
iterations from a 10-degree start, where correlation converges to 0.01 degrees).

Frames: our affines map voxels to RAS mm; ITK's physical space is LPS (converted in itk.py only).
Result: a 4x4 rigid transform M in the RAS world frame such that the anatomy at world point x in
the fixed image lies at M x in the moving image (the convention of the cohort's recorded
misregistration). Deterministic: fixed sampling seed, one thread.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from .itk import (
    FLIP,
    execute_deterministic,
    pyramid_levels,
    to_sitk,
    transform_to_matrix,
)


SEARCH_DEGREES = 15.0  # the rotation grid searched at the coarsest level: -30, -15, 0, 15, 30 degrees
SEARCH_STEPS = 2  # per side, about each axis
MIN_VOXELS = 4  # along every axis: ITK's smoothing needs 4
EARLY_STOP_CORRELATION = 0.98  # the descent from the header start reaching this ends the registration


@dataclass
class RigidResult:
    """matrix: 4x4 RAS world transform (fixed point x -> moving point M x); metric: final Mattes MI
    (more negative is better; nan when no optimisation ran); correlation: Pearson correlation of the
    fixed image and the moving image resampled onto it, inside the fixed image's foreground (a quality
    figure in [-1, 1]); chosen: which candidate gave the matrix; candidates: every candidate's
    correlation (the module docstring's register_rigid)."""

    matrix: np.ndarray
    metric: float
    correlation: float
    chosen: str = "optimised"
    candidates: dict = field(default_factory=dict)


def same_acquisition(fixed, fixed_affine, moving, moving_affine):
    """True when the two images are one acquisition: the same grid (shape, affine to 1e-4 mm) and the
    same values (to float32 rounding), e.g. a DWI's b=0 and the b=0 of the DTI it was split from."""
    fixed, moving = np.asarray(fixed, np.float32), np.asarray(moving, np.float32)
    if fixed.shape != moving.shape or not np.allclose(fixed_affine, moving_affine, rtol=0, atol=1e-4):
        return False
    scale = float(np.abs(fixed).max()) or 1.0
    return bool(np.allclose(fixed, moving, rtol=0, atol=1e-6 * scale))


def register_rigid(fixed, fixed_affine, moving, moving_affine, seed=1):
    """Rigidly register `moving` to `fixed` (3D b=0 arrays with RAS affines), so that the result is never
    worse than where it started.

    - One acquisition (same_acquisition): the identity, without optimising.
    - Otherwise a gradient descent (correlation, the pyramid of itk.pyramid_levels) from the header
      alignment (the identity in the world). When it reaches EARLY_STOP_CORRELATION the registration
      ends there (the better of the start and the descent): where it did on the 27 cases of
      benchmarks/bench_registration.py, the other starts moved the result by at most 0.005 mm (full-size
      phantoms, real slabs rotated up to 30 degrees) and 0.23 mm on a noisy copy of a real 8.4 mm slab
      (both within 0.21 mm of its truth), for a third of the time.
    - Below it, two more starts: the moments start (centres of mass aligned) and the best of a grid
      of rotations about the moments start (SEARCH_STEPS x SEARCH_DEGREES about each axis, at the
      coarsest pyramid level: head turns of 20-30 degrees), a descent from each, and of these six
      candidates the one with the best `correlation` is kept.

    seed: the metric's sampling seed; 0 is refused because SimpleITK reads it as "seed from the wall
    clock", which made repeated registrations differ by up to 0.05 mm.
    """
    if seed == 0:
        raise ValueError("seed 0 means a wall-clock seed in SimpleITK; pass a fixed non-zero seed")
    for volume in (fixed, moving):
        if min(np.shape(volume)) < MIN_VOXELS:
            raise InputError("registration", f"volumes of at least {MIN_VOXELS} voxels along every axis",
                             f"a volume of {np.shape(volume)}")
    fixed_img, moving_img = to_sitk(fixed, fixed_affine), to_sitk(moving, moving_affine)
    fixed_array = sitk.GetArrayFromImage(fixed_img)
    foreground = fixed_array > np.percentile(fixed_array, 50)

    def correlation(transform):
        resampled = sitk.GetArrayFromImage(sitk.Resample(moving_img, fixed_img, transform, sitk.sitkLinear, 0.0))
        value = np.corrcoef(fixed_array[foreground], resampled[foreground])[0, 1]
        return float(value) if np.isfinite(value) else -1.0

    if same_acquisition(fixed, fixed_affine, moving, moving_affine):
        same = correlation(sitk.Euler3DTransform())
        return RigidResult(np.eye(4), float("nan"), same, "same acquisition", {"same acquisition": round(same, 4)})
    levels = pyramid_levels(min(np.linalg.norm(np.asarray(fixed_affine)[:3, :3], axis=0)), np.shape(fixed))
    centre = fixed_img.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed_img.GetSize()])
    header = sitk.Euler3DTransform()
    header.SetCenter(centre)
    transforms, metrics = {"header": header}, {}

    def descend_from(start):
        method = _correlation_method(seed, levels)
        method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=300,
                                                        relaxationFactor=0.6, gradientMagnitudeTolerance=1e-8)
        method.SetOptimizerScalesFromPhysicalShift()
        method.SetInitialTransform(transforms[start], inPlace=False)
        name = f"optimised from {start}"
        transforms[name] = execute_deterministic(method, fixed_img, moving_img)
        metrics[name] = float(method.GetMetricValue())
        return name

    scores = {"header": correlation(header)}
    first = descend_from("header")
    scores[first] = correlation(transforms[first])
    if scores[first] < EARLY_STOP_CORRELATION:
        transforms["moments"] = sitk.Euler3DTransform(sitk.CenteredTransformInitializer(
            fixed_img, moving_img, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS))
        search = _correlation_method(seed, ([levels[0][0]], [levels[1][0]]))
        search.SetOptimizerAsExhaustive([SEARCH_STEPS] * 3 + [0] * 3, stepLength=np.radians(SEARCH_DEGREES))
        search.SetOptimizerScales([1.0] * 6)
        search.SetInitialTransform(sitk.Euler3DTransform(transforms["moments"]), inPlace=False)
        # The two descents are independent and ITK runs each on one thread without the GIL: side by side
        # they take about the time of the longer (a b=0 of noise, 64 x 64 x 38: 14 -> 10 s; the 24
        # full-search cases of bench_registration: 95 -> 66 s).
        with ThreadPoolExecutor(1) as beside:
            from_moments = beside.submit(descend_from, "moments")
            transforms["rotation search"] = _euler(execute_deterministic(search, fixed_img, moving_img))
            from_search = descend_from("rotation search")
            names = ("moments", "rotation search", from_moments.result(), from_search)
        scores.update({name: correlation(transforms[name]) for name in names})  # this order breaks ties
    chosen = max(scores, key=scores.get)
    matrix = FLIP @ transform_to_matrix(transforms[chosen]) @ FLIP
    return RigidResult(matrix, metrics.get(chosen, float("nan")), scores[chosen], chosen,
                       {k: round(v, 4) for k, v in scores.items()})


def _correlation_method(seed, levels):
    """A registration method with ITK's normalised correlation, regular sampling of half the voxels,
    linear interpolation and the pyramid `levels` (shrink factors, sigmas in mm)."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsCorrelation()
    method.SetMetricSamplingStrategy(method.REGULAR)
    method.SetMetricSamplingPercentage(0.5, seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetShrinkFactorsPerLevel(levels[0])
    method.SetSmoothingSigmasPerLevel(levels[1])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetNumberOfThreads(1)
    return method


def _euler(transform):
    """The Euler3DTransform an exhaustive search returned (possibly wrapped in a composite)."""
    found = transform.Downcast()
    if isinstance(found, sitk.CompositeTransform):
        found = found.GetNthTransform(found.GetNumberOfTransforms() - 1).Downcast()
    return found


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
