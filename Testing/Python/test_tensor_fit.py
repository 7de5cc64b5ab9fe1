import numpy as np
import pytest
from conftest import random_gradient_table

from DTISynthLib.core.dwi import DWI, check_dwi, select_shell, shells
from DTISynthLib.core.errors import InputError
from DTISynthLib.core.gradient_schemes import SIEMENS_6_RAS
from DTISynthLib.core.tensor_layout import tensor6_to_matrix
from DTISynthLib.fit.tensor_fit import (
    MAX_CONDITION,
    METHODS,
    design_condition,
    design_matrix,
    fit_signals,
    fit_tensors,
    predict_signals,
    solve_spd,
)
from DTISynthLib.fit.tensor_maps import compute_maps, eigen_decompose
from DTISynthLib.simulation.numerical_phantom import make_fibre_phantom


def _random_tensors(n, seed=0):
    rng = np.random.default_rng(seed)
    t = np.zeros((n, 6))
    t[:, :3] = rng.uniform(0.3e-3, 1.6e-3, (n, 3))
    t[:, 3:] = rng.normal(0, 2e-4, (n, 3))
    return t


@pytest.mark.parametrize("method", METHODS)
def test_noise_free_phantom_recovers_ground_truth(method):
    dwi, truth = make_fibre_phantom(shape=(20, 20, 8), rotation_degrees=(5, 10, 20))
    mask = truth["labels"] > 0
    fit = fit_tensors(check_dwi(dwi), mask, method)
    fa = compute_maps(fit.tensor, mask, ("fa",))["fa"]
    true_fa = compute_maps(truth["tensor"], mask, ("fa",))["fa"]
    assert np.abs(fa - true_fa)[mask].max() < 1e-4
    np.testing.assert_allclose(fit.tensor[mask], truth["tensor"][mask], atol=1e-9)
    np.testing.assert_allclose(fit.s0[mask], truth["s0"][mask], rtol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_overdetermined_noise_free_fit_is_exact(method):
    tensors = _random_tensors(500)
    bvals, gradients = random_gradient_table(30)
    params = fit_signals(predict_signals(tensors, 800.0, bvals, gradients), bvals, gradients, method)
    np.testing.assert_allclose(params[:, :6], tensors, atol=1e-10)
    np.testing.assert_allclose(np.exp(params[:, 6]), 800.0, rtol=1e-9)


def test_wls_and_iwls_beat_ols_on_noisy_low_signal():
    # Log-domain noise is heteroscedastic: weighting by the signal lowers the error (Veraart 2013).
    rng = np.random.default_rng(5)
    tensors = np.tile([1.7e-3, 0.3e-3, 0.3e-3, 0, 0, 0], (4000, 1))
    bvals, gradients = random_gradient_table(30, b=2000.0)
    clean = predict_signals(tensors, 100.0, bvals, gradients)
    noisy = np.abs(clean + rng.normal(0, 3.0, clean.shape))
    errors = {m: np.abs(fit_signals(noisy, bvals, gradients, m)[:, :6] - tensors).mean() for m in METHODS}
    assert errors["wls"] < errors["ols"] and errors["iwls"] < errors["ols"], errors


def test_solve_spd_matches_numpy():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(50, 7, 7))
    spd = a @ a.transpose(0, 2, 1) + 7 * np.eye(7)
    rhs = rng.normal(size=(50, 7))
    expected = np.linalg.solve(spd, rhs[..., None])[..., 0]
    got = solve_spd(np.moveaxis(spd, 0, -1), rhs.T).T
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_eigen_decomposition_matches_lapack():
    tensors = _random_tensors(5000, seed=3)
    evals, v1 = eigen_decompose(tensors)
    ref_vals, ref_vecs = np.linalg.eigh(tensor6_to_matrix(tensors))
    np.testing.assert_allclose(evals, ref_vals[:, ::-1], atol=1e-15)
    gap = (ref_vals[:, 2] - ref_vals[:, 1]) / ref_vals[:, 2]
    cosines = np.abs((v1 * ref_vecs[:, :, 2]).sum(1))[gap > 1e-3]
    assert cosines.min() > 1 - 1e-9


def test_several_b0_volumes_are_rows_of_their_own():
    # As in MRtrix3: each b=0 volume is a row, so OLS's S0 is the geometric mean of the b=0 volumes.
    tensors = _random_tensors(1)
    bvals, gradients = random_gradient_table(6, n_b0=3)
    gradients[3:] = SIEMENS_6_RAS
    signal = predict_signals(tensors, 1000.0, bvals, gradients)[0]
    signal[:3] = [900.0, 1000.0, 1100.0]
    dwi = check_dwi(DWI(signal.reshape(1, 1, 1, -1).astype(np.float32), np.eye(4), bvals, gradients))
    fit = fit_tensors(dwi, np.ones((1, 1, 1), bool), "ols")
    assert fit.s0[0, 0, 0] == pytest.approx((900.0 * 1000.0 * 1100.0) ** (1 / 3), rel=1e-6)
    signal[:3] = 1000.0
    dwi = check_dwi(DWI(signal.reshape(1, 1, 1, -1).astype(np.float32), np.eye(4), bvals, gradients))
    for method in METHODS:
        np.testing.assert_allclose(fit_tensors(dwi, np.ones((1, 1, 1), bool), method).tensor[0, 0, 0], tensors[0],
                                   atol=1e-9)


def test_nonpositive_signal_and_signal_above_s0_stay_finite():
    bvals, gradients = random_gradient_table(6)
    gradients[1:] = SIEMENS_6_RAS
    signals = np.array([[1000, 0, 500, 400, 300, 600, 500],      # zero signal
                        [1000, -20, 500, 400, 300, 600, 500],    # negative signal (after noise removal)
                        [1000, 1200, 500, 400, 300, 600, 500],   # S > S0: negative ADC along one direction
                        [0, 0, 0, 0, 0, 0, 0]], dtype=np.float32)
    dwi = check_dwi(DWI(signals.reshape(4, 1, 1, 7), np.eye(4), bvals, gradients))
    for method in METHODS:
        fit = fit_tensors(dwi, np.ones((4, 1, 1), bool), method)
        for policy in ("keep", "clip"):
            maps = compute_maps(fit.tensor, names=("fa", "md", "ad", "rd", "color", "v1", "evals"), policy=policy)
            for name, volume in maps.items():
                assert np.isfinite(volume).all(), (method, policy, name)
        assert np.isfinite(fit.tensor).all() and np.isfinite(fit.s0).all()
    assert np.all(fit.tensor[3] == 0)  # no signal at all: no tensor


def test_negative_eigenvalue_policies():
    tensor = np.array([[[[1.5e-3, 0.4e-3, -0.2e-3, 0, 0, 0]]]])
    keep = compute_maps(tensor, names=("fa", "md", "rd"), policy="keep")
    clip = compute_maps(tensor, names=("fa", "md", "rd"), policy="clip")
    # keep: MRtrix3's FA from tensor components may exceed 1; clip: dipy's, within [0, 1]
    l1, l2, l3 = 1.5e-3, 0.4e-3, -0.2e-3
    fa_keep = np.sqrt(0.5 * ((l1 - l2) ** 2 + (l2 - l3) ** 2 + (l3 - l1) ** 2) / (l1**2 + l2**2 + l3**2))
    assert keep["fa"].item() == pytest.approx(fa_keep, rel=1e-6)
    assert keep["md"].item() == pytest.approx((l1 + l2 + l3) / 3, rel=1e-6)
    assert clip["md"].item() == pytest.approx((l1 + l2) / 3, rel=1e-6)
    assert clip["rd"].item() == pytest.approx(l2 / 2, rel=1e-6)
    assert 0 <= clip["fa"].item() <= 1


def test_colour_fa_is_in_ras_for_oblique_image():
    dwi, truth = make_fibre_phantom(shape=(20, 20, 8), rotation_degrees=(0, 0, 40))
    maps = compute_maps(truth["tensor"], names=("fa", "color"))
    left_right = truth["labels"] == 3
    rgb = maps["color"][left_right].mean(axis=0)
    # the left-right bundle is rotated 40 degrees about S: red = cos 40, green = sin 40, blue = 0, times FA
    fa = maps["fa"][left_right].mean()
    np.testing.assert_allclose(rgb, fa * np.array([np.cos(np.radians(40)), np.sin(np.radians(40)), 0]), atol=1e-6)


def test_multi_shell_refused_unless_a_shell_is_chosen():
    bvals = np.r_[0, np.full(6, 1000.0), np.full(6, 2000.0)]
    gradients = np.vstack([np.zeros(3), SIEMENS_6_RAS, SIEMENS_6_RAS])
    dwi = check_dwi(DWI(np.ones((2, 2, 2, 13), np.float32), np.eye(4), bvals, gradients, "multi.nii.gz"))
    assert shells(dwi.bvals) == [1000.0, 2000.0]
    with pytest.raises(InputError, match=r"multi.nii.gz: expected a single non-zero shell.*b = 1000, 2000"):
        select_shell(dwi)
    chosen = select_shell(dwi, 2000)
    assert chosen.data.shape[3] == 7
    np.testing.assert_allclose(chosen.bvals, np.r_[0, np.full(6, 2000.0)])
    with pytest.raises(InputError, match="a shell at b = 3000"):
        select_shell(dwi, 3000)


def test_design_matrix_convention():
    # ln S = ln S0 - b g^T D g: for g = x and D = diag(d), the row gives -b * Dxx + ln S0
    row = design_matrix(np.array([1000.0]), np.array([[1.0, 0.0, 0.0]]))[0]
    np.testing.assert_allclose(row, [-1000, 0, 0, 0, 0, 0, 1])


def test_too_few_or_degenerate_directions_are_refused():
    from DTISynthLib.core.errors import InputError

    three = DWI(np.ones((2, 2, 2, 4), np.float32), np.eye(4), np.r_[0, 1000, 1000, 1000],
                np.vstack([np.zeros(3), np.eye(3)]), "xyz_dwi.nii.gz")
    with pytest.raises(InputError, match=r"xyz_dwi.nii.gz: expected b=0 and at least 6 diffusion directions.*"
                                         r"found 3 diffusion-weighted volumes spanning only 3 of the 6"):
        fit_tensors(check_dwi(three))
    repeated = np.vstack([np.zeros(3), SIEMENS_6_RAS[:3], SIEMENS_6_RAS[:3]])  # 6 volumes, 3 directions
    six = DWI(np.ones((2, 2, 2, 7), np.float32), np.eye(4), np.r_[0, np.full(6, 1000.0)], repeated, "rep.nii.gz")
    with pytest.raises(InputError, match="spanning only 3 of the 6"):
        fit_tensors(check_dwi(six))


def test_nearly_coplanar_directions_are_refused_by_condition_number():
    # 30 directions within 0.6 degrees of the axial plane: rank 7 in exact arithmetic, but the fit of
    # noisy data gave FA 1.000 everywhere and negative MD.
    rng = np.random.default_rng(3)
    g = rng.normal(size=(30, 3))
    g[:, 2] *= 0.01
    g /= np.linalg.norm(g, axis=1)[:, None]
    bvals, gradients = np.r_[0, np.full(30, 1000.0)], np.vstack([np.zeros(3), g])
    assert np.linalg.matrix_rank(design_matrix(bvals, gradients)) == 7
    assert design_condition(bvals, gradients) > MAX_CONDITION
    flat = DWI(np.ones((2, 2, 2, 31), np.float32), np.eye(4), bvals, gradients, "flat.nii.gz")
    with pytest.raises(InputError, match=r"flat.nii.gz: expected gradient directions spread in 3D \(design-matrix "
                                         r"condition number <= 1000\); found condition number \d"):
        fit_tensors(check_dwi(flat))
    # scanners' schemes are far inside the limit
    assert design_condition(np.r_[0, np.full(6, 1000.0)], np.vstack([np.zeros(3), SIEMENS_6_RAS])) < 10


def test_predicted_signals_of_a_volume_in_chunks_are_the_voxel_formula_exactly():
    """Volumes beyond CHUNK_VOXELS are predicted in chunks on every core (small temporaries): the same
    S0 exp(B D) per voxel, bit for bit, for a (x, y, z, 6) view in any memory order and an S0 map."""
    from DTISynthLib.fit.tensor_fit import CHUNK_VOXELS, design_matrix

    rng = np.random.default_rng(3)
    bvals, gradients = np.full(6, 1000.0), SIEMENS_6_RAS
    tensors = np.transpose(rng.normal(0, 1e-3, (6, 40, 30, 20)), (1, 2, 3, 0))  # not C-contiguous
    s0 = rng.uniform(100, 300, (40, 30, 20)).astype(np.float32)
    assert s0.size > 2 * CHUNK_VOXELS
    signals = predict_signals(tensors, s0, bvals, gradients)
    design = design_matrix(bvals, gradients)[:, :6].T
    whole = s0[..., None] * np.exp(tensors @ design)  # the whole volume at once, as before the chunks
    assert signals.shape == whole.shape == (40, 30, 20, 6) and signals.dtype == np.float64
    np.testing.assert_array_equal(signals, whole)
    small = tensors[:2, :2, :2]  # directly, with a scalar S0
    np.testing.assert_array_equal(predict_signals(small, 1.0, bvals, gradients), np.exp(small @ design))
    # the caller's np.errstate holds in the chunks' threads too (pairs --mode tensor printed overflows)
    import warnings

    with warnings.catch_warnings(record=True) as caught, np.errstate(over="ignore"):
        warnings.simplefilter("always")
        overflowing = predict_signals(-tensors * 1e6, s0, bvals, gradients)
    assert np.isinf(overflowing).any() and not [w for w in caught if "overflow" in str(w.message)]


def test_chunks_run_on_the_threads_the_process_may_use(monkeypatch):
    """A local Dask cluster's workers have OMP_NUM_THREADS=1 and one core each: their chunks run on one
    thread, or two workers on two cores would run four; elsewhere one thread per core, up to 4."""
    import os
    import threading

    from DTISynthLib.fit.tensor_fit import chunk_threads, in_chunks

    def threads_used():
        seen = set()
        in_chunks(np.arange(40 * 8192), lambda rows: (seen.add(threading.get_ident()), sum(range(20000))))
        return seen

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert chunk_threads() == 1 and len(threads_used()) == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert chunk_threads() == min(4, len(os.sched_getaffinity(0)))
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert chunk_threads() == min(4, len(os.sched_getaffinity(0)))
