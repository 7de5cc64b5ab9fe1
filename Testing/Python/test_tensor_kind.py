"""The experimental tensor-consistent kind: its frames (an oblique measured frame, any gradient table)
and its training step through the real train and synthesize jobs."""

import numpy as np

from DTISynthLib import cli
from DTISynthLib.core.frames import rotation_matrix
from DTISynthLib.core.gradient_schemes import SIEMENS_6_RAS
from DTISynthLib.core.progress import NullReporter
from DTISynthLib.generators import tensor_unet
from DTISynthLib.generators.package import read_manifest
from DTISynthLib.generators.registry import GridSignals
from DTISynthLib.simulation.cohort import write_cohort


def _random_tensors(shape, seed=0):
    rng = np.random.default_rng(seed)
    evals = rng.uniform(0.2e-3, 1.8e-3, shape + (3,))
    frames = np.stack([rotation_matrix(a) for a in rng.uniform(-90, 90, (int(np.prod(shape)), 3))]).reshape(
        shape + (3, 3))
    return frames @ (evals[..., :, None] * np.swapaxes(frames, -1, -2))


def test_an_oblique_measured_frame_and_the_true_off_diagonals_give_the_true_signals_of_any_table():
    shape = (6, 5, 4)
    tensor = _random_tensors(shape)  # RAS, mm^2/s
    frame = rotation_matrix((12, -20, 25))  # the DWI's x, y, z along an oblique slab's axes (rows)
    b, s0 = 1300.0, 400.0
    measured = s0 * np.exp(-b * np.einsum("id,...de,ie->...i", frame, tensor, frame))
    signals = np.concatenate([np.full(shape + (1,), s0), measured], axis=-1).astype(np.float64)
    in_frame = frame @ tensor @ frame.T
    diagonal = np.diagonal(in_frame, axis1=-2, axis2=-1)
    r = np.stack([in_frame[..., i, j] / np.sqrt(diagonal[..., i] * diagonal[..., j]) for i, j in tensor_unet._PAIRS], -1)

    def predict(key, inputs, slice_indices):  # the network's tanh output that gives the true r
        assert key == tensor_unet.NETWORK and inputs.shape[1] == 9
        return np.transpose(r[:, :, slice_indices] / tensor_unet.MARGIN, (2, 3, 1, 0))

    table = np.random.default_rng(4).normal(size=(9, 3))
    table /= np.linalg.norm(table, axis=1, keepdims=True)  # any gradient table, not only Siemens'
    manifest = {"b_value": 1000.0, "directions": [{"index": k + 1, "gradient_ras": g.tolist()} for k, g in enumerate(table)]}
    slices = np.arange(shape[2])
    synthetic = tensor_unet.synthesize(predict, GridSignals(signals, np.full(shape, s0), slices, b, frame), manifest,
                                       NullReporter())
    expected = s0 * np.exp(-1000.0 * np.einsum("kd,...de,ke->...k", table, tensor, table))
    np.testing.assert_allclose(synthetic, expected, rtol=1e-5)
    # and without the off-diagonal terms the frame's diagonal alone is something else
    flat = tensor_unet.synthesize(lambda key, inputs, s: np.zeros((len(s), 3) + inputs.shape[2:]),
                                  GridSignals(signals, np.full(shape, s0), slices, b, frame), manifest, NullReporter())
    assert np.abs(flat / expected - 1).mean() > 0.05


def test_the_tensor_kind_trains_and_synthesizes_through_the_jobs(tmp_path):
    cohort = tmp_path / "cohort"
    write_cohort(cohort, 3, "sampled", seed=5, grid=(32, 32, 19))
    models = tmp_path / "models"
    assert cli.main(["train", "--kind", "tensor-unet", "--data", str(cohort), "--out", str(models), "--ngf", "4",
                     "--depth", "5", "--epochs", "6", "--lr", "1e-3", "--batch-size", "4",
                     "--validation-fraction", "0.34"]) == 0
    manifest = read_manifest(models)
    assert manifest["architecture"]["kind"] == "tensor-unet" and manifest["architecture"]["parameters"] > 1000
    assert manifest["intensity"]["mode"] == "relative" and len(manifest["training"]["subject_slices"]["train"]) == 2
    history = manifest["networks"][0]["history"]
    assert history[-1]["loss"] < history[0]["loss"]  # it learns
    assert np.isfinite(manifest["networks"][0]["validation"]["val_L1"])
    dwi3 = cohort / "sub-001" / "dwi" / "sub-001_acq-dwi3_dwi.nii.gz"
    dti6 = cohort / "sub-001" / "dwi" / "sub-001_acq-dti6_dwi.nii.gz"
    assert cli.main(["synthesize", "--dwi", str(dwi3), "--b0", str(dti6), "--models", str(models), "--out",
                     str(tmp_path / "synthetic"), "--precision", "fp32"]) == 0
    from DTISynthLib.io.files import load_dwi

    synthetic = load_dwi(tmp_path / "synthetic" / "synthetic_dti.nii.gz")
    np.testing.assert_allclose(synthetic.gradients[1:], SIEMENS_6_RAS, atol=1e-9)
    brain = synthetic.data[..., 0] > 0.3 * synthetic.data[..., 0].max()
    assert (synthetic.data[brain][:, 1:] > 0).all() and (synthetic.data[brain][:, 1:] <= 1.05 * synthetic.data[brain][:, :1]).all()
