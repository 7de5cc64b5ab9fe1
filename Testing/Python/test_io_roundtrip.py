"""Round trips through every format, and the cross-format tensor / V1 checks."""

import numpy as np
import pytest
from conftest import random_gradient_table

from DTISynthLib.core.dwi import check_dwi
from DTISynthLib.fit.tensor_fit import fit_tensors
from DTISynthLib.fit.tensor_maps import compute_maps
from DTISynthLib.io.files import (
    load_dwi,
    load_tensor,
    load_volume,
    save_dwi,
    save_tensor,
    save_volume,
)
from DTISynthLib.simulation.numerical_phantom import LABELS, make_fibre_phantom

FORMATS = ["dwi.nii.gz", "dwi.nii", "dwi.nrrd", "dwi.nhdr"]


@pytest.fixture
def oblique_phantom():
    bvals, gradients = random_gradient_table(12, seed=3, n_b0=2)
    dwi, truth = make_fibre_phantom(shape=(20, 18, 10), rotation_degrees=(15, -10, 30), bvals=bvals,
                                    gradients=gradients)
    return check_dwi(dwi), truth


@pytest.mark.parametrize("name", FORMATS)
def test_dwi_round_trip(tmp_path, oblique_phantom, name):
    dwi, _ = oblique_phantom
    save_dwi(tmp_path / name, dwi)
    back = load_dwi(tmp_path / name)
    np.testing.assert_array_equal(back.data, dwi.data)
    np.testing.assert_allclose(back.affine, dwi.affine, atol=1e-6)
    np.testing.assert_allclose(back.bvals, dwi.bvals, atol=1e-3)
    np.testing.assert_allclose(back.gradients, dwi.gradients, atol=1e-7)


@pytest.mark.parametrize("name", FORMATS)
def test_v1_in_ras_after_conversion(tmp_path, oblique_phantom, name):
    """Each bundle's fitted V1 is its known RAS direction after writing and reading the DWI."""
    dwi, truth = oblique_phantom
    save_dwi(tmp_path / name, dwi)
    back = load_dwi(tmp_path / name)
    fit = fit_tensors(back, truth["labels"] > 0)
    v1 = compute_maps(fit.tensor, names=("v1",))["v1"]
    for bundle, direction in truth["bundle_directions"].items():
        voxels = v1[truth["labels"] == LABELS[bundle]]
        cosines = np.abs(voxels @ direction)
        assert cosines.min() > 1 - 1e-6, (name, bundle, cosines.min())


# "Identical" means to float32 storage precision: 1e-9 mm^2/s is 1e-6 of a white-matter diffusivity.
TENSOR_ATOL = 1e-9


def test_nifti_nrrd_nifti_gives_identical_tensors(tmp_path, oblique_phantom):
    dwi, truth = oblique_phantom
    save_dwi(tmp_path / "a.nii.gz", dwi)
    first = load_dwi(tmp_path / "a.nii.gz")
    save_dwi(tmp_path / "b.nrrd", first)
    save_dwi(tmp_path / "c.nii.gz", load_dwi(tmp_path / "b.nrrd"))
    last = load_dwi(tmp_path / "c.nii.gz")
    mask = truth["labels"] > 0
    t_first = fit_tensors(first, mask).tensor
    t_last = fit_tensors(last, mask).tensor
    np.testing.assert_allclose(t_last, t_first, rtol=0, atol=TENSOR_ATOL)


def test_real_scan_nifti_nrrd_nifti(tmp_path, real_dwi):
    dwi = load_dwi(real_dwi)
    save_dwi(tmp_path / "r.nhdr", dwi)
    save_dwi(tmp_path / "r.nii.gz", load_dwi(tmp_path / "r.nhdr"))
    back = load_dwi(tmp_path / "r.nii.gz")
    np.testing.assert_array_equal(back.data, dwi.data)
    np.testing.assert_allclose(back.gradients, dwi.gradients, rtol=0, atol=1e-15)
    # Where a signal is <= 0 it is floored at 1e-6 x the voxel maximum (as MRtrix3 does); the weighted
    # normal equations are then so ill-conditioned that a 1e-16 change of a vector moves the tensor.
    # Identity is required wherever every signal is positive.
    mask = (dwi.mean_b0() > np.percentile(dwi.mean_b0(), 70)) & (dwi.data > 0).all(axis=-1)
    np.testing.assert_allclose(fit_tensors(back, mask).tensor, fit_tensors(dwi, mask).tensor, rtol=0, atol=TENSOR_ATOL)


@pytest.mark.parametrize("name", ["t.nii.gz", "t.nrrd"])
def test_tensor_round_trip(tmp_path, oblique_phantom, name):
    _, truth = oblique_phantom
    save_tensor(tmp_path / name, truth["tensor"], oblique_phantom[0].affine)
    tensor, affine = load_tensor(tmp_path / name)
    np.testing.assert_allclose(tensor, truth["tensor"], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(affine, oblique_phantom[0].affine, atol=1e-6)


@pytest.mark.parametrize("name", ["s.nii.gz", "s.nrrd"])
def test_scalar_round_trip(tmp_path, oblique_phantom, name):
    dwi, truth = oblique_phantom
    save_volume(tmp_path / name, truth["s0"], dwi.affine)
    volume, affine = load_volume(tmp_path / name)
    np.testing.assert_array_equal(volume, truth["s0"])
    np.testing.assert_allclose(affine, dwi.affine, atol=1e-6)


def test_dicom_series_through_dcm2niix(tmp_path):
    """A classic DICOM DWI series (LPS geometry and gradients) read through the real dcm2niix."""
    from synthetic_dicom import write_dicom_series

    from DTISynthLib.io.dicom import read_dicom_dwi

    bvals, gradients = random_gradient_table(8, seed=4)
    dwi, truth = make_fibre_phantom(shape=(20, 18, 8), rotation_degrees=(12, -8, 25), bvals=bvals, gradients=gradients)
    scale = write_dicom_series(tmp_path / "dicom", dwi)
    back = check_dwi(read_dicom_dwi(tmp_path / "dicom"))
    assert back.source == str(tmp_path / "dicom")
    np.testing.assert_allclose(back.gradients, dwi.gradients, atol=2e-6)  # dcm2niix prints 6 decimals
    np.testing.assert_allclose(back.bvals, dwi.bvals, atol=1e-3)
    # dcm2niix may store the voxels in another order: compare through world coordinates.
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in back.data.shape[:3]], indexing="ij"), -1).reshape(-1, 3)
    world = ijk @ back.affine[:3, :3].T + back.affine[:3, 3]
    original = np.linalg.solve(dwi.affine[:3, :3], (world - dwi.affine[:3, 3]).T).T
    np.testing.assert_allclose(original, np.round(original), atol=1e-3)
    index = tuple(np.round(original).astype(int).T)
    np.testing.assert_allclose(back.data.reshape(-1, back.data.shape[3]), dwi.data[index], atol=0.51 / scale)
    labels = truth["labels"][index].reshape(back.data.shape[:3])
    v1 = compute_maps(fit_tensors(back, labels > 0).tensor, names=("v1",))["v1"]
    for bundle, direction in truth["bundle_directions"].items():
        assert np.abs(v1[labels == LABELS[bundle]] @ direction).min() > 0.999, bundle


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint16, np.int64])
def test_mean_b0_of_one_or_several_b0_volumes_is_the_float64_mean_in_float32(dtype):
    from DTISynthLib.core.dwi import DWI

    rng = np.random.default_rng(4)
    data = np.asfortranarray(rng.uniform(0, 3e4, (6, 5, 4, 5)).astype(dtype))  # F order, as nibabel reads
    for bvals in ([0, 1000, 1000, 1000, 1000], [0, 1000, 0, 1000, 5]):  # one b=0 volume; three (b <= 5)
        dwi = DWI(data, np.eye(4), np.array(bvals, float), np.zeros((5, 3)))
        expected = data[..., np.array(bvals) <= 5].astype(np.float64).mean(axis=-1).astype(np.float32)
        mean = dwi.mean_b0()
        assert mean.dtype == np.float32 and mean.shape == (6, 5, 4)
        np.testing.assert_array_equal(mean, expected)
        assert not np.shares_memory(mean, data)  # a copy, never a view of the DWI
