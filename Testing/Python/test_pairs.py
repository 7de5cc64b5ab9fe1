"""Paired data from multi-direction scans (dtisynth pairs)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import random_gradient_table

from DTISynthLib.core.dwi import DWI, check_dwi
from DTISynthLib.core.errors import InputError
from DTISynthLib.core.gradient_schemes import AXES_3_RAS, SIEMENS_6_RAS
from DTISynthLib.fit.tensor_fit import predict_signals
from DTISynthLib.io.files import load_dwi
from DTISynthLib.simulation.numerical_phantom import make_fibre_phantom
from DTISynthLib.simulation.pairs import make_pairs, nearest_volumes


def test_nearest_volumes_on_real_scans(real_dwi):
    dwi = load_dwi(real_dwi)
    _, angles = nearest_volumes(dwi, AXES_3_RAS)
    if "xa30" in real_dwi.name:
        # Prisma XA30: volumes 1 and 2 lie on x and y; the closest to z is 16.6 degrees off (measured).
        np.testing.assert_allclose(angles, [0.09, 0.09, 16.61], atol=0.01)
    else:
        # Achieva: volumes 1-3 are the image axes, tilted about 10 degrees from the scanner axes.
        assert angles.max() < 11


def test_nearest_mode_keeps_measured_volumes_and_vectors():
    bvals, gradients = random_gradient_table(40, seed=0)
    dwi, _ = make_fibre_phantom(shape=(12, 12, 6), bvals=bvals, gradients=gradients)
    dwi = check_dwi(dwi)
    dwi3, dti6, report = make_pairs(dwi, "nearest")
    assert dwi3.data.shape[3] == 4 and dti6.data.shape[3] == 7
    for acquisition, name, nominal in ((dwi3, "dwi3", AXES_3_RAS), (dti6, "dti6", SIEMENS_6_RAS)):
        volumes = report[f"{name}_volumes"]
        np.testing.assert_array_equal(acquisition.data[..., 1:], dwi.data[..., volumes])
        np.testing.assert_array_equal(acquisition.gradients[1:], dwi.gradients[volumes])
        cosines = np.abs((acquisition.gradients[1:] * nominal).sum(axis=1))
        np.testing.assert_allclose(np.degrees(np.arccos(np.clip(cosines, -1, 1))), report[f"{name}_angle_degrees"],
                                   atol=0.01)


def test_tensor_mode_predicts_exact_directions_at_b1000():
    bvals, gradients = random_gradient_table(30, b=2500.0, seed=1)
    dwi, truth = make_fibre_phantom(shape=(40, 40, 16), bvals=bvals, gradients=gradients)
    dwi3, dti6, report = make_pairs(check_dwi(dwi), "tensor", b=1000.0)
    np.testing.assert_allclose(dti6.gradients[1:], SIEMENS_6_RAS)
    np.testing.assert_allclose(dti6.bvals, [0] + [1000] * 6)
    inside = (truth["labels"] > 0) & (dti6.data[..., 0] > 0)
    assert inside.sum() > 0.8 * (truth["labels"] > 0).sum()
    expected = predict_signals(truth["tensor"], truth["s0"], dti6.bvals, dti6.gradients)
    np.testing.assert_allclose(dti6.data[inside], expected[inside], rtol=1e-4)
    assert report["dti6_angle_degrees"] == [0.0] * 6


def test_too_few_directions_are_refused():
    bvals = np.r_[0, np.full(3, 1000.0)]
    dwi = check_dwi(DWI(np.ones((4, 4, 4, 4), np.float32), np.eye(4), bvals, np.vstack([np.zeros(3), np.eye(3)]),
                        "three.nii.gz"))
    with pytest.raises(InputError, match="three.nii.gz: expected 6 distinct volumes nearest"):
        make_pairs(dwi, "nearest")


def test_pairs_command_on_a_real_scan(tmp_path, real_dwi):
    run = subprocess.run([sys.executable, "-m", "DTISynthLib", "pairs", str(real_dwi), "--out", str(tmp_path / "p"),
                          "--jsonl"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    stem = real_dwi.name.split(".")[0]
    dwi3 = load_dwi(tmp_path / "p" / f"{stem}_acq-dwi3_dwi.nii.gz")
    dti6 = load_dwi(tmp_path / "p" / f"{stem}_acq-dti6_dwi.nii.gz")
    assert dwi3.data.shape[3] == 4 and dti6.data.shape[3] == 7
    report = json.loads((tmp_path / "p" / "pairs.json").read_text())
    assert len(report["dti6_angle_degrees"]) == 6 and report["mode"] == "nearest"
    assert ("warning" in result["message"]) == bool(report["warnings"])
