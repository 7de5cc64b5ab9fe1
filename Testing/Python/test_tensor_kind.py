"""The tensor-unet kind: its frames (oblique measured directions, sagittal and flipped grids, any
gradient table), the symmetries it trains with, its simulated inputs, and training (resumable) and
synthesis through the real jobs."""

import numpy as np
import pytest
import torch

from DTISynthLib import cli
from DTISynthLib.core.dwi import DWI
from DTISynthLib.core.frames import rotation_matrix
from DTISynthLib.core.gradient_schemes import SIEMENS_6_RAS, dti_6
from DTISynthLib.core.progress import NullReporter
from DTISynthLib.core.tensor_layout import (
    matrix_to_tensor6,
    shrink_off_diagonals,
    tensor6_to_matrix,
)
from DTISynthLib.generators import tensor_unet
from DTISynthLib.generators.package import read_manifest
from DTISynthLib.generators.registry import GridSignals
from DTISynthLib.io.files import load_dwi
from DTISynthLib.simulation.cohort import write_cohort
from DTISynthLib.training.data import dti_targets


def _random_tensors(shape, seed=0):
    rng = np.random.default_rng(seed)
    evals = rng.uniform(0.2e-3, 1.8e-3, shape + (3,))
    frames = np.stack([rotation_matrix(a) for a in rng.uniform(-90, 90, (int(np.prod(shape)), 3))]).reshape(
        shape + (3, 3))
    return frames @ (evals[..., :, None] * np.swapaxes(frames, -1, -2))


SAGITTAL_FLIPPED = np.array([[0.0, 0.0, -2.0, 60.0], [-1.5, 0.0, 0.0, 90.0], [0.0, 1.5, 0.0, -30.0], [0, 0, 0, 1]])


@pytest.mark.parametrize("affine", [np.diag([1.7, 1.7, 2.0, 1.0]), SAGITTAL_FLIPPED], ids=["axial", "sagittal-flipped"])
def test_the_true_off_diagonals_in_the_working_frame_give_the_true_signals_of_any_table(affine):
    """An oblique measured frame (a Philips slab's x, y, z), on an axial grid and on a sagittal grid
    stored with a flipped axis: a network that outputs the true correlations of the tensor in the
    working frame, and no diagonal correction, gives exactly the true signals of any gradient table."""
    shape = (6, 5, 4)
    tensor = _random_tensors(shape)  # RAS, mm^2/s
    measured = rotation_matrix((12, -20, 25))  # rows: the DWI's x, y, z directions (RAS)
    b, s0 = 1300.0, 400.0
    weighted = s0 * np.exp(-b * np.einsum("id,...de,ie->...i", measured, tensor, measured))
    signals = np.concatenate([np.full(shape + (1,), s0), weighted], axis=-1)
    working, _ = tensor_unet.working_frame(measured, affine)
    in_frame = working @ tensor @ working.T
    diagonal = np.diagonal(in_frame, axis1=-2, axis2=-1)
    r = np.stack([in_frame[..., i, j] / np.sqrt(diagonal[..., i] * diagonal[..., j]) for i, j in tensor_unet._PAIRS], -1)
    seen = {}

    def predict(key, inputs, slice_indices):  # the network's tanh outputs that give the true tensor
        seen["inputs"] = inputs
        assert key == tensor_unet.NETWORK and inputs.shape[1] == tensor_unet.INPUT_CHANNELS
        out = np.zeros((len(slice_indices), 6) + inputs.shape[2:], np.float32)
        out[:, :3] = np.transpose(r[:, :, slice_indices] / tensor_unet.MARGIN, (2, 3, 1, 0))
        return out

    table = np.random.default_rng(4).normal(size=(9, 3))
    table /= np.linalg.norm(table, axis=1, keepdims=True)  # any gradient table, not only Siemens'
    manifest = {"b_value": 1000.0, "directions": [{"index": k + 1, "gradient_ras": g.tolist()} for k, g in enumerate(table)]}
    slices = np.arange(shape[2])
    grid_signals = GridSignals(signals, np.full(shape, s0), slices, b, measured, affine)
    synthetic = tensor_unet.synthesize(predict, grid_signals, manifest, NullReporter())
    expected = s0 * np.exp(-1000.0 * np.einsum("kd,...de,ke->...k", table, tensor, table))
    np.testing.assert_allclose(synthetic, expected, rtol=1e-4)
    # the centre ADC channels are the working frame's diagonal (units), the b=0 channels the b=0 / median
    np.testing.assert_allclose(seen["inputs"][:, 3:6], np.transpose(diagonal, (2, 3, 1, 0)) / 1e-3, rtol=1e-4)
    np.testing.assert_allclose(seen["inputs"][:, 10], 1.0, rtol=1e-6)
    # without the off-diagonal terms the diagonal alone is something else
    flat = tensor_unet.synthesize(lambda key, inputs, s: np.zeros((len(s), 6) + inputs.shape[2:], np.float32),
                                  grid_signals, manifest, NullReporter())
    assert np.abs(flat / expected - 1).mean() > 0.05


def test_the_working_frame_follows_the_image_axes():
    frame, order = tensor_unet.working_frame(np.eye(3), SAGITTAL_FLIPPED)
    # the affine's columns: image axis 0 runs along -A, axis 1 along +S, axis 2 (slices) along -R
    np.testing.assert_array_equal(order, [1, 2, 0])
    np.testing.assert_allclose(frame, [[0, -1, 0], [0, 0, 1], [-1, 0, 0]])


def _as_matrix(tensor6):
    return tensor6_to_matrix(np.moveaxis(tensor6.numpy().astype(np.float64), 1, -1))


def test_the_in_plane_symmetries_transform_the_tensor_like_the_image():
    """Image (rows = W's axis 1, columns = W's axis 0) and tensor field transformed together agree
    with the physical map: a point moves by R and its tensor becomes R D R^T. torch.rot90 (k = 1)
    takes (x, y) to (y, -x): R = [[0, 1, 0], [-1, 0, 0], [0, 0, 1]], and equals a transpose then a
    flip of the rows."""
    field = torch.from_numpy(matrix_to_tensor6(_random_tensors((5, 5), seed=3)).astype(np.float32))
    field = field.permute(2, 0, 1).unsqueeze(0)  # (1, 6, H, W)
    cases = {
        "flip columns": (field.flip(-1), tensor_unet.flip_tensor(field, 0).flip(-1), np.diag([-1.0, 1, 1])),
        "flip rows": (field.flip(-2), tensor_unet.flip_tensor(field, 1).flip(-2), np.diag([1.0, -1, 1])),
        "transpose": (field.transpose(-1, -2), tensor_unet.transpose_tensor(field).transpose(-1, -2),
                      np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]])),
        "rot90": (torch.rot90(field, 1, dims=(-2, -1)),
                  tensor_unet.flip_tensor(tensor_unet.transpose_tensor(field), 1).transpose(-1, -2).flip(-2),
                  np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]])),
    }
    for name, (moved, augmented, rotation) in cases.items():
        expected = rotation @ _as_matrix(moved) @ rotation.T
        np.testing.assert_allclose(_as_matrix(augmented), expected, atol=1e-9, err_msg=name)
    # a fibre along the columns (x) of a stripe, rotated by 90 degrees, runs along the rows (y)
    stripe = torch.zeros(1, 6, 5, 5)
    stripe[0, 0], stripe[0, 1], stripe[0, 2] = 1.7, 0.3, 0.3
    rotated = tensor_unet.flip_tensor(tensor_unet.transpose_tensor(stripe), 1).transpose(-1, -2).flip(-2)
    assert float(rotated[0, 1].min()) == pytest.approx(1.7) and float(rotated[0, 0].max()) == pytest.approx(0.3)


def test_frame_rotations_are_rotations_and_rotate_tensors():
    generator = torch.Generator().manual_seed(0)
    rotations = tensor_unet.random_rotations(64, 15.0, generator)
    np.testing.assert_allclose((rotations @ rotations.transpose(1, 2)).numpy(), np.broadcast_to(np.eye(3), (64, 3, 3)),
                               atol=1e-5)
    np.testing.assert_allclose(torch.linalg.det(rotations).numpy(), 1.0, atol=1e-5)
    angles = np.degrees(np.arccos(np.clip((np.trace(rotations.numpy(), axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert angles.max() <= 15.0 + 1e-3 and angles.max() > 10.0
    tensors = torch.from_numpy(matrix_to_tensor6(_random_tensors((64,), seed=1)).astype(np.float32))[:, :, None]
    rotated = tensor_unet.rotate_tensor(tensors, rotations)[:, :, 0]
    expected = rotations.numpy() @ tensor6_to_matrix(tensors[:, :, 0].numpy()) @ rotations.numpy().transpose(0, 2, 1)
    np.testing.assert_allclose(tensor6_to_matrix(rotated.numpy()), expected, atol=1e-6)


def test_simulated_inputs_measure_the_diagonal_and_carry_the_asked_noise():
    generator = torch.Generator().manual_seed(0)
    tensor = torch.zeros(2, 3, 6, 16, 16)
    tensor[:, :, 0], tensor[:, :, 1], tensor[:, :, 2] = 1.7, 0.4, 0.9  # units (1e-3 mm^2/s)
    b0 = torch.full((2, 3, 16, 16), 250.0)
    median = torch.tensor([250.0, 250.0])
    exact = tensor_unet.simulated_inputs(b0, tensor, median, torch.tensor([800.0, 2500.0]), torch.full((2,), 1e7),
                                         generator)
    np.testing.assert_allclose(exact[:, :9].reshape(2, 3, 3, 16, 16).numpy(),
                               np.broadcast_to(np.array([1.7, 0.4, 0.9])[None, None, :, None, None], (2, 3, 3, 16, 16)),
                               rtol=1e-3)
    np.testing.assert_allclose(exact[:, 9:].numpy(), 1.0, rtol=1e-5)
    noisy = tensor_unet.simulated_inputs(b0, tensor, median, torch.tensor([1000.0, 1000.0]), torch.full((2,), 25.0),
                                         generator)
    assert float(noisy[:, 9:].std()) == pytest.approx(1 / 25, rel=0.15)  # sigma = median b=0 / SNR


def test_outputs_at_their_bounds_still_give_positive_semidefinite_tensors():
    output = torch.tensor([1.0, 1.0, -1.0, -1.0, 1.0, 0.0]).view(1, 6, 1, 1)
    tensor = tensor_unet.decode(output, torch.tensor([0.5, 1.5, 1.0]).view(1, 3, 1, 1))[0, :, 0, 0].numpy()
    assert tensor[0] == pytest.approx(0.0) and tensor[1] == pytest.approx(2.5)  # ADC + DIAGONAL_RANGE t, >= 0
    tensors = np.array([[1.0, 2.0, 0.5, 0.95 * np.sqrt(2), 0.95 * np.sqrt(0.5), -0.95]])  # |r| < 1 each
    assert np.linalg.eigvalsh(tensor6_to_matrix(tensors))[0, 0] < 0  # but not positive semi-definite together
    fixed = shrink_off_diagonals(tensors)
    values = np.linalg.eigvalsh(tensor6_to_matrix(fixed))[0]
    assert values[0] == pytest.approx(0.0, abs=1e-12) and values[1] > 0  # just enough, no more
    np.testing.assert_array_equal(fixed[0, :3], tensors[0, :3])  # the diagonal, so MD, kept
    ratios = fixed[0, 3:] / tensors[0, 3:]
    np.testing.assert_allclose(ratios, ratios[0])  # all scaled together: the correlations' pattern kept
    valid = tensor6_to_matrix(np.array([[1.0, 2.0, 0.5, 0.3, 0.1, -0.2]]))
    np.testing.assert_array_equal(shrink_off_diagonals(matrix_to_tensor6(valid)), matrix_to_tensor6(valid))


def test_the_closed_form_smallest_eigenvalue_matches_numpy():
    from DTISynthLib.core.tensor_layout import smallest_eigenvalue_zero_diagonal

    off = np.random.default_rng(0).uniform(-1.2, 1.2, (5000, 3))
    off[:10], off[10:20, 1:] = 0.0, 0.0  # all zero; one pair only
    matrices = np.zeros((len(off), 3, 3))
    for c, (i, j) in enumerate(((0, 1), (0, 2), (1, 2))):
        matrices[:, i, j] = matrices[:, j, i] = off[:, c]
    np.testing.assert_allclose(smallest_eigenvalue_zero_diagonal(off), np.linalg.eigvalsh(matrices)[:, 0], atol=1e-12)


def test_training_tensors_are_in_the_working_frame_of_a_flipped_grid():
    """A DTI stored with its first axis running right-to-left: D_W,01 = -Dxy (RAS)."""
    tensor = np.zeros((4, 4, 3, 6))
    tensor[...] = [1.2e-3, 0.6e-3, 0.5e-3, 0.3e-3, 0.1e-3, -0.05e-3]
    bvals, gradients = dti_6(1000.0)
    data = predict_dti(tensor, 300.0, bvals, gradients)
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    b0, fitted, mask, model_affine = dti_targets(DWI(data, affine, bvals, gradients, "<test>"))
    np.testing.assert_allclose(fitted, tensor, rtol=1e-4)  # the exactly determined fit, RAS
    volume, mask, median = tensor_unet.subject_volume(b0, fitted, mask, model_affine)
    assert mask.all() and median == pytest.approx(300.0, rel=1e-5)
    np.testing.assert_allclose(volume[0, :, 0, 0], [300.0, 1.2, 0.6, 0.5, -0.3, -0.1, -0.05], rtol=1e-4)


def predict_dti(tensor, s0, bvals, gradients):
    from DTISynthLib.fit.tensor_fit import predict_signals

    return predict_signals(tensor, np.full(tensor.shape[:-1], s0), bvals, gradients).astype(np.float32)


def _train(cohort, out, epochs, resume=False):
    args = ["train", "--kind", "tensor-unet", "--data", str(cohort), "--out", str(out), "--ngf", "4", "--depth", "5",
            "--epochs", str(epochs), "--lr", "1e-3", "--batch-size", "4", "--validation-subjects", "sub-003"]
    return cli.main(args + (["--resume"] if resume else []))


def _weights(folder):
    from safetensors.numpy import load_file

    return load_file(str(folder / "tensor.safetensors"))


def test_the_tensor_kind_trains_resumes_and_synthesizes_through_the_jobs(tmp_path):
    cohort = tmp_path / "cohort"
    write_cohort(cohort, 3, "sampled", seed=5, grid=(32, 32, 19), noise=False)
    models = tmp_path / "models"
    assert _train(cohort, models, 5) == 0
    manifest = read_manifest(models)
    assert manifest["architecture"]["kind"] == "tensor-unet" and manifest["architecture"]["parameters"] > 1000
    assert manifest["assembly"] == "physics" and manifest["b_range"] == [500.0, 3000.0]
    parts = {s["subject"]: s["part"] for s in manifest["training"]["subjects"]}
    assert parts == {"sub-001": "train", "sub-002": "train", "sub-003": "validation"}
    history = manifest["networks"][0]["history"]
    assert history[-1]["tensor"] < history[0]["tensor"]  # it learns
    assert np.isfinite(manifest["networks"][0]["validation"]["val_fa"])
    # stopped after 3 epochs and resumed to 5: the same weights as the uninterrupted run
    resumed = tmp_path / "resumed"
    assert _train(cohort, resumed, 3) == 0 and _train(cohort, resumed, 5, resume=True) == 0
    for name, value in _weights(models).items():
        np.testing.assert_array_equal(_weights(resumed)[name], value, err_msg=name)
    noisy = tmp_path / "noisy"
    write_cohort(noisy, 1, "sampled", seed=6, grid=(32, 32, 19))
    dwi3 = noisy / "sub-001" / "dwi" / "sub-001_acq-dwi3_dwi.nii.gz"
    assert cli.main(["synthesize", "--dwi", str(dwi3), "--models", str(models), "--out",
                     str(tmp_path / "synthetic"), "--precision", "fp32"]) == 0
    synthetic = load_dwi(tmp_path / "synthetic" / "synthetic_dti.nii.gz")
    np.testing.assert_allclose(synthetic.gradients[1:], SIEMENS_6_RAS, atol=1e-9)
    brain = synthetic.data[..., 0] > 0.3 * synthetic.data[..., 0].max()
    assert (synthetic.data[brain][:, 1:] > 0).all() and (synthetic.data[brain][:, 1:] <= 1.0001 * synthetic.data[brain][:, :1]).all()
