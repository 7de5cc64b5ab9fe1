"""Paired data from multi-direction scans (dtisynth pairs)."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import SHARED, random_gradient_table, real_dwi_path

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
    with pytest.raises(InputError, match="three.nii.gz: expected 6 distinct diffusion-weighted volumes to match 6 "
                                         "nominal directions; found 3"):
        make_pairs(dwi, "nearest")


def _siemens_12_directions():
    g = np.array([(1, 0, .5), (0, .5, 1), (.5, 1, 0), (1, .5, 0), (0, 1, .5), (.5, 0, 1),
                  (1, 0, -.5), (0, -.5, 1), (-.5, 1, 0), (1, -.5, 0), (0, 1, -.5), (-.5, 0, 1)])
    return g / np.linalg.norm(g, axis=1)[:, None]


@pytest.mark.parametrize("axis", [(0, 0, 1), (1, 0, 0), (1, -1, 0.5)])
def test_nearest_is_one_to_one_on_a_rotated_12_direction_scheme(axis):
    # Rotated 45 degrees about z, two of Siemens' 6 directions have the same nearest volume when each
    # picks on its own; matched one-to-one, every direction gets its own volume within 32 degrees.
    from scipy.spatial.transform import Rotation

    rotation = Rotation.from_rotvec(np.radians(45) * np.asarray(axis) / np.linalg.norm(axis))
    gradients = np.vstack([np.zeros(3), rotation.apply(_siemens_12_directions())])
    bvals = np.r_[0, np.full(12, 1000.0)]
    dwi, _ = make_fibre_phantom(shape=(10, 10, 4), bvals=bvals, gradients=gradients)
    dwi = check_dwi(dwi)
    each_on_its_own = np.argmax(np.abs(dwi.gradients[1:] @ SIEMENS_6_RAS.T), axis=0)
    if axis == (0, 0, 1):
        assert len(set(each_on_its_own.tolist())) == 5
    index, angles = nearest_volumes(dwi, SIEMENS_6_RAS)
    assert len(set(index.tolist())) == 6 and angles.max() < 32
    # minimal total angle: no other one-to-one choice of 6 of the 12 volumes does better
    cost = np.degrees(np.arccos(np.clip(np.abs(dwi.gradients[1:] @ SIEMENS_6_RAS.T), 0, 1)))
    rng = np.random.default_rng(0)
    for _ in range(2000):
        choice = rng.permutation(12)[:6]
        assert cost[choice, np.arange(6)].sum() >= angles.sum() - 1e-9
    dwi3, dti6, report = make_pairs(dwi, "nearest")
    np.testing.assert_array_equal(report["dti6_volumes"], index)


def test_min_cost_assignment_is_the_optimum_scipy_finds_and_prefers_earlier_rows():
    import itertools

    from scipy.optimize import linear_sum_assignment

    from DTISynthLib.core.gradient_schemes import min_cost_assignment

    rng = np.random.default_rng(1)
    for trial in range(300):
        n = int(rng.integers(3, 9))
        m = int(rng.integers(1, min(n, 4) + 1))
        cost = rng.integers(0, 3, (n, m)).astype(float) if trial % 2 else rng.uniform(0, 90, (n, m))
        rows = min_cost_assignment(cost)
        assert len(set(rows.tolist())) == m
        brute = min(cost[list(p), np.arange(m)].sum() for p in itertools.permutations(range(n), m))
        scipy_rows, columns = linear_sum_assignment(cost)
        assert cost[rows, np.arange(m)].sum() == pytest.approx(brute, abs=1e-9)
        assert cost[scipy_rows, columns].sum() == pytest.approx(brute, abs=1e-9)
    # A repeated direction (identical rows): the earlier volume
    np.testing.assert_array_equal(min_cost_assignment(np.array([[9.0, 1], [2, 8], [2, 8], [9, 1]])), [1, 0])


ALL_REAL_SERIES = sorted(p.name for p in (SHARED / "data" / "real").glob("dev_*") if p.is_dir())


def stated_series_count():
    """The count the shared data's README states ("33 series of eight people"): the folders must follow it."""
    real_dwi_path("dev_philips_achieva_b2000")  # skips (fails under CI) where the shared data is absent
    return int(re.search(r"(\d+) series of \w+ people", (SHARED / "data" / "real" / "README.md").read_text())[1])


def test_every_nearest_pair_is_one_synthesize_accepts_and_every_refusal_is_synthesizes():
    """On every shared series (33 as of 2026-12): `pairs --mode nearest` writes a 3-direction DWI exactly
    when synthesize (default kind) accepts those volumes, the same volumes in the same order; both refuse by the
    directions' conditioning, not their angle to the axes (Canon's 26-degree triples are taken; Philips
    b1000's nearest triple, 45 degrees from every axis, is nearly coplanar)."""
    from DTISynthLib.synthesis.pipeline import assign_axes

    assert len(ALL_REAL_SERIES) == stated_series_count(), ALL_REAL_SERIES
    written = set()
    for name in ALL_REAL_SERIES:
        dwi = load_dwi(real_dwi_path(name))
        try:
            dwi3, _, report = make_pairs(dwi, "nearest")
        except InputError as exc:
            with pytest.raises(InputError) as refused:
                assign_axes(dwi)
            assert "well-conditioned" in str(exc) and str(refused.value) == str(exc), name
            continue
        order, _ = assign_axes(dwi)
        assert order == report["dwi3_volumes"], name
        assert assign_axes(check_dwi(dwi3))[0] == [1, 2, 3], name
        written.add(name)
    assert "dev_canon_galan_v60_pa_headturn_b1500" in written and "dev_siemens_prisma_xa30_PA_b2500" in written
    assert "dev_philips_achieva_b1000" not in written and "dev_uih_umr770_b930" not in written


def test_tensor_mode_writes_only_finite_non_negative_signals():
    # This scan's IWLS fit has voxels whose tensor predicts inf or NaN at b=1000 (S0 up to 5.5e34).
    dwi = load_dwi(real_dwi_path("dev_siemens_prisma_xa30_AP_b2500"))
    dwi3, dti6, report = make_pairs(dwi, "tensor")
    for acquisition in (dwi3, dti6):
        assert np.isfinite(acquisition.data).all() and (acquisition.data >= 0).all()
        assert (acquisition.data[..., 0] > 0).sum() > 0.95 * report["mask_voxels"]
    check_dwi(dwi3)  # what synthesize refused before


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
