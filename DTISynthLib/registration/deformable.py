"""Atlas registration: an atlas template onto a subject image of the same contrast (affine, then
symmetric-forces demons), and atlas labels carried by the result.

Frames: arrays (x, y, z) with voxel -> RAS affines, as everywhere; the transforms are SimpleITK's
(subject LPS points -> atlas LPS points).
"""

import numpy as np
import SimpleITK as sitk

from .itk import execute_deterministic, mattes_method, set_pyramid, to_sitk

DEMONS_ITERATIONS = 60
DEMONS_SMOOTHING_MM = 3.0  # Gaussian regularisation of the demons displacement field


def register_atlas(subject_image, subject_affine, atlas_image, atlas_affine, deformable=True, seed=1):
    """Register an atlas template to a subject image of the same contrast (b=0 to b=0, or FA to FA):
    affine (Mattes mutual information, so any intensity scale), then, if `deformable`, symmetric-forces
    demons on the histogram-matched images for the local shape (a displacement field smoothed by
    DEMONS_SMOOTHING_MM, on a two-level pyramid for grids finer than 2.5 mm).

    Returns a SimpleITK transform mapping subject physical (LPS) points to atlas points; warp_labels
    carries labels with it. Arrays (x, y, z) with voxel -> RAS affines, as everywhere. Deterministic
    (fixed sampling seed, one thread for the affine stage; demons has no random sampling).
    """
    method = mattes_method(seed, sampling=0.25, bins=32)
    fixed, moving = to_sitk(subject_image, subject_affine), to_sitk(atlas_image, atlas_affine)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=200,
                                                    relaxationFactor=0.6, gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    voxel = set_pyramid(method, subject_affine, np.shape(subject_image))
    initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(3),
                                                sitk.CenteredTransformInitializerFilter.MOMENTS)
    method.SetInitialTransform(initial, inPlace=False)
    affine = execute_deterministic(method, fixed, moving)
    if not deformable:
        return affine
    warped = sitk.Resample(moving, fixed, affine, sitk.sitkLinear, 0.0)
    warped = sitk.HistogramMatching(warped, fixed, numberOfHistogramLevels=128, numberOfMatchPoints=15,
                                    thresholdAtMeanIntensity=True)
    smoothed = sitk.SmoothingRecursiveGaussian(fixed, voxel)  # the subject is noisy, the template not
    field = None
    for shrink in ([2, 1] if voxel < 2.5 else [1]):
        level_fixed, level_moving = smoothed, warped
        if shrink > 1:
            level_fixed, level_moving = sitk.Shrink(level_fixed, [shrink] * 3), sitk.Shrink(level_moving, [shrink] * 3)
        demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
        demons.SetNumberOfIterations(DEMONS_ITERATIONS)
        demons.SetStandardDeviations(DEMONS_SMOOTHING_MM / (voxel * shrink))  # in voxels of the level
        if field is None:
            field = demons.Execute(level_fixed, level_moving)
        else:
            initial = sitk.Resample(field, level_fixed, sitk.Transform(), sitk.sitkLinear, 0.0, field.GetPixelID())
            field = demons.Execute(level_fixed, level_moving, initial)
    if field.GetSize() != fixed.GetSize():
        field = sitk.Resample(field, fixed, sitk.Transform(), sitk.sitkLinear, 0.0, field.GetPixelID())
    displacement = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
    return sitk.CompositeTransform([affine, displacement])  # the displacement applies first, then the affine


def warp_labels(labels, atlas_affine, transform, subject_affine, subject_shape):
    """Atlas labels (x, y, z integers) carried onto the subject grid by nearest neighbour (0 outside)."""
    moving = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(labels, (2, 1, 0)), dtype=np.int32))
    geometry = to_sitk(np.zeros(np.asarray(labels).shape, np.float32), atlas_affine)
    moving.CopyInformation(geometry)
    reference = to_sitk(np.zeros(tuple(subject_shape[:3]), np.float32), subject_affine)
    warped = sitk.Resample(moving, reference, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkInt32)
    return np.transpose(sitk.GetArrayFromImage(warped), (2, 1, 0))
