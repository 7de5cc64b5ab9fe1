import numpy as np
import pytest

from DTISynthLib.core.frames import (
    LPS_TO_RAS,
    affine_rotation,
    fsl_bvecs_to_ras,
    ras_to_fsl_bvecs,
    rotation_matrix,
)


def _affine(rotation_degrees, voxel=(2.0, 2.0, 3.0), flip_i=False):
    affine = np.eye(4)
    affine[:3, :3] = rotation_matrix(rotation_degrees) @ np.diag(voxel)
    if flip_i:
        affine[:3, 0] *= -1
    return affine


def test_fsl_x_flip_rule_positive_determinant():
    # Positive determinant (neurological storage): FSL's first bvec component is negated.
    affine = _affine((0, 0, 0))
    assert np.linalg.det(affine[:3, :3]) > 0
    np.testing.assert_allclose(fsl_bvecs_to_ras(np.array([[1.0], [0.0], [0.0]]), affine), [[-1.0, 0.0, 0.0]])
    np.testing.assert_allclose(fsl_bvecs_to_ras(np.array([[0.0], [1.0], [0.0]]), affine), [[0.0, 1.0, 0.0]])


def test_fsl_x_flip_rule_negative_determinant():
    # Radiological storage (i runs right to left): bvecs are plain image-axis components.
    affine = _affine((0, 0, 0), flip_i=True)
    assert np.linalg.det(affine[:3, :3]) < 0
    # image axis i points to -x (left) in RAS, and the bvec (1, 0, 0) is along +i
    np.testing.assert_allclose(fsl_bvecs_to_ras(np.array([[1.0], [0.0], [0.0]]), affine), [[-1.0, 0.0, 0.0]])


@pytest.mark.parametrize("flip_i", [False, True])
def test_fsl_round_trip_oblique(flip_i):
    rng = np.random.default_rng(1)
    affine = _affine((12, -7, 25), flip_i=flip_i)
    g = rng.normal(size=(20, 3))
    g /= np.linalg.norm(g, axis=1)[:, None]
    np.testing.assert_allclose(fsl_bvecs_to_ras(ras_to_fsl_bvecs(g, affine), affine), g, atol=1e-12)


def test_oblique_rotation_moves_image_axes():
    affine = _affine((0, 0, 30))
    rotation = affine_rotation(affine)
    # +j (second image axis) maps to a vector rotated 30 degrees about S from +A
    np.testing.assert_allclose(rotation[:, 1], [-np.sin(np.radians(30)), np.cos(np.radians(30)), 0], atol=1e-12)
    assert np.allclose(LPS_TO_RAS @ LPS_TO_RAS, np.eye(3))
