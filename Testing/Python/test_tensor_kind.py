"""The tensor-unet kind: its frames (oblique measured directions, sagittal and flipped grids, any
gradient table), the symmetries it trains with, its simulated inputs, and training (resumable) and
synthesis through the real jobs."""

import json

import numpy as np
import pytest
import torch

from DTISynthLib import cli
from DTISynthLib.core.dwi import DWI
from DTISynthLib.core.errors import InputError
from DTISynthLib.core.frames import rotation_matrix
from DTISynthLib.core.gradient_schemes import SIEMENS_6_RAS, dti_6
from DTISynthLib.core.progress import NullReporter
from DTISynthLib.core.tensor_layout import (
    matrix_to_tensor6,
    shrink_off_diagonals,
    tensor6_to_matrix,
)
from DTISynthLib.fit.tensor_maps import eigen_decompose
from DTISynthLib.generators import tensor_unet
from DTISynthLib.training import tensor_unet as tensor_training
from DTISynthLib.generators.manifest import FORMAT, FORMAT_VERSION, Manifest
from DTISynthLib.generators.package import read_manifest
from DTISynthLib.generators.registry import GridSignals
from DTISynthLib.io.files import load_dwi, load_volume
from DTISynthLib.simulation.cohort import write_cohort
from DTISynthLib.training.data import dti_targets


def _random_tensors(shape, seed=0, prolate=False):
    """Random tensors (..., 3, 3), mm^2/s; prolate: cylinders (l1 1.0-1.6e-3, l2 = l3 0.4-0.6e-3 mm^2/s)."""
    rng = np.random.default_rng(seed)
    evals = rng.uniform(0.2e-3, 1.8e-3, shape + (3,))
    if prolate:
        evals = np.stack([rng.uniform(1.0e-3, 1.6e-3, shape)] + [rng.uniform(0.4e-3, 0.6e-3, shape)] * 2, -1)
    frames = np.stack([rotation_matrix(a) for a in rng.uniform(-90, 90, (int(np.prod(shape)), 3))]).reshape(
        shape + (3, 3))
    return frames @ (evals[..., :, None] * np.swapaxes(frames, -1, -2))


SAGITTAL_FLIPPED = np.array([[0.0, 0.0, -2.0, 60.0], [-1.5, 0.0, 0.0, 90.0], [0.0, 1.5, 0.0, -30.0], [0, 0, 0, 1]])


@pytest.mark.parametrize("heads", [tensor_unet.SIGNED, tensor_unet.SPLIT])
@pytest.mark.parametrize("affine", [np.diag([1.7, 1.7, 2.0, 1.0]), SAGITTAL_FLIPPED], ids=["axial", "sagittal-flipped"])
def test_the_true_off_diagonals_in_the_working_frame_give_the_true_signals_of_any_table(affine, heads):
    """An oblique measured frame (a Philips slab's x, y, z), on an axial grid and on a sagittal grid
    stored with a flipped axis: a network that outputs the true correlations of the tensor in the
    working frame (signed, or magnitudes and the true sign pattern as the most probable), and no
    diagonal correction, gives exactly the true signals of any gradient table."""
    shape = (6, 5, 4)
    tensor = _random_tensors(shape, prolate=heads == tensor_unet.SPLIT)  # RAS, mm^2/s
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
        out = np.zeros((len(slice_indices), tensor_unet.HEADS[heads]) + inputs.shape[2:], np.float32)
        correlations = np.transpose(r[:, :, slice_indices] / tensor_unet.MARGIN, (2, 3, 1, 0))
        if heads == tensor_unet.SIGNED:
            out[:, :3] = correlations
            return out
        d = np.transpose(diagonal[:, :, slice_indices], (2, 3, 1, 0))  # (n, 3, y, x)
        radial = np.transpose(np.linalg.eigvalsh(in_frame)[:, :, slice_indices, 0], (2, 1, 0))
        rho = radial / d.min(1)
        out[:, 0] = 2 * (1 - rho) / tensor_unet.RHO_RANGE - 1
        pattern = (np.sign(correlations)[:, None] == tensor_unet.PATTERNS[None, :, :, None, None]).all(2)
        assert pattern.any(1).all()  # a prolate tensor's signs are one of the four patterns
        out[:, 4:] = np.where(pattern, 0.5, -0.5)  # the true pattern the most probable
        return out

    table = np.random.default_rng(4).normal(size=(9, 3))
    table /= np.linalg.norm(table, axis=1, keepdims=True)  # any gradient table, not only Siemens'
    manifest = Manifest({"format": FORMAT, "format_version": FORMAT_VERSION, "b_value": 1000.0, "grid": None,
                         "intensity": {}, "architecture": {"kind": "tensor-unet", "heads": heads, "sign_temperature": 1.0},
                         "networks": [{"name": tensor_unet.NETWORK, "file": "tensor_unet.safetensors", "sha256": "0" * 64}],
                         "directions": [{"index": k + 1, "gradient_ras": g.tolist()} for k, g in enumerate(table)]})
    slices = np.arange(shape[2])
    grid_signals = GridSignals(signals, np.full(shape, s0), slices, b, measured, affine)
    synthetic, maps = tensor_unet.synthesize(predict, grid_signals, manifest, NullReporter())
    assert set(maps) == ({"v1_confidence", "md_uncertainty"} if heads == tensor_unet.SPLIT else set())
    if heads == tensor_unet.SPLIT:  # orthogonal measured directions fix MD whatever the signs
        np.testing.assert_allclose(maps["md_uncertainty"], 0.0, atol=1e-6)
    expected = s0 * np.exp(-1000.0 * np.einsum("kd,...de,ke->...k", table, tensor, table))
    np.testing.assert_allclose(synthetic, expected, rtol=1e-4)
    # the centre ADC channels are the working frame's diagonal (units), the b=0 channels the b=0 / median
    np.testing.assert_allclose(seen["inputs"][:, 3:6], np.transpose(diagonal, (2, 3, 1, 0)) / 1e-3, rtol=1e-4)
    np.testing.assert_allclose(seen["inputs"][:, 10], 1.0, rtol=1e-6)
    # without the off-diagonal terms the diagonal alone is something else
    flat, _ = tensor_unet.synthesize(lambda key, inputs, s: np.zeros((len(s), 6) + inputs.shape[2:], np.float32),
                                     grid_signals, Manifest(dict(manifest.data, architecture={})), NullReporter())
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
        "flip columns": (field.flip(-1), tensor_training.flip_tensor(field, 0).flip(-1), np.diag([-1.0, 1, 1])),
        "flip rows": (field.flip(-2), tensor_training.flip_tensor(field, 1).flip(-2), np.diag([1.0, -1, 1])),
        "transpose": (field.transpose(-1, -2), tensor_training.transpose_tensor(field).transpose(-1, -2),
                      np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]])),
        "rot90": (torch.rot90(field, 1, dims=(-2, -1)),
                  tensor_training.flip_tensor(tensor_training.transpose_tensor(field), 1).transpose(-1, -2).flip(-2),
                  np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]])),
    }
    for name, (moved, augmented, rotation) in cases.items():
        expected = rotation @ _as_matrix(moved) @ rotation.T
        np.testing.assert_allclose(_as_matrix(augmented), expected, atol=1e-9, err_msg=name)
    # a fibre along the columns (x) of a stripe, rotated by 90 degrees, runs along the rows (y)
    stripe = torch.zeros(1, 6, 5, 5)
    stripe[0, 0], stripe[0, 1], stripe[0, 2] = 1.7, 0.3, 0.3
    rotated = tensor_training.flip_tensor(tensor_training.transpose_tensor(stripe), 1).transpose(-1, -2).flip(-2)
    assert float(rotated[0, 1].min()) == pytest.approx(1.7) and float(rotated[0, 0].max()) == pytest.approx(0.3)


def test_frame_rotations_are_rotations_and_rotate_tensors():
    generator = torch.Generator().manual_seed(0)
    rotations = tensor_training.random_rotations(64, 15.0, generator)
    np.testing.assert_allclose((rotations @ rotations.transpose(1, 2)).numpy(), np.broadcast_to(np.eye(3), (64, 3, 3)),
                               atol=1e-5)
    np.testing.assert_allclose(torch.linalg.det(rotations).numpy(), 1.0, atol=1e-5)
    angles = np.degrees(np.arccos(np.clip((np.trace(rotations.numpy(), axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert angles.max() <= 15.0 + 1e-3 and angles.max() > 10.0
    tensors = torch.from_numpy(matrix_to_tensor6(_random_tensors((64,), seed=1)).astype(np.float32))[:, :, None]
    rotated = tensor_training.rotate_tensor(tensors, rotations)[:, :, 0]
    expected = rotations.numpy() @ tensor6_to_matrix(tensors[:, :, 0].numpy()) @ rotations.numpy().transpose(0, 2, 1)
    np.testing.assert_allclose(tensor6_to_matrix(rotated.numpy()), expected, atol=1e-6)


def test_simulated_inputs_measure_the_adcs_and_carry_the_asked_noise():
    generator = torch.Generator().manual_seed(0)
    tensor = torch.zeros(2, 3, 3, 16, 16)  # the measured ADCs of 3 slices
    tensor[:, :, 0], tensor[:, :, 1], tensor[:, :, 2] = 1.7, 0.4, 0.9  # units (1e-3 mm^2/s)
    b0 = torch.full((2, 3, 16, 16), 250.0)
    median = torch.tensor([250.0, 250.0])
    exact = tensor_training.simulated_inputs(b0, tensor, median, torch.tensor([800.0, 2500.0]), torch.full((2,), 1e7),
                                         generator)
    np.testing.assert_allclose(exact[:, :9].reshape(2, 3, 3, 16, 16).numpy(),
                               np.broadcast_to(np.array([1.7, 0.4, 0.9])[None, None, :, None, None], (2, 3, 3, 16, 16)),
                               rtol=1e-3)
    np.testing.assert_allclose(exact[:, 9:].numpy(), 1.0, rtol=1e-5)
    noisy = tensor_training.simulated_inputs(b0, tensor, median, torch.tensor([1000.0, 1000.0]), torch.full((2,), 25.0),
                                         generator)
    assert float(noisy[:, 9:].std()) == pytest.approx(1 / 25, rel=0.15)  # sigma = median b=0 / SNR


def test_training_draws_a_triple_as_synthesis_reads_it_on_a_tilted_slab():
    """A skewed triple near the scanner's axes measured on a slab tilted 20 degrees: the ADC and direction
    channels synthesis gives the network, and its working frame, are what training computes for the same
    triple from the tensor in the image frame (subject_volume's), so the network meets what it learned."""
    tilt = rotation_matrix((20, 0, 0))
    affine = np.eye(4)
    affine[:3, :3] = tilt.T @ np.diag([1.7, 1.7, 2.0])  # image axes: the columns of tilt.T, 20 degrees off
    measured = rotation_matrix((3, -4, 2))
    measured[2] = np.cos(np.radians(25)) * measured[2] + np.sin(np.radians(25)) * measured[0]  # z skewed 25 deg
    measured[2] /= np.linalg.norm(measured[2])
    shape = (5, 4, 3)
    tensor = _random_tensors(shape, prolate=True)  # RAS, mm^2/s
    b, s0 = 1000.0, 300.0
    weighted = s0 * np.exp(-b * np.einsum("id,...de,ie->...i", measured, tensor, measured))
    signals = np.concatenate([np.full(shape + (1,), s0), weighted], axis=-1)
    seen = {}

    def predict(key, inputs, slice_indices):
        seen["inputs"] = inputs
        return np.zeros((len(slice_indices), 8) + inputs.shape[2:], np.float32)

    manifest = Manifest({"format": FORMAT, "format_version": FORMAT_VERSION, "b_value": 1000.0, "grid": None,
                         "intensity": {}, "architecture": {"kind": "tensor-unet", "heads": tensor_unet.SPLIT},
                         "networks": [{"name": tensor_unet.NETWORK, "file": "t.safetensors", "sha256": "0" * 64}],
                         "directions": [{"index": 1, "gradient_ras": [1.0, 0.0, 0.0]}]})
    grid_signals = GridSignals(signals, np.full(shape, s0), np.arange(shape[2]), b, measured, affine)
    tensor_unet.synthesize(predict, grid_signals, manifest, NullReporter())
    frame = tensor_unet.image_frame(affine)
    np.testing.assert_allclose(frame, tilt, atol=1e-12)
    directions, working, solve = tensor_training.triple_frames(measured @ frame.T)
    assert not np.allclose(directions, np.eye(3), atol=0.1)  # the tilt and the skew: not the straight triple
    in_image = frame @ tensor @ frame.T  # subject_volume's tensor
    adc = solve @ np.einsum("id,...de,ie->...i", directions, in_image, directions)[..., None]
    np.testing.assert_allclose(seen["inputs"][:, 3:6], np.transpose(adc[..., 0], (2, 3, 1, 0)) / 1e-3, rtol=1e-4)
    np.testing.assert_allclose(seen["inputs"][:, 12:], np.broadcast_to(
        directions.reshape(9, 1, 1).astype(np.float32), seen["inputs"][:, 12:].shape), atol=1e-6)
    np.testing.assert_allclose(tensor_unet.working_frame(measured, affine)[0] @ frame.T, working, atol=1e-12)


def test_md_uncertainty_is_the_spread_of_the_assembled_md_over_the_sign_patterns():
    """A skewed triple (z 30 degrees toward y): each sign pattern's tensor, assembled as synthesis does
    (generated log-attenuations projected onto the measured ADCs), has its own MD; the map is their
    probability-weighted SD over the network's MD, and the synthesized tensor, assembled, has their
    probability-weighted mean MD (the signs are a guess: the expected tensor's MD)."""
    from DTISynthLib.fit.tensor_fit import design_matrix
    from DTISynthLib.fit.tensor_fit import assembly_matrices

    t = np.radians(30)
    measured = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, np.sin(t), np.cos(t)]])
    shape, b, s0 = (4, 4, 3), 1000.0, 300.0
    adc = np.array([1.4e-3, 0.6e-3, 0.8e-3])
    signals = np.concatenate([np.full(shape + (1,), s0), np.broadcast_to(s0 * np.exp(-b * adc), shape + (3,))], -1)
    logits = np.array([0.3, -0.2, 0.1, -0.25])  # tanh outputs: probabilities spread over the patterns
    output_value = np.r_[0.2, 0.0, 0.0, 0.0, logits].astype(np.float32)

    def predict(key, inputs, slice_indices):
        return np.broadcast_to(output_value[None, :, None, None],
                               (len(slice_indices), 8) + inputs.shape[2:]).copy()

    table = SIEMENS_6_RAS
    manifest = Manifest({"format": FORMAT, "format_version": FORMAT_VERSION, "b_value": 1000.0, "grid": None,
                         "intensity": {}, "architecture": {"kind": "tensor-unet", "heads": tensor_unet.SPLIT,
                                                           "sign_temperature": 1.3},
                         "networks": [{"name": tensor_unet.NETWORK, "file": "t.safetensors", "sha256": "0" * 64}],
                         "directions": [{"index": k + 1, "gradient_ras": g.tolist()} for k, g in enumerate(table)]})
    affine = np.diag([1.7, 1.7, 2.0, 1.0])
    grid_signals = GridSignals(signals, np.full(shape, s0), np.arange(shape[2]), b, measured, affine)
    synthetic, maps = tensor_unet.synthesize(predict, grid_signals, manifest, NullReporter())
    # brute force: the four patterns' tensors (W -> RAS), each assembled, their MDs
    working, order = tensor_unet.working_frame(measured, affine)
    units = torch.from_numpy((grid_signals.adcs()[0, 0, 0] @ np.linalg.inv(np.square(measured @ working.T)).T)
                             [order].astype(np.float32) / 1e-3).view(1, 3, 1, 1)
    units = units.clamp(0, tensor_unet.ADC_MAX)
    diagonal, excess, raw = tensor_unet.split_outputs(torch.from_numpy(output_value).view(1, 8, 1, 1), units)
    diagonal, excess = diagonal.view(3).double().numpy(), excess.view(3).double().numpy()
    probabilities = tensor_unet.pattern_probabilities(raw.view(1, 4).double().numpy(), 1.3)[0]
    magnitudes = np.sqrt([excess[i] * excess[j] for i, j in tensor_unet._PAIRS])
    from_generated, from_measured = assembly_matrices(np.full(3, b), measured, np.full(6, 1000.0), table)
    design = design_matrix(np.full(6, 1000.0), table)[:, :6]
    md = []
    for signs in tensor_unet.PATTERNS:
        in_w = tensor6_to_matrix(np.r_[diagonal, signs * magnitudes]) * 1e-3
        ras = matrix_to_tensor6(working.T @ in_w @ working)
        assembled = design @ ras @ from_generated.T + (-b * adc) @ from_measured.T
        md.append(assembled[:3].mean())
    md = np.array(md)
    assert np.ptp(md) > 0.01 * md.mean()  # the signs move MD on this triple
    mean = (probabilities * md).sum()
    expected = np.sqrt((probabilities * (md - mean) ** 2).sum()) / (diagonal.mean() * 1e-3)
    np.testing.assert_allclose(maps["md_uncertainty"], expected, rtol=1e-4)
    # the synthesized tensor, assembled, has the patterns' expected MD, not the most probable one's
    synthesized = np.linalg.solve(design, np.log(synthetic[0, 0, 0].astype(np.float64) / s0))
    assembled = design @ synthesized @ from_generated.T + (-b * adc) @ from_measured.T
    assert abs(md[probabilities.argmax()] - mean) > 0.003 * mean
    np.testing.assert_allclose(assembled[:3].mean(), mean, rtol=1e-4)


def test_random_triples_are_rotated_up_to_the_limit_and_skewed_within_the_conditioning_limit():
    directions, working, solve = tensor_training.measured_triples(400, torch.Generator().manual_seed(1))
    d = directions.double().numpy()
    norms = np.linalg.norm(d, axis=2)
    np.testing.assert_allclose(norms, 1.0, atol=1e-6)
    from DTISynthLib.core.gradient_schemes import direction_condition
    conditions = np.array([direction_condition(m) for m in d])
    assert conditions.max() <= 3.0 and (conditions > 1.2).mean() > 0.2  # a share skewed
    orthogonal = conditions < 1 + 1e-5
    assert 0.3 < orthogonal.mean() < 0.7
    angles = np.degrees(np.arccos(np.clip(np.abs(np.einsum("nkk->nk", d)), 0, 1)))
    assert angles[orthogonal].max() <= 45.0 + 1e-3 and np.median(angles[orthogonal]) < 12
    w = working.double().numpy()
    np.testing.assert_allclose(w @ np.swapaxes(w, 1, 2), np.broadcast_to(np.eye(3), w.shape), atol=1e-5)
    straight = tensor_training.measured_triples(3, torch.Generator(), randomise=False)
    for m in straight:
        np.testing.assert_array_equal(m.numpy(), np.broadcast_to(np.eye(3), (3, 3, 3)))


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
    from DTISynthLib.core.tensor_layout import smallest_eigenvalue

    off = np.random.default_rng(0).uniform(-1.2, 1.2, (5000, 3))
    off[:10], off[10:20, 1:] = 0.0, 0.0  # all zero; one pair only
    zero_diagonal = np.concatenate([np.zeros_like(off), off], -1)  # the correlations shrink_off_diagonals bounds
    np.testing.assert_allclose(smallest_eigenvalue(zero_diagonal), np.linalg.eigvalsh(tensor6_to_matrix(zero_diagonal))[:, 0],
                               atol=1e-12)
    general = np.random.default_rng(1).normal(size=(5000, 6))
    np.testing.assert_allclose(smallest_eigenvalue(general), np.linalg.eigvalsh(tensor6_to_matrix(general))[:, 0],
                               atol=1e-12)


def test_shrink_toward_measures_only_doubtful_tensors_and_gives_the_full_computation_s_bits():
    """shrink_toward skips the Cholesky step where a tensor is clearly positive; every tensor, positive,
    borderline or not, comes out as the step applied to all of them gives it."""
    from DTISynthLib.core.tensor_layout import shrink_toward, smallest_eigenvalue

    def everywhere(tensor, anchor):  # the step for every tensor (the function before it skipped any)
        inverse = np.linalg.inv(np.linalg.cholesky(tensor6_to_matrix(anchor)))
        m = inverse @ tensor6_to_matrix(tensor - anchor) @ np.swapaxes(inverse, -1, -2)
        smallest = smallest_eigenvalue(matrix_to_tensor6(m))
        t = np.where(smallest < -1.0, -1.0 / smallest, 1.0)
        return anchor + t[:, None] * (tensor - anchor)

    rng = np.random.default_rng(3)
    anchor = np.concatenate([rng.uniform(0.3, 2.0, (6000, 3)), np.zeros((6000, 3))], 1) * 1e-3
    tensor = anchor + rng.normal(0.0, 0.6e-3, (6000, 6))
    values = smallest_eigenvalue(tensor)
    tensor[:500, :3] -= values[:500, None]  # borderline: smallest eigenvalue 0, within rounding
    values = smallest_eigenvalue(tensor)
    assert (values < 0).sum() > 1000 and (values > 0).sum() > 1000 and (np.abs(values) < 1e-15).sum() >= 400
    np.testing.assert_array_equal(shrink_toward(tensor, anchor), everywhere(tensor, anchor))


def test_training_tensors_are_in_the_working_frame_of_a_flipped_grid():
    """A DTI stored with its first axis running right-to-left: D_W,01 = -Dxy (RAS)."""
    tensor = np.zeros((4, 4, 3, 6))
    tensor[...] = [1.2e-3, 0.6e-3, 0.5e-3, 0.3e-3, 0.1e-3, -0.05e-3]
    bvals, gradients = dti_6(1000.0)
    data = predict_dti(tensor, 300.0, bvals, gradients)
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    b0, fitted, mask, model_affine = dti_targets(DWI(data, affine, bvals, gradients, "<test>"))
    np.testing.assert_allclose(fitted, tensor, rtol=1e-4)  # the exactly determined fit, RAS
    volume, mask, median = tensor_training.subject_volume(b0, fitted, mask, model_affine)
    assert mask.all() and median == pytest.approx(300.0, rel=1e-5)
    np.testing.assert_allclose(volume[0, :, 0, 0], [300.0, 1.2, 0.6, 0.5, -0.3, -0.1, -0.05], rtol=1e-4)


def predict_dti(tensor, s0, bvals, gradients):
    from DTISynthLib.fit.tensor_fit import predict_signals

    return predict_signals(tensor, np.full(tensor.shape[:-1], s0), bvals, gradients).astype(np.float32)


def _train(cohort, out, epochs, resume=False, more=()):
    args = ["train", "--kind", "tensor-unet", "--data", str(cohort), "--out", str(out), "--ngf", "4", "--depth", "5",
            "--epochs", str(epochs), "--lr", "1e-3", "--batch-size", "4", "--validation-subjects", "sub-003", *more]
    return cli.main(args + (["--resume"] if resume else []))


def test_tensor_unet_training_refuses_an_intensity_it_ignores_and_a_depth_its_slices_cannot_hold(tmp_path, capsys):
    """It always works on signal / b=0 (the ADCs): a chosen --intensity paper was ignored without a word.
    And --depth 9 on 48 x 48 slices padded them to 512 x 512 (114 times the pixels)."""
    from DTISynthLib.generators.intensity import Intensity
    from DTISynthLib.service.requests import TrainingRequest
    from DTISynthLib.training.config import TrainConfig, TrainingRun

    cohort = tmp_path / "cohort"
    write_cohort(cohort, 2, "sampled", seed=5, grid=(48, 48, 8), noise=False)
    out = tmp_path / "m"
    run = TrainingRun(cohort, out, TrainConfig(ngf=4, depth=5), Intensity("paper"), intensity_chosen=True)
    with pytest.raises(InputError, match=r"--intensity: expected relative or left out with --kind tensor-unet \(it "
                                         r"always works on signal / b=0.*; found 'paper'"):
        tensor_training.train(run)
    tensor_training.refuse_other_kinds_options(TrainingRun(cohort, out, TrainConfig(), Intensity("relative"),
                                                           intensity_chosen=True))  # what it uses: accepted
    tensor_training.refuse_other_kinds_options(TrainingRun(cohort, out, TrainConfig(), Intensity()))  # left out
    capsys.readouterr()
    assert cli.main(["train", "--kind", "tensor-unet", "--data", str(cohort), "--out", str(out), "--depth", "5",
                     "--intensity", "paper", "--jsonl"]) == 2  # paper is the option's default for pix2pix: chosen here
    message = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["message"]
    assert message.startswith("--intensity: expected relative or left out with --kind tensor-unet"), message
    assert TrainingRequest(data=cohort, out=out).command_line().count("--intensity") == 0
    assert cli.main(["train", "--kind", "tensor-unet", "--data", str(cohort), "--out", str(out), "--depth", "9",
                     "--jsonl"]) == 2
    message = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["message"]
    assert message == ("--depth: expected at most 6 for 48 x 48 slices (the slices are padded to a multiple of "
                       "2**depth, and 2**depth must stay below twice their larger side; or give --grid); found 9: "
                       "512 x 512 slices, 114 times the pixels"), message
    # a --grid its down-samplings do not divide stopped with a traceback inside the network (exit 1)
    assert cli.main(["train", "--kind", "tensor-unet", "--data", str(cohort), "--out", str(out), "--depth", "5",
                     "--grid", "48x48", "--jsonl"]) == 2
    message = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["message"]
    assert message == "--grid: expected a grid divisible by 2**depth = 32; found 48 x 48", message
    assert not out.exists()


def _weights(folder):
    from safetensors.numpy import load_file

    return load_file(str(folder / "tensor.safetensors"))


def test_the_tensor_kind_trains_resumes_and_synthesizes_through_the_jobs(tmp_path):
    cohort = tmp_path / "cohort"
    write_cohort(cohort, 3, "sampled", seed=5, grid=(32, 32, 19), noise=False)
    models = tmp_path / "models"
    assert _train(cohort, models, 5) == 0
    manifest = read_manifest(models)
    assert manifest.data["architecture"]["kind"] == "tensor-unet" and manifest.data["architecture"]["parameters"] > 1000
    assert manifest.data["assembly"] == "physics" and manifest.data["b_range"] == [500.0, 3000.0]
    parts = {s["subject"]: s["part"] for s in manifest.data["training"]["subjects"]}
    assert parts == {"sub-001": "train", "sub-002": "train", "sub-003": "validation"}
    history = manifest.data["networks"][0]["history"]
    assert history[-1]["tensor"] < history[0]["tensor"]  # it learns
    assert np.isfinite(manifest.data["networks"][0]["validation"]["val_fa"])
    # stopped after 3 epochs and resumed to 5: the same weights as the uninterrupted run. The first part's
    # loader process had drawn ahead; the checkpoint keeps each stream where the last trained step left it.
    resumed = tmp_path / "resumed"
    assert _train(cohort, resumed, 3) == 0 and _train(cohort, resumed, 5, resume=True, more=["--workers", "0"]) == 0
    for name, value in _weights(models).items():
        np.testing.assert_array_equal(_weights(resumed)[name], value, err_msg=name)
    noisy = tmp_path / "noisy"
    write_cohort(noisy, 1, "sampled", seed=6, grid=(32, 32, 19))
    dwi3 = noisy / "sub-001" / "dwi" / "sub-001_acq-dwi3_dwi.nii.gz"
    assert cli.main(["synthesize", "--dwi", str(dwi3), "--models", str(models), "--out",
                     str(tmp_path / "synthetic"), "--precision", "fp32"]) == 0
    synthetic = load_dwi(tmp_path / "synthetic" / "synthetic_dti.nii.gz")
    np.testing.assert_allclose(synthetic.gradients[1:], SIEMENS_6_RAS, atol=1e-9)
    # magnitudes and sign patterns, the model chosen on the validation subject, the confidence calibrated on it
    architecture = manifest.data["architecture"]
    assert architecture["heads"] == tensor_unet.SPLIT and architecture["generator"]["out_channels"] == 8
    assert architecture["sign_temperature"] in tensor_training.TEMPERATURES
    assert set(architecture["v1_confidence"]["brier_by_temperature"]) == {str(t) for t in tensor_training.TEMPERATURES}
    selection = manifest.data["training"]["selection"]
    scores = [row["val_score"] for row in history]
    assert selection["best_epoch"] == 1 + int(np.argmin(scores))
    assert manifest.data["networks"][0]["validation"]["val_score"] == pytest.approx(min(scores))
    confidence, _ = load_volume(tmp_path / "synthetic" / "maps" / "v1_confidence.nii.gz")
    mask, _ = load_volume(tmp_path / "synthetic" / "maps" / "mask.nii.gz")
    assert confidence.shape == synthetic.data.shape[:3] and (confidence >= 0).all() and (confidence <= 1 + 1e-6).all()
    assert (confidence[mask == 0] == 0).all() and confidence[mask > 0].max() > 0
    report = json.loads((tmp_path / "synthetic" / "synthesis.json").read_text())
    assert "within 20 degrees" in report["maps"]["maps/v1_confidence"] and report["v1_confidence_angle_degrees"] == 20.0
    # evaluate against the acquired DTI: the calibration table and its figure
    dti6 = noisy / "sub-001" / "dwi" / "sub-001_acq-dti6_dwi.nii.gz"
    assert cli.main(["evaluate", "--original", str(dti6), "--synthetic", str(tmp_path / "synthetic"),
                     "--out", str(tmp_path / "evaluation"), "--realism-epochs", "0"]) == 0
    rows = (tmp_path / "evaluation" / "v1_calibration.csv").read_text().splitlines()
    assert rows[0].startswith("subject,low,high,voxels,wm_share") and len(rows) == 1 + 7
    assert (tmp_path / "evaluation" / "figures" / "v1_calibration.png").stat().st_size > 5000
    summary = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())["v1_calibration"]["summary"]
    assert summary["sub-001"]["wm_voxels"] == sum(int(r.split(",")[3]) for r in rows[1:])
    assert "Orientation confidence" in (tmp_path / "evaluation" / "report.html").read_text()
    brain = synthetic.data[..., 0] > 0.3 * synthetic.data[..., 0].max()
    assert (synthetic.data[brain][:, 1:] > 0).all() and (synthetic.data[brain][:, 1:] <= 1.0001 * synthetic.data[brain][:, :1]).all()


BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def test_loader_processes_draw_the_batches_of_the_training_process_so_the_weights_are_the_same(tmp_path):
    """--workers 0 draws in the training process; 1 (the default) and 2 (two streams: --accumulate 2)
    draw in loader processes while the network trains: the same batches, so the same bytes."""
    cohort = tmp_path / "cohort"
    write_cohort(cohort, 3, "sampled", seed=5, grid=(32, 32, 19), noise=False)
    runs = {"0": ["--workers", "0"], "1": [], "2": ["--workers", "2"], "accumulate 2, here": ["--workers", "0"]}
    for name, options in runs.items():
        accumulate = ["--accumulate", "2"] if name in ("2", "accumulate 2, here") else []
        assert _train(cohort, tmp_path / name, 2, more=[*options, *accumulate]) == 0
    same = lambda a, b: a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)  # noqa: E731
    weights = {name: _weights(tmp_path / name) for name in runs}
    assert same(weights["1"], weights["0"]) and same(weights["2"], weights["accumulate 2, here"])
    assert not same(weights["2"], weights["0"])  # other steps: the comparison can tell runs apart
    assert read_manifest(tmp_path / "1").data["training"]["config"]["loader_workers"] is None


def _last_parameters(folder):
    """The network's parameters (not its batch-norm statistics) at the last epoch's checkpoint."""
    from safetensors.numpy import load_file

    tensors = load_file(str(folder / "checkpoints" / tensor_unet.NETWORK / "last.safetensors"))
    return {k[2:]: v for k, v in tensors.items() if k.startswith("G.") and not k.endswith(BUFFERS)}


def test_two_processes_under_torchrun_make_the_update_of_one_process_with_the_same_step(tmp_path):
    """README's `torchrun --nproc_per_node 2 -m DTISynthLib train`: 2 processes x 1 micro-batch of 2 slabs
    against 1 process x 2 micro-batches (--accumulate 2). The same slabs, the loss normalised over the whole
    step and DDP's average give the same parameters; rank 0 alone validates, decides and writes."""
    import os
    import subprocess
    import sys

    cohort = tmp_path / "cohort"
    write_cohort(cohort, 3, "sampled", seed=5, grid=(32, 32, 19), noise=False)
    train = ["-m", "DTISynthLib", "train", "--kind", "tensor-unet", "--data", str(cohort), "--ngf", "4", "--depth", "5",
             "--epochs", "2", "--lr", "1e-3", "--batch-size", "2", "--validation-subjects", "sub-003", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")  # one thread: the same summation order in both runs
    single = subprocess.run([sys.executable, *train, "--out", str(tmp_path / "single"), "--accumulate", "2"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          *train, "--out", str(tmp_path / "ddp")], env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a, b = _last_parameters(tmp_path / "single"), _last_parameters(tmp_path / "ddp")
    torch.manual_seed(0)  # the run's initial weights: --seed 0
    initial = {k: v.detach().numpy() for k, v in tensor_unet_network().named_parameters()}
    assert a.keys() == b.keys() == initial.keys()
    moved = max(float(np.abs(a[n] - initial[n]).max()) for n in a)
    differs = max(float(np.abs(a[n] - b[n]).max()) for n in a)
    assert moved > 1e-3  # training changed the weights, so agreement means something
    assert differs < 1e-3 * moved, (differs, moved)
    one, two = read_manifest(tmp_path / "single").data, read_manifest(tmp_path / "ddp").data
    assert (one["training"]["processes"], two["training"]["processes"]) == (1, 2)
    assert one["training"]["samples_per_epoch"] == two["training"]["samples_per_epoch"]
    for row_one, row_two in zip(one["networks"][0]["history"], two["networks"][0]["history"], strict=True):
        for term in ("tensor", "fa", "attenuation", "sign_ce"):  # the step's terms summed over the processes
            assert row_two[term] == pytest.approx(row_one[term], rel=1e-4), term
        assert np.isfinite(row_two["val_score"])
    files = lambda root: sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())  # noqa: E731
    assert files(tmp_path / "ddp") == files(tmp_path / "single")
    # stopped after epoch 1 and resumed under torchrun: every slot's stream came back through rank 0's checkpoint
    first = [*train[:train.index("--epochs") + 1], "1", *train[train.index("--epochs") + 2:]]
    for argv in (first, [*train, "--resume"]):
        run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                              *argv, "--out", str(tmp_path / "resumed")], env=env, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
    resumed = _last_parameters(tmp_path / "resumed")
    assert max(float(np.abs(resumed[n] - b[n]).max()) for n in b) == 0.0
    # a step split into another number of streams cannot continue that run
    refused = subprocess.run([sys.executable, *train, "--epochs", "3", "--resume", "--out", str(tmp_path / "resumed")],
                             env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--accumulate x processes = 2" in refused.stderr + refused.stdout


def tensor_unet_network(ngf=4, depth=5):
    from DTISynthLib.generators.networks import UNetGenerator, init_weights

    return init_weights(UNetGenerator(tensor_unet.INPUT_CHANNELS, tensor_unet.HEADS[tensor_unet.SPLIT], ngf, depth,
                                      dropout=False))


def test_bf16_autocast_trains_the_tensor_kind_on_the_cpu(tmp_path):
    cohort = tmp_path / "cohort"
    write_cohort(cohort, 3, "sampled", seed=5, grid=(32, 32, 19), noise=False)
    assert _train(cohort, tmp_path / "fp32", 2) == 0
    assert cli.main(["train", "--kind", "tensor-unet", "--data", str(cohort), "--out", str(tmp_path / "bf16"), "--ngf",
                     "4", "--depth", "5", "--epochs", "2", "--lr", "1e-3", "--batch-size", "4",
                     "--validation-subjects", "sub-003", "--amp", "bf16", "--channels-last"]) == 0
    a, b = _last_parameters(tmp_path / "fp32"), _last_parameters(tmp_path / "bf16")
    assert max(float(np.abs(a[n] - b[n]).max()) for n in a) > 1e-3  # bf16 computed the forward passes
    manifest = read_manifest(tmp_path / "bf16").data
    assert manifest["training"]["config"]["amp"] == "bf16" and manifest["training"]["config"]["channels_last"]
    history, reference = manifest["networks"][0]["history"], read_manifest(tmp_path / "fp32").data["networks"][0]["history"]
    assert history[-1]["tensor"] < history[0]["tensor"]
    for row, row_fp32 in zip(history, reference, strict=True):  # measured: within 2.4 %
        for term in ("tensor", "fa", "attenuation", "sign_ce"):
            assert row[term] == pytest.approx(row_fp32[term], rel=0.05), term


def test_training_stops_for_no_progress_only_once_the_rate_decays(tmp_path, monkeypatch):
    """A validation score that only gets worse: the constant-rate phase (3 epochs) runs whole, and
    training stops PATIENCE (2) epochs into the decay, not 2 epochs after the best (epoch 1)."""
    cohort = tmp_path / "cohort"
    write_cohort(cohort, 3, "sampled", seed=5, grid=(32, 32, 19), noise=False)
    scores = iter(range(100))

    def worsening(network, batches, subjects, design, heads, collect=False):
        row = {"val_score": float(next(scores))}
        return (row, None) if collect else row

    monkeypatch.setattr(tensor_training, "_validate", worsening)
    monkeypatch.setattr(tensor_training, "PATIENCE", 2)
    args = ["train", "--kind", "tensor-unet", "--data", str(cohort), "--out", str(tmp_path / "m"), "--ngf", "4",
            "--depth", "5", "--epochs", "3", "--decay-epochs", "4", "--batch-size", "4", "--validation-subjects", "sub-003"]
    assert cli.main(args) == 0
    manifest = read_manifest(tmp_path / "m")
    selection = manifest.data["training"]["selection"]
    assert len(manifest.data["networks"][0]["history"]) == 5 and selection["stopped_early_at"] == 5
    assert selection["best_epoch"] == 1 and selection["patience_from_epoch"] == 4


# ------------------------------------------------------------ magnitudes and sign patterns (SPLIT heads)

def _split_batch(seed=0, n=2, size=6):
    generator = torch.Generator().manual_seed(seed)
    output = torch.rand(n, tensor_unet.HEADS[tensor_unet.SPLIT], size, size, generator=generator) * 2 - 1
    adc = torch.rand(n, 3, size, size, generator=generator) + 0.3
    inputs = torch.cat([torch.zeros(n, 3, size, size), adc, torch.zeros(n, 6, size, size)], 1)
    tensor = torch.from_numpy(matrix_to_tensor6(_random_tensors((n, size, size), seed)) / 1e-3).float().permute(0, 3, 1, 2)
    design = torch.from_numpy(tensor_training.design_matrix_per_unit_b().astype(np.float32))
    return output, inputs, tensor.contiguous(), torch.ones(n, size, size, dtype=torch.bool), torch.full((n,), 1000.0), design


def test_the_regression_terms_do_not_depend_on_the_targets_signs():
    """Flipping the signs of the target's off-diagonal terms (any pattern) leaves the magnitude, FA and
    attenuation terms unchanged: nothing pulls an uncertain sign's magnitude toward zero. Only the
    pattern cross-entropy sees the signs."""
    output, inputs, target, mask, b, design = _split_batch()
    _, reference = tensor_training.loss_terms(output, inputs, target, mask, b, design, tensor_unet.SPLIT)
    for pattern in tensor_unet.PATTERNS[1:]:
        flipped = target.clone()
        flipped[:, 3:] *= torch.from_numpy(pattern.astype(np.float32)).view(1, 3, 1, 1)
        _, terms = tensor_training.loss_terms(output, inputs, flipped, mask, b, design, tensor_unet.SPLIT)
        for key in ("tensor", "fa"):
            assert terms[key] == pytest.approx(reference[key], rel=1e-6), key
        assert terms["sign_ce"] != pytest.approx(reference["sign_ce"], rel=1e-3)
    # the signed heads, by contrast, are pulled by the signs
    _, signed = tensor_training.loss_terms(output[:, :6], inputs, target, mask, b, design)
    flipped = target.clone()
    flipped[:, 3:] *= torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1)
    _, signed_flipped = tensor_training.loss_terms(output[:, :6], inputs, flipped, mask, b, design)
    assert signed["tensor"] != pytest.approx(signed_flipped["tensor"], rel=1e-3)


def test_the_pattern_loss_rewards_the_true_pattern_and_shares_it_among_equivalent_ones():
    output, inputs, target, mask, b, design = _split_batch(1)
    target = target.clone()
    target[:, 3:] *= torch.where(target[:, 3:].prod(1, keepdim=True) < 0, -1.0, 1.0)  # prolate signs: product +1
    true_index = torch.from_numpy(np.array([np.flatnonzero((tensor_unet.PATTERNS == np.sign(t)).all(1))[0]
                                            for t in target[:, 3:].permute(0, 2, 3, 1).reshape(-1, 3).numpy()]))
    true_index = true_index.view(target.shape[0], *target.shape[2:])
    losses = {}
    for name, favoured in (("true", true_index), ("wrong", 3 - true_index)):  # 3 - p: two signs flipped
        out = output.clone()
        out[:, 4:] = torch.nn.functional.one_hot(favoured, 4).permute(0, 3, 1, 2).float() * 0.9 - 0.45
        losses[name] = tensor_training.loss_terms(out, inputs, target, mask, b, design, tensor_unet.SPLIT)[1]["sign_ce"]
    assert losses["true"] < losses["wrong"] - 1.0
    # a tensor without off-diagonal terms: every pattern is the same tensor, the soft target is uniform
    flat = target.clone()
    flat[:, 3:] = 0
    uniform = output.clone()
    uniform[:, 4:] = 0
    ce = tensor_training.loss_terms(uniform, inputs, flat, mask, b, design, tensor_unet.SPLIT)[1]["sign_ce"]
    assert ce == pytest.approx(np.log(4), rel=1e-5)


def test_v1_confidence_sums_the_patterns_that_agree_on_the_principal_direction():
    """Prolate tensors of excess e (D_ii - l_perp): each pattern's V1 is its signs times sqrt(e), the
    eigenvector numpy finds; the confidence sums the probability of the patterns within 20 degrees."""
    excess = np.array([[0.6, 0.6, 0.01], [0.6, 0.6, 0.01], [1.4, 0.0, 0.0], [0.0, 0.0, 0.0]])
    probabilities = np.zeros((4, 4))
    probabilities[0, 0] = 1.0  # certain
    probabilities[1, [0, 3]] = 0.5  # v_y = +|v_y| or -|v_y|: V1 along (1, 1, 0) or (1, -1, 0), 90 degrees apart
    probabilities[2:] = 1 / 4  # undecided, but V1 is along x whatever the signs; an isotropic tensor has one V1
    np.testing.assert_allclose(tensor_unet.v1_confidence(excess, probabilities), [1.0, 0.5, 1.0, 1.0], atol=1e-12)
    rng = np.random.default_rng(0)
    e = rng.uniform(0, 1, (50, 3))
    magnitudes = np.sqrt(e[:, [0, 0, 1]] * e[:, [1, 2, 2]])
    for p, axes in enumerate(tensor_unet.PATTERN_AXES):
        tensors = np.concatenate([0.3 + e, tensor_unet.PATTERNS[p] * magnitudes], -1)
        expected = eigen_decompose(tensors)[1]
        found = tensor_unet.pattern_vectors(e)[:, p]
        cosine = np.abs((expected * found).sum(-1)) / np.linalg.norm(found, axis=1)
        np.testing.assert_allclose(cosine, 1.0, atol=1e-9)


def test_the_temperature_makes_an_overconfident_network_honest():
    """Logits that always favour pattern 0 while the truth is pattern 0 or its mirror (x flipped, V1 70
    degrees away) half the time each: the calibrated temperature spreads the probability (confidence
    near 0.5, where it was near 1)."""
    rng = np.random.default_rng(2)
    n = 400
    excess = np.tile([0.4, 0.4, 0.4], (n, 1))
    logits = np.tile([3.0, 0, 0, 0], (n, 1))
    mirrored = rng.random(n) < 0.5
    assert (tensor_unet.PATTERNS[3] == [-1, -1, 1]).all()  # x flipped: D_xy and D_xz change sign
    signs = np.where(mirrored[:, None], tensor_unet.PATTERNS[3], tensor_unet.PATTERNS[0])
    target = np.concatenate([0.3 + excess, signs * 0.4], -1)
    temperature, brier = tensor_training.calibrate_temperature(excess, logits, target)
    assert temperature > 1.0 and brier[temperature] < brier[1.0]
    confidence = tensor_unet.v1_confidence(excess, tensor_unet.pattern_probabilities(logits, temperature))
    assert abs(confidence.mean() - 0.5) < abs(tensor_unet.v1_confidence(
        excess, tensor_unet.pattern_probabilities(logits, 1.0)).mean() - 0.5)


def test_batches_are_half_real_and_every_real_subject_is_drawn_alike():
    """Two sources (phantom, real): each batch holds exactly as many slabs of each; a real subject of ten
    series is drawn as often as one of a single series."""
    def subject(name, median):
        return (name, np.zeros((4, 7, 8, 8), np.float32), np.ones((4, 8, 8), bool), median, np.arange(4), 1000.0)

    subjects = [subject(f"sub-{i}", 1.0) for i in range(6)] + [subject("single", 2.0)] + \
        [subject(f"series-{i}", 3.0) for i in range(10)]
    groups = [("phantom", f"phantom/sub-{i}") for i in range(6)] + [("real", "real/a")] + [("real", "real/b")] * 10
    batches = tensor_training._Batches(subjects, None, torch.Generator().manual_seed(0), groups=groups)
    batches.batch = lambda picks, randomise: [p[2] for p in picks]
    drawn = [batches.draw(8) for _ in range(200)]
    assert all(sorted(d).count(1.0) == 4 for d in drawn)
    real = np.concatenate([[m for m in d if m > 1] for d in drawn])
    assert abs((real == 2.0).mean() - 0.5) < 0.06


def test_sources_and_subjects_come_from_the_data_folders(tmp_path):
    from DTISynthLib.training.data import SubjectPair, source_and_subject

    def pair(relative):
        return SubjectPair(relative.split("/")[-1].split("_")[0], tmp_path / relative, tmp_path / relative)

    assert source_and_subject(pair("phantom/sub-001/dwi/sub-001_acq-dwi3_dwi.nii.gz"), tmp_path) == \
        ("phantom", "phantom/sub-001")
    assert source_and_subject(pair("real/canon/tilted/scan_acq-dwi3_dwi.nii.gz"), tmp_path) == ("real", "real/canon")
    assert source_and_subject(pair("real/scan_acq-dwi3_dwi.nii.gz"), tmp_path) == ("real", "scan")
    assert source_and_subject(pair("scan_acq-dwi3_dwi.nii.gz"), tmp_path) == ("", "scan")


def test_batches_for_a_network_without_direction_channels_keep_its_inputs_and_its_triples():
    """Fine-tuning a 12-channel package (before direction channels): 12 input channels, and the orthogonal
    triples within 15 degrees it learned; a network with direction channels gets 21 and skewed triples."""
    volume = np.zeros((4, 7, 32, 32), np.float32)
    volume[:, 0], volume[:, 1:4] = 200.0, 0.8
    subject = ("s", volume, np.ones((4, 32, 32), bool), 200.0, np.arange(4), 1000.0)
    for direction_input, channels in ((False, 12), (True, 21)):
        batches = tensor_training._Batches([subject], None, torch.Generator().manual_seed(0),
                                           direction_input=direction_input)
        inputs, target, mask, b = batches.draw(4)
        assert inputs.shape[1] == channels
    directions, _, _ = tensor_training.measured_triples(300, torch.Generator().manual_seed(2), direction_input=False)
    d = directions.double().numpy()
    np.testing.assert_allclose(d @ np.swapaxes(d, 1, 2), np.broadcast_to(np.eye(3), d.shape), atol=1e-5)  # orthogonal
    angles = np.degrees(np.arccos(np.clip(np.einsum("nkk->nk", d), -1, 1)))
    assert angles.max() <= 15.0 + 1e-3 and angles.max() > 10.0


def test_init_from_fine_tunes_a_package_from_its_weights_and_records_its_parent(tmp_path, capsys):
    """`train --init-from PACKAGE`: the package's kind and architecture (no --kind, --ngf, --depth
    needed), its weights as the start (a vanishing learning rate keeps them, and its batch-norm running
    statistics are kept), fine-tuning's epochs and rate by default, the parent recorded and the input
    check fitted anew on the new data, the parent's accepted directions inherited."""
    from DTISynthLib.core.checksums import sha256_file
    from DTISynthLib.generators.package import write_manifest
    from DTISynthLib.service.requests import TrainingRequest
    from DTISynthLib.service.train import FINE_TUNING, parent_package, train_config

    cohort, site = tmp_path / "cohort", tmp_path / "site"
    write_cohort(cohort, 3, "sampled", seed=5, grid=(32, 32, 19), noise=False)
    write_cohort(site, 3, "sampled", seed=8, grid=(40, 40, 16), noise=False)  # another scanner: other voxels
    parent = tmp_path / "parent"
    assert _train(cohort, parent, 1) == 0
    limits = {"max_non_orthogonality_degrees": 25.0, "max_tilt_degrees": 20.0, "measured": "by hand"}
    write_manifest(parent, dict(read_manifest(parent).data, accepted_directions=limits))
    tuned = tmp_path / "tuned"
    assert cli.main(["train", "--init-from", str(parent), "--data", str(site), "--out", str(tuned), "--epochs", "1",
                     "--lr", "1e-12", "--batch-size", "4", "--validation-subjects", "sub-003"]) == 0
    for name, value in _weights(parent).items():  # batch-norm statistics included: fine-tuning keeps the parent's
        if not name.endswith("num_batches_tracked"):
            np.testing.assert_allclose(_weights(tuned)[name], value, rtol=1e-3, atol=1e-6, err_msg=name)
    manifest = read_manifest(tuned)
    assert manifest.kind == "tensor-unet" and manifest.architecture["generator"]["ngf"] == 4
    # the parent's model grid and voxel size (its network's spatial scale), not the site data's first scan's
    assert (manifest.grid, manifest.data["voxel_size_mm"]) == (read_manifest(parent).grid,
                                                               read_manifest(parent).data["voxel_size_mm"])
    assert manifest.data["training"]["parent"]["manifest_sha256"] == sha256_file(parent / "manifest.json")
    assert manifest.data["description"].endswith("Fine-tuned from parent.")
    # the parent's measured direction limits hold until the tuned package is measured itself
    assert {k: v for k, v in manifest.data["accepted_directions"].items() if k != "measured"} == \
        {"max_non_orthogonality_degrees": 25.0, "max_tilt_degrees": 20.0}
    assert manifest.data["accepted_directions"]["measured"] == f"inherited from the parent package {parent}: by hand"
    assert manifest.data["input_check"]["sha256"] != read_manifest(parent).data["input_check"]["sha256"]
    config = train_config(TrainingRequest(data=site, out=tuned, init_from=parent),
                          parent_package(TrainingRequest(data=site, out=tuned, init_from=parent)))
    assert (config.epochs, config.lr, config.ngf, config.depth) == (FINE_TUNING["epochs"], FINE_TUNING["lr"], 4, 5)
    # the parent's architecture is fixed; another kind's package is not a start
    capsys.readouterr()
    for extra, message in ((["--depth", "6"], "--depth: expected the --init-from package's own (5) or left out; found 6"),
                           (["--kind", "pix2pix-per-direction"], "--kind: expected the --init-from package's own "
                                                                 "(tensor-unet) or left out")):
        assert cli.main(["train", "--init-from", str(parent), "--data", str(site), "--out", str(tmp_path / "x"),
                         *extra, "--jsonl"]) == 2
        assert message in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["message"]
    assert not (tmp_path / "x").exists()


def test_a_package_without_direction_channels_widens_to_them_with_its_outputs_kept(tmp_path, capsys):
    """`train --init-from PACKAGE --add-direction-channels`: a shipped 12-input package loaded into a
    21-input network answers exactly as the parent, whatever the directions say (their first-layer
    weights start at zero); the option needs --init-from."""
    from DTISynthLib.generators.networks import UNetGenerator
    from DTISynthLib.generators.runner import load_generators

    from DTISynthLib.generators.package import SHIPPED_MODELS

    default = next(p for p in sorted(SHIPPED_MODELS.iterdir()) if (p / "manifest.json").exists()
                   and read_manifest(p).kind == tensor_unet.NAME and tensor_unet.heads_of(read_manifest(p)) ==
                   tensor_unet.SPLIT and read_manifest(p).architecture["generator"]["in_channels"] == 12)
    generator = read_manifest(default).architecture["generator"]
    widened = UNetGenerator(tensor_unet.INPUT_CHANNELS, generator["out_channels"], generator["ngf"],
                            generator["depth"], dropout=False)
    parent = tensor_training.load_parent(widened, default)
    assert parent["added_direction_channels"] == tensor_unet.DIRECTION_CHANNELS
    original = load_generators(default)[0][tensor_unet.NETWORK].float().eval()
    inputs = torch.rand(2, tensor_training.LEGACY_INPUT_CHANNELS, 64, 64)
    directions = torch.randn(2, tensor_unet.DIRECTION_CHANNELS, 1, 1).expand(-1, -1, 64, 64)
    with torch.no_grad():
        expected = original(inputs)
        found = widened.float().eval()(torch.cat([inputs, directions], 1))
    torch.testing.assert_close(found, expected, rtol=1e-5, atol=1e-5)
    assert float((widened.first.weight[:, tensor_training.LEGACY_INPUT_CHANNELS:] != 0).sum()) == 0
    assert cli.main(["train", "--add-direction-channels", "--data", str(tmp_path), "--out", str(tmp_path / "x"),
                     "--jsonl"]) == 2
    assert "--add-direction-channels: expected with --init-from" in \
        json.loads(capsys.readouterr().out.strip().splitlines()[-1])["message"]
    assert not (tmp_path / "x").exists()


def test_slab_inputs_hold_each_slice_with_its_neighbours_in_the_documented_channel_order():
    rng = np.random.default_rng(5)
    adc, b0 = rng.random((6, 3, 4, 5)).astype(np.float32), rng.random((6, 4, 5)).astype(np.float32)
    directions = np.arange(9.0)
    slices = np.array([0, 2, 5])  # both edges: the missing neighbour is the slice itself
    inputs = tensor_unet.slab_inputs(adc, b0, slices, directions)
    assert inputs.shape == (3, 21, 4, 5) and inputs.dtype == np.float32
    for i, z in enumerate(slices):
        below, above = max(z - 1, 0), min(z + 1, 5)
        for s, neighbour in enumerate((below, z, above)):
            for k in range(3):  # channel 3 s + k: slice s, axis k
                np.testing.assert_array_equal(inputs[i, 3 * s + k], adc[neighbour, k])
            np.testing.assert_array_equal(inputs[i, 9 + s], b0[neighbour])
        np.testing.assert_array_equal(inputs[i, 12:], np.broadcast_to(directions[:, None, None], (9, 4, 5)))
    assert tensor_unet.slab_inputs(adc, b0, slices).shape == (3, 12, 4, 5)  # packages without direction channels


def test_md_uncertainty_is_exactly_zero_where_the_triple_does_not_couple_the_signs_into_the_md():
    """synthesize leaves the map as allocated (zeros) for such triples instead of computing it: exact only
    because the computed map is +0.0 in every voxel."""
    rng = np.random.default_rng(3)
    diagonal, excess = rng.uniform(0.1, 2.0, (500, 3)), rng.uniform(0.1, 1.5, (500, 3))
    diagonal[:5] = 0.0  # no MD there
    probabilities = rng.dirichlet(np.ones(4), 500)
    zero = tensor_unet.md_uncertainty_map(diagonal, excess, probabilities, np.zeros(3))
    assert zero.tobytes() == np.zeros(500).tobytes()  # +0.0 everywhere, as np.zeros allocates
    assert np.all(tensor_unet.md_uncertainty_map(diagonal, excess, probabilities, np.array([0.0, 0.0, 0.3]))[5:] > 0)
