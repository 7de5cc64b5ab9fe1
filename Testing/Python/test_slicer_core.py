"""Our NRRD files as Slicer opens them, and Slicer's files as we read them (slicer-core, real MRML)."""

import numpy as np
import pytest

from DTISynthLib.core.dwi import check_dwi
from DTISynthLib.core.frames import rotation_matrix
from DTISynthLib.fit.tensor_fit import fit_tensors
from DTISynthLib.fit.tensor_maps import compute_maps
from DTISynthLib.io.files import load_dwi, save_dwi, save_tensor, save_volume
from DTISynthLib.simulation.numerical_phantom import make_fibre_phantom

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")


def _matrix(vtk_matrix):
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


@pytest.fixture
def scene():
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    logic = slicer.vtkSlicerVolumesLogic()
    logic.SetMRMLScene(scene)
    return scene, logic


@pytest.fixture
def phantom():
    dwi, truth = make_fibre_phantom(shape=(12, 10, 6), rotation_degrees=(10, 5, 20))
    return check_dwi(dwi), truth


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
def test_slicer_opens_dwi_nrrd_as_dwi_node(tmp_path, scene, phantom, compress):
    _, logic = scene
    dwi, _ = phantom
    save_dwi(tmp_path / "dwi.nrrd", dwi, compress_nrrd=compress)
    assert (b"encoding: gzip" if compress else b"encoding: raw") in (tmp_path / "dwi.nrrd").read_bytes()[:2000]
    node = logic.AddArchetypeVolume(str(tmp_path / "dwi.nrrd"), "dwi")
    assert node.IsA("vtkMRMLDiffusionWeightedVolumeNode")
    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    np.testing.assert_allclose(_matrix(ijk_to_ras), dwi.affine, atol=1e-5)
    frame = vtk.vtkMatrix4x4()
    node.GetMeasurementFrameMatrix(frame)
    measurement_to_ras = _matrix(frame)[:3, :3]
    gradients = np.array([node.GetDiffusionGradient(i) for i in range(node.GetNumberOfGradients())])
    bvals = np.array([node.GetBValue(i) for i in range(node.GetNumberOfGradients())])
    np.testing.assert_allclose(bvals, dwi.bvals, atol=1e-3)
    np.testing.assert_allclose((measurement_to_ras @ gradients.T).T, dwi.gradients, atol=1e-6)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), np.transpose(dwi.data, (2, 1, 0, 3)))


def test_slicer_opens_dti_and_scalar_nrrd(tmp_path, scene, phantom):
    _, logic = scene
    dwi, truth = phantom
    save_tensor(tmp_path / "dti.nrrd", truth["tensor"], dwi.affine)
    save_volume(tmp_path / "fa.nrrd", compute_maps(truth["tensor"], names=("fa",))["fa"], dwi.affine)
    tensor_node = logic.AddArchetypeVolume(str(tmp_path / "dti.nrrd"), "dti")
    scalar_node = logic.AddArchetypeVolume(str(tmp_path / "fa.nrrd"), "fa")
    assert tensor_node.IsA("vtkMRMLDiffusionTensorVolumeNode")
    assert scalar_node.IsA("vtkMRMLScalarVolumeNode") and not scalar_node.IsA("vtkMRMLTensorVolumeNode")
    frame = vtk.vtkMatrix4x4()
    tensor_node.GetMeasurementFrameMatrix(frame)
    to_ras = _matrix(frame)[:3, :3]
    matrices = slicer.util.arrayFromVolume(tensor_node)  # (k, j, i, 3, 3) in the measurement frame
    ras = to_ras @ matrices.astype(np.float64) @ to_ras.T
    expected = np.transpose(truth["tensor"], (2, 1, 0, 3))
    from DTISynthLib.core.tensor_layout import tensor6_to_matrix
    np.testing.assert_allclose(ras, tensor6_to_matrix(expected), atol=1e-9)


def test_we_read_slicer_written_dwi_with_rotated_measurement_frame(tmp_path, scene, phantom):
    """Slicer's own writer, with gradients in a rotated measurement frame: our RAS gradients must match."""
    scene_, _ = scene
    dwi, _ = phantom
    frame_to_ras = rotation_matrix((0, 0, 35))
    node = scene_.AddNewNodeByClass("vtkMRMLDiffusionWeightedVolumeNode")
    image = vtk.vtkImageData()
    image.SetDimensions(*dwi.data.shape[:3])
    image.AllocateScalars(vtk.VTK_FLOAT, dwi.data.shape[3])
    node.SetAndObserveImageData(image)
    slicer.util.updateVolumeFromArray(node, np.transpose(dwi.data, (2, 1, 0, 3)).copy())
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(dwi.affine))
    frame4 = np.eye(4)
    frame4[:3, :3] = frame_to_ras
    node.SetMeasurementFrameMatrix(slicer.util.vtkMatrixFromArray(frame4))
    node.SetNumberOfGradients(len(dwi.bvals))
    for i, (b, g) in enumerate(zip(dwi.bvals, dwi.gradients)):
        node.SetDiffusionGradient(i, list(frame_to_ras.T @ g))
        node.SetBValue(i, float(b))
    storage = slicer.vtkMRMLNRRDStorageNode()
    storage.SetFileName(str(tmp_path / "slicer_dwi.nrrd"))
    assert storage.WriteData(node)
    back = load_dwi(tmp_path / "slicer_dwi.nrrd")
    np.testing.assert_allclose(back.gradients, dwi.gradients, atol=1e-6)
    np.testing.assert_allclose(back.bvals, dwi.bvals, atol=1e-3)
    np.testing.assert_allclose(back.affine, dwi.affine, atol=1e-5)
    np.testing.assert_array_equal(back.data, dwi.data)


def test_vtk_diffusion_tensor_mathematics_agrees(scene, peer_dwi):
    """Slicer's vtkDiffusionTensorMathematics FA and trace equal ours on real scans and a phantom."""
    dwi = load_dwi(peer_dwi)
    mask = dwi.mean_b0() > np.percentile(dwi.mean_b0(), 60)
    tensor = fit_tensors(dwi, mask).tensor
    maps = compute_maps(tensor, mask, names=("fa", "md"))
    from DTISynthLib.core.tensor_layout import tensor6_to_matrix
    matrices = tensor6_to_matrix(np.transpose(tensor, (2, 1, 0, 3)).astype(np.float64)).reshape(-1, 9)
    image = vtk.vtkImageData()
    image.SetDimensions(*tensor.shape[:3])
    from vtk.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    array = numpy_to_vtk(matrices.astype(np.float32), deep=True)
    array.SetNumberOfComponents(9)
    image.GetPointData().SetTensors(array)
    results = {}
    for name, operation in (("fa", "SetOperationToFractionalAnisotropy"), ("trace", "SetOperationToTrace")):
        math = slicer.vtkDiffusionTensorMathematics()
        math.SetInputData(image)
        getattr(math, operation)()
        math.Update()
        values = vtk_to_numpy(math.GetOutput().GetPointData().GetScalars())
        results[name] = values.reshape(tensor.shape[2], tensor.shape[1], tensor.shape[0]).transpose(2, 1, 0)
    positive = mask & (compute_maps(tensor, mask, names=("evals",), policy="keep")["evals"].min(axis=-1) > 0)
    assert positive.sum() > 1000
    np.testing.assert_allclose(results["fa"][positive], maps["fa"][positive], atol=1e-5)
    np.testing.assert_allclose(results["trace"][positive], 3 * maps["md"][positive], atol=1e-9)
