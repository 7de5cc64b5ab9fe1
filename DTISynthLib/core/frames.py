"""Coordinate frames of gradient vectors and tensors.

DTISynth keeps every gradient vector and tensor in one frame: the RAS+ world (scanner) frame that
the image affine maps voxel indices into (x increases to the subject's Right, y to Anterior, z to
Superior). Conversions to other conventions happen only at file boundaries, here:

- FSL bvec: vectors are given along the image axes (i, j, k) of the NIfTI file, in FSL's
  "radiological" voxel frame: when the affine's 3x3 part has a positive determinant, FSL flips the
  first voxel axis, so the x component of the bvec is negated relative to the i axis.
- NRRD: vectors are given in the measurement frame; `measurement frame` maps them into the header's
  `space` (LPS for Slicer files, or RAS). LPS and RAS differ by negating x and y.
"""

import numpy as np

from .errors import InputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def check_affine(source, affine):
    """Refuse a voxel -> world affine that maps no volume: non-finite, or a singular 3x3 part (a zero
    voxel size or two parallel axes)."""
    affine = np.asarray(affine, dtype=np.float64)
    if not np.isfinite(affine).all():
        raise InputError(source, "a finite voxel-to-world matrix", f"NaN or inf in\n{affine.round(4)}")
    sizes = np.linalg.norm(affine[:3, :3], axis=0)
    if sizes.min() <= 0 or abs(np.linalg.det(affine[:3, :3])) <= 1e-6 * np.prod(sizes):
        raise InputError(source, "a voxel-to-world matrix with non-zero voxel sizes along independent axes",
                         f"voxel sizes {sizes.round(4).tolist()} mm and determinant "
                         f"{np.linalg.det(affine[:3, :3]):.3g} (a singular matrix)")


def affine_rotation(affine):
    """Direction cosines (3x3, columns = image axes i, j, k in RAS) of a 4x4 voxel-to-RAS affine.

    The orthonormal polar factor U V^T of the 3x3 part (its SVD U S V^T): the column-normalised matrix
    when the axes are orthogonal, and the nearest rotation (or reflection) when a stored sform carries
    a little shear, as MRtrix3 uses.
    """
    u, _, vt = np.linalg.svd(np.asarray(affine, dtype=np.float64)[:3, :3])
    return u @ vt


def _fsl_flip(affine):
    return np.diag([-1.0, 1.0, 1.0]) if np.linalg.det(np.asarray(affine)[:3, :3]) > 0 else np.eye(3)


def fsl_bvecs_to_ras(bvecs, affine):
    """FSL bvecs (3, n) along the NIfTI image axes -> unit-or-zero vectors (n, 3) in RAS world frame."""
    image_frame = _fsl_flip(affine) @ np.asarray(bvecs, dtype=np.float64)
    return (affine_rotation(affine) @ image_frame).T


def ras_to_fsl_bvecs(gradients_ras, affine):
    """Vectors (n, 3) in RAS world frame -> FSL bvecs (3, n) along the image axes of `affine`."""
    image_frame = np.linalg.solve(affine_rotation(affine), np.asarray(gradients_ras, dtype=np.float64).T)
    return _fsl_flip(affine) @ image_frame


def rotate_tensor(tensor_matrices, rotation):
    """Express symmetric tensors (..., 3, 3) given in frame A in frame B, where v_B = rotation @ v_A."""
    return rotation @ tensor_matrices @ rotation.T


def rotation_matrix(degrees_xyz):
    """Rotation (3x3) about R, A, S axes by the given angles in degrees, applied x then y then z."""
    ax, ay, az = np.radians(degrees_xyz)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx
