"""The model packages' out-of-distribution check (realism/, synthesis/ and service/input_check.py): its
features, its safetensors file, its manifest entry, and `synthesize`'s warning: a phantom DWI like
the training inputs passes, a non-brain image and a sagittally sliced head warn."""

import json
import shutil

import numpy as np
import pytest

from DTISynthLib.core.dwi import DWI
from DTISynthLib.core.errors import InputError
from DTISynthLib.generators.package import (
    INPUT_CHECK_FILE,
    read_manifest,
    verify_package,
)
from DTISynthLib.realism.input_check import (
    CHANNELS,
    fit_input_check,
    input_features,
    load_input_check,
    save_input_check,
)
from DTISynthLib.simulation.cohort import draw_subject, simulate_subject


def _volumes(b):
    """A smooth 'head' (12 x 10 x 3): b=0 and x, y, z volumes at b (mono-exponential), its mask."""
    x, y, _ = np.meshgrid(np.linspace(-1, 1, 12), np.linspace(-1, 1, 10), np.arange(3), indexing="ij")
    b0 = 500 + 300 * x + 100 * y
    adc = np.stack([0.7e-3 + 0.2e-3 * x, 0.9e-3 + 0.1e-3 * y, 1.1e-3 + 0 * x], axis=-1)
    return b0, b0[..., None] * np.exp(-b * adc), np.full(3, float(b)), np.ones(b0.shape, bool), adc


def test_features_are_smoothed_adcs_and_b0_ratio_independent_of_b():
    b0, weighted, bvals, mask, adc = _volumes(1000)
    features = input_features(b0, weighted, bvals, mask)
    assert features.shape == (mask.sum(), 9 * len(CHANNELS)) and features.dtype == np.float32
    centre = features[:, 24:28]  # the voxel itself: offset (0, 0) is the fifth of nine, six channels each
    inside = np.zeros(mask.shape, bool)
    inside[1:-1, 1:-1, :] = True  # a 3 x 3 mean of a linear ramp is the ramp itself away from the edges
    np.testing.assert_allclose(centre[inside[mask]][:, 1:], adc[inside] * 1e3, rtol=1e-4)
    np.testing.assert_allclose(centre[inside[mask]][:, 0], (b0 / np.median(b0))[inside], rtol=1e-4)
    at_2000 = input_features(*_volumes(2000)[:4])
    np.testing.assert_allclose(at_2000, features, rtol=1e-4)  # ADCs, not attenuations: b drops out
    # the neighbourhood is in the slice: offset (+1, 0) of voxel (i, j) is voxel (i + 1, j) of the same slice
    index = {tuple(v): n for n, v in enumerate(np.argwhere(mask))}
    np.testing.assert_allclose(features[index[(4, 5, 1)], 42:48], features[index[(5, 5, 1)], 24:30], rtol=1e-6)
    texture = features[:, 28:30]
    assert np.all(texture >= 0) and texture[:, 1].max() > 0  # the ADC ramps vary over 7 x 7


def test_features_are_taken_over_axial_slices_whatever_plane_the_dwi_is_stored_in():
    from DTISynthLib.core.model_grid import reorder_axes
    from DTISynthLib.realism.input_check import dwi_input_features

    dwi = simulate_subject(draw_subject("sub-002", 3), "sampled", grid=(24, 24, 10)).dwi
    axial = dwi_input_features(dwi)
    data, affine = reorder_axes(dwi.data, dwi.affine, (1, 2, 0))
    sagittal = DWI(data, affine, dwi.bvals, dwi.gradients)
    assert axial.shape[0] > 100 and np.array_equal(dwi_input_features(sagittal), axial)


def test_the_check_round_trips_through_safetensors_and_refuses_a_wrong_file(tmp_path):
    rng = np.random.default_rng(0)
    features = [rng.uniform(0, 2, (600, 54)).astype(np.float32) for _ in range(2)]
    check = fit_input_check([features[:1]], features[1:], epochs=2)
    path = tmp_path / INPUT_CHECK_FILE
    save_input_check(path, check)
    loaded = load_input_check(path, check.reference_error, 2.0)
    assert loaded.ratio(features[1]) == pytest.approx(1.0, rel=1e-6)
    from safetensors.numpy import save_file

    save_file({"weights_0": np.zeros((54, 4), np.float32)}, str(tmp_path / "short.safetensors"))
    with pytest.raises(InputError, match="chaining 54 inputs"):
        load_input_check(tmp_path / "short.safetensors", 1.0, 2.0)
    (tmp_path / "junk.safetensors").write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(InputError, match="safetensors format"):
        load_input_check(tmp_path / "junk.safetensors", 1.0, 2.0)


def test_a_trained_package_carries_its_check(tiny_models):
    manifest = verify_package(tiny_models)
    entry = manifest.data["input_check"]
    assert entry["file"] == INPUT_CHECK_FILE and entry["reference_error"] > 0 and entry["warning_ratio"] > 1
    assert entry["training_subjects"] and entry["validation_subjects"]
    assert not set(entry["training_subjects"]) & set(entry["validation_subjects"])


def test_a_manifest_with_a_bad_check_entry_is_refused(tiny_models, tmp_path):
    package = tmp_path / "m"
    shutil.copytree(tiny_models, package)
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["input_check"]["warning_ratio"] = 0.5
    (package / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="warning_ratio > 1"):
        read_manifest(package)
    manifest["input_check"]["warning_ratio"] = 2.0
    (package / "manifest.json").write_text(json.dumps(manifest))
    (package / INPUT_CHECK_FILE).write_bytes(b"changed")
    with pytest.raises(InputError, match="SHA-256"):
        verify_package(package)


def _synthesize(models, dwi, tmp_path, name):
    from DTISynthLib.io.files import save_dwi
    from DTISynthLib.service.requests import SynthesisRequest
    from DTISynthLib.service.synthesize import synthesize

    path = tmp_path / f"{name}.nii.gz"
    save_dwi(path, dwi)
    _, report = synthesize(SynthesisRequest(dwi=path, out=tmp_path / name, models=models, device="cpu"))
    return report


def test_synthesize_warns_for_inputs_unlike_the_training_inputs(tiny_models, tmp_path):
    subject = simulate_subject(draw_subject("sub-007", 5), "sampled", grid=(32, 32, 19))
    dwi = subject.dwi
    report = _synthesize(tiny_models, dwi, tmp_path, "phantom")
    assert report["input_check"]["warning"] is False, report["input_check"]
    # synthesis checks the DWI it has put in axial slices already, with its brain mask of the DWI's own b=0:
    # the same ratio as the check reordering and masking a DWI itself, whatever plane the DWI is stored in
    from DTISynthLib.core.model_grid import reorder_axes
    from DTISynthLib.realism.input_check import dwi_input_features
    from DTISynthLib.synthesis.input_check import input_check_report, package_input_check

    check = package_input_check(tiny_models, read_manifest(tiny_models))
    assert input_check_report(check, dwi_input_features(dwi), "x")[0] == report["input_check"]
    data, affine = reorder_axes(dwi.data, dwi.affine, (2, 0, 1))
    coronal = _synthesize(tiny_models, DWI(data, affine, dwi.bvals, dwi.gradients), tmp_path, "coronal")
    assert coronal["input_check"] == report["input_check"] and coronal["slices"]["native_plane"] != "axial"
    assert not any("unlike the models' training inputs" in w for w in report["warnings"])

    # not a brain: a water cylinder (uniform b=0, isotropic ADC 2.1e-3 mm^2/s at room temperature)
    x, y, z = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in dwi.data.shape[:3]], indexing="ij")
    inside = (x ** 2 + y ** 2 < 12 ** 2) & (np.abs(z) < 8)
    water = np.where(inside[..., None], 800.0 * np.exp(-dwi.bvals * 2.1e-3), 0.0)
    noisy = np.abs(water + np.random.default_rng(3).normal(0, 800 / 30, water.shape)).astype(np.float32)
    report = _synthesize(tiny_models, DWI(noisy, dwi.affine, dwi.bvals, dwi.gradients), tmp_path, "water")
    assert report["input_check"]["warning"] is True and report["input_check"]["error_ratio"] > 2
    assert any("water.nii.gz is unlike the models' training inputs" in w for w in report["warnings"])


def test_the_warning_ratio_can_be_set_when_the_check_is_refitted(tiny_models, tmp_path):
    """`dtisynth models --fit-input-check PKG --data DIR --warning-ratio R`: the same autoencoder and
    reference error (the fit is deterministic), the package's threshold R, and synthesize warns above it."""
    from DTISynthLib import cli

    package = tmp_path / "m"
    shutil.copytree(tiny_models, package)
    before = read_manifest(package).data["input_check"]
    cohort = tiny_models.parent / "cohort"
    assert cli.main(["models", "--fit-input-check", str(package), "--data", str(cohort), "--warning-ratio", "1.05"]) == 0
    after = read_manifest(package).data["input_check"]
    assert after["warning_ratio"] == 1.05 and after["reference_error"] == pytest.approx(before["reference_error"])
    assert cli.main(["models", "--fit-input-check", str(package), "--data", str(cohort), "--warning-ratio", "0"]) == 2
