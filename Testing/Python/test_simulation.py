"""The digital brain phantom, paper 2's schemes and simulated subjects."""

import hashlib

import numpy as np
import pytest

from DTISynthLib.core.dwi import check_dwi
from DTISynthLib.core.gradient_schemes import dti_6
from DTISynthLib.fit.tensor_fit import fit_tensors
from DTISynthLib.fit.tensor_maps import compute_maps
from DTISynthLib.io.files import load_dwi, save_dwi
from DTISynthLib.registration.rigid import register_rigid, rigid_difference
from DTISynthLib.simulation.brain_phantom import (
    LABELS,
    ROI_GROUPS,
    ROIS,
    fibre_compartments,
    sample_tissue,
)
from DTISynthLib.simulation.cohort import (
    PAPER_GRID,
    draw_subject,
    scanner_affine,
    simulate_subject,
    subject_tissue,
    write_cohort,
)
from DTISynthLib.simulation.signals import (
    FREE_WATER,
    SYN_EIGENVALUES,
    eigenvalues_for,
    pools_from_fit,
    random_choices,
    reference_pools,
    simulate_signals,
)

SMALL = (64, 64, 38)  # 3.4 x 3.4 x 4 mm voxels over the paper's field of view


@pytest.fixture(scope="module")
def small_subject():
    return simulate_subject(draw_subject("sub-001", 11, snr=30.0), "sampled", grid=SMALL)


def test_noise_free_dti_fit_through_files_returns_ground_truth(tmp_path):
    subject = simulate_subject(draw_subject("sub-001", 5), "sampled", grid=SMALL, noise=False)
    save_dwi(tmp_path / "dti.nii.gz", check_dwi(subject.dti))
    dti = load_dwi(tmp_path / "dti.nii.gz")
    brain = subject.tissue.sum(axis=-1) > 0.05
    fitted = compute_maps(fit_tensors(dti, brain).tensor, brain, ("fa", "md", "v1"))
    truth = compute_maps(subject.truth_tensor, brain, ("fa", "md", "v1"))
    assert np.abs(fitted["fa"] - truth["fa"])[brain].max() < 1e-4
    assert np.abs(fitted["md"] - truth["md"])[brain].max() < 1e-9


# The seed paper's Table 2, original DTI: (FA, MD in mm^2/s) per ROI.
TABLE_2 = {"lentiform_nucleus": (0.28, 7.08e-4), "thalamus": (0.28, 8.79e-4),
           "posterior_limb_internal_capsule": (0.59, 7.08e-4), "posterior_thalamic_radiation": (0.52, 7.94e-4),
           "splenium_corpus_callosum": (0.58, 8.03e-4)}
FA_TOLERANCE = 0.06  # twice the paper's between-subject SD; measured differences 0.002-0.043
MD_RANGE = (0.70e-3, 0.90e-3)  # the range for every ROI


@pytest.mark.parametrize("seed, vary", [(1, False), (7, True)])
def test_phantom_roi_values_match_the_seed_papers_originals(seed, vary):
    subject = simulate_subject(draw_subject("sub-001", seed, vary=vary), "sampled", grid=PAPER_GRID, noise=False)
    maps = compute_maps(subject.truth_tensor, names=("fa", "md"))
    for roi, (fa, _) in TABLE_2.items():
        inside = np.isin(subject.labels, ROI_GROUPS[roi])
        assert inside.sum() > 150, roi
        assert abs(maps["fa"][inside].mean() - fa) <= FA_TOLERANCE, (roi, maps["fa"][inside].mean())
        assert MD_RANGE[0] <= maps["md"][inside].mean() <= MD_RANGE[1], (roi, maps["md"][inside].mean())


def test_background_noise_matches_requested_snr(small_subject):
    # Where there is no signal the magnitude is Rayleigh distributed: mean = sigma sqrt(pi / 2).
    background = small_subject.tissue.sum(axis=-1) == 0
    values = small_subject.dti.data[background]
    sigma = values.mean() / np.sqrt(np.pi / 2)
    expected = 300.0 / small_subject.parameters.snr  # SNR is defined on the b=0 white-matter signal
    assert sigma == pytest.approx(expected, rel=0.02)
    assert small_subject.sigma == pytest.approx(expected)


def test_recorded_misregistration_is_recovered(small_subject):
    subject = small_subject
    brain = np.argwhere(subject.tissue.sum(axis=-1) > 0.5)
    points = brain @ subject.dti.affine[:3, :3].T + subject.dti.affine[:3, 3]
    truth = subject.parameters.misregistration
    before = rigid_difference(np.eye(4), truth, points)
    assert before[1] > 1.0  # the DWI really is misregistered
    result = register_rigid(subject.dti.data[..., 0], subject.dti.affine, subject.dwi.data[..., 0], subject.dwi.affine)
    angle, mean_mm, max_mm = rigid_difference(result.matrix, truth, points)
    assert angle < 0.5 and max_mm < 0.5, (angle, mean_mm, max_mm)  # measured: 0.05 deg, 0.10 mm
    assert result.correlation > 0.95
    again = register_rigid(subject.dti.data[..., 0], subject.dti.affine, subject.dwi.data[..., 0], subject.dwi.affine)
    assert np.array_equal(again.matrix, result.matrix)  # fixed seed, one thread
    with pytest.raises(ValueError, match="wall-clock"):
        register_rigid(subject.dti.data[..., 0], subject.dti.affine, subject.dwi.data[..., 0], subject.dwi.affine, seed=0)


def test_syn_scheme_uses_dipy_defaults():
    pools = reference_pools()
    choice = np.arange(10)
    np.testing.assert_array_equal(eigenvalues_for(pools, "syn", "wm", choice), np.tile(SYN_EIGENVALUES["wm"], (10, 1)))
    np.testing.assert_array_equal(eigenvalues_for(pools, "syn", "gm", choice), np.full((10, 3), 0.5e-3))
    np.testing.assert_array_equal(eigenvalues_for(pools, "syn", "csf", choice), np.full((10, 3), 3.0e-3))


def test_sampled_and_sample_and_mean_schemes_draw_from_the_pools():
    pools = reference_pools()
    choice = random_choices(3, 0, np.arange(20000))
    wm = eigenvalues_for(pools, "sampled", "wm", choice)
    assert all((pools.wm == row).all(axis=1).any() for row in wm[:200])  # every triplet is a pool entry
    np.testing.assert_allclose(wm.mean(axis=0), pools.wm.mean(axis=0), rtol=0.01)  # uniform over the pool
    gm_sampled = eigenvalues_for(pools, "sampled", "gm", choice)
    assert gm_sampled.std(axis=0).min() > 0
    for tissue in ("gm", "csf"):
        mean = eigenvalues_for(pools, "sample-and-mean", tissue, choice)
        np.testing.assert_allclose(mean, np.tile(getattr(pools, tissue).mean(axis=0), (len(choice), 1)))
    np.testing.assert_array_equal(eigenvalues_for(pools, "sample-and-mean", "wm", choice), wm)


def test_random_wm_scheme_attenuation_and_free_water():
    tissue = subject_tissue(draw_subject("s", 2, vary=False), scanner_affine(SMALL), SMALL, np.eye(4), "random-wm",
                            reference_pools())[1]
    bvals, gradients = dti_6()
    signals = simulate_signals(tissue, bvals, gradients, "random-wm", np.random.default_rng(0))
    weight = tissue.fractions * tissue.tissue_s0  # each tissue's share of the b=0 signal
    solid = weight[:, :2].sum(axis=1)
    use = solid > 0.2 * weight.sum(axis=1)
    free_water = weight[use, 2:3] * np.exp(-1000 * FREE_WATER)
    attenuation = (signals[use, 1:] - free_water) / solid[use, None]
    assert attenuation.size > 10000
    # U(0, 1): mean 1/2, variance 1/12, flat histogram
    assert attenuation.mean() == pytest.approx(0.5, abs=0.01)
    assert attenuation.var() == pytest.approx(1 / 12, rel=0.05)
    counts, _ = np.histogram(attenuation, bins=10, range=(0, 1))
    assert counts.min() > 0.9 * counts.mean()
    pure_csf = (solid == 0) & (weight[:, 2] > 0)
    assert pure_csf.sum() >= 3
    np.testing.assert_allclose(signals[pure_csf, 1:] / signals[pure_csf, :1], np.exp(-1000 * FREE_WATER), rtol=1e-6)


def test_pools_sampled_from_a_real_scan(real_dwi):
    from DTISynthLib.fit.brain_mask import brain_mask

    dwi = load_dwi(real_dwi)
    mask = brain_mask(dwi.mean_b0())
    maps = compute_maps(fit_tensors(dwi, mask).tensor, mask, ("evals", "fa", "md"))
    pools = pools_from_fit(maps["evals"], maps["fa"], maps["md"], mask, str(real_dwi))
    wm_fa = compute_maps(_diag(pools.wm), names=("fa",))["fa"]
    assert wm_fa.min() > 0.7  # paper 2: WM only from single-fibre voxels
    assert pools.csf.mean(axis=1).min() > 1.5e-3 and 0.6e-3 <= pools.gm.mean() <= 1.1e-3
    assert len(pools.wm) >= 50 and pools.source == str(real_dwi)


def _diag(triplets):
    tensor = np.zeros((len(triplets), 1, 1, 6))
    tensor[:, 0, 0, :3] = triplets
    return tensor


def test_tissue_is_tied_to_anatomy_across_acquisitions():
    # Without motion both acquisitions sample the same tissue, so their compartments are identical.
    params = draw_subject("s", 4, vary=False)
    a = subject_tissue(params, scanner_affine(SMALL), SMALL, params.head_pose, "sampled", reference_pools())[1]
    b = subject_tissue(params, scanner_affine(SMALL), SMALL, params.misregistration @ params.head_pose, "sampled",
                       reference_pools())[1]
    np.testing.assert_array_equal(a.compartments, b.compartments)


def test_fibre_field_directions_of_major_tracts():
    def main_direction(point):
        directions, fractions, _ = fibre_compartments(np.array([point], dtype=float))
        return np.abs(directions[0, np.argmax(fractions[0])])

    assert main_direction((0, -5, 24))[0] > 0.9  # corpus callosum body: left-right
    assert main_direction((0, -37, 13))[0] > 0.85  # splenium: left-right
    assert main_direction((20, -14, 8))[2] > 0.9  # internal capsule / corticospinal: superior-inferior
    assert main_direction((34, -60, 4))[1] > 0.9  # posterior thalamic radiation: anterior-posterior
    # Corona radiata / centrum semiovale: callosal, projection and association fibres cross.
    box = np.mgrid[10:36:2, -30:6:2, 16:40:2].reshape(3, -1).T.astype(float)
    _, fractions, _ = fibre_compartments(box)
    assert ((fractions > 0.2).sum(axis=1) >= 2).mean() > 0.3  # measured 0.43
    _, fractions, _ = fibre_compartments(np.array([[0.0, -5.0, 24.0], [34.0, -60.0, 4.0]]))
    assert (fractions > 0.2).sum(axis=1).tolist() == [1, 1]  # callosal body and optic radiation: one population


def test_roi_atlas_is_in_the_right_tissue_and_side():
    for roi in ROIS:
        fractions, _ = sample_tissue(np.array([roi.centre], dtype=float))
        assert fractions[0].sum() > 0.9, roi.name  # inside the brain
        if roi.name.endswith("_left"):
            assert roi.centre[0] < 0  # RAS: left is negative x
    assert LABELS["splenium_corpus_callosum"] == 9 and len(ROIS) == 9


def _digest(paths):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


def test_same_seed_same_bytes_and_layout(tmp_path):
    first = write_cohort(tmp_path / "a", 2, "sampled", seed=9, grid=(32, 32, 19))
    second = write_cohort(tmp_path / "b", 2, "sampled", seed=9, grid=(32, 32, 19))
    other = write_cohort(tmp_path / "c", 2, "sampled", seed=10, grid=(32, 32, 19))
    assert [p.relative_to(tmp_path / "a") for p in first] == [p.relative_to(tmp_path / "b") for p in second]
    assert _digest(first) == _digest(second)
    assert _digest(first)["sub-001_acq-dti6_dwi.nii.gz"] != _digest(other)["sub-001_acq-dti6_dwi.nii.gz"]
    names = {p.relative_to(tmp_path / "a").as_posix() for p in first}
    for sid in ("sub-001", "sub-002"):
        for acq, n in (("dwi3", 4), ("dti6", 7)):
            assert f"{sid}/dwi/{sid}_acq-{acq}_dwi.json" in names
            dwi = load_dwi(tmp_path / "a" / sid / "dwi" / f"{sid}_acq-{acq}_dwi.nii.gz")
            assert dwi.data.shape == (32, 32, 19, n)
            np.testing.assert_allclose(dwi.bvals, [0] + [1000] * (n - 1))
        assert f"derivatives/truth/{sid}/{sid}_truth.json" in names
    # subjects differ from each other
    s1 = load_dwi(tmp_path / "a" / "sub-001" / "dwi" / "sub-001_acq-dti6_dwi.nii.gz").data
    s2 = load_dwi(tmp_path / "a" / "sub-002" / "dwi" / "sub-002_acq-dti6_dwi.nii.gz").data
    assert not np.array_equal(s1, s2)


def test_chunks_threads_and_noise_pieces_do_not_change_the_bytes(monkeypatch):
    """simulate_acquisition samples the phantom in chunks on threads and draws noise in pieces: a subject
    is the same, bit for bit, as the whole grid sampled at once (subject_tissue) with whole-array noise."""
    from DTISynthLib.simulation import cohort, signals
    from DTISynthLib.simulation.cohort import S0_WM, simulate_acquisition

    params = draw_subject("sub-001", 21)
    monkeypatch.setattr(cohort, "SIMULATION_CHUNK", 2500)  # uneven chunks over 38 slices of 64 x 64
    monkeypatch.setattr(signals, "NOISE_CHUNK", 7777)
    for scheme in ("sampled", "random-wm"):
        dti, truth = simulate_acquisition(params, "dti", scheme, reference_pools(), SMALL)
        inside, tissue, labels, t1 = subject_tissue(params, scanner_affine(SMALL), SMALL, params.head_pose, scheme,
                                                    reference_pools())
        rng = np.random.default_rng([params.seed, 4])
        bvals, gradients = dti_6()
        clean = np.zeros((np.prod(SMALL), 7))
        clean[inside] = simulate_signals(tissue, bvals, gradients, scheme, rng)
        real = clean + rng.normal(0.0, S0_WM / params.snr, clean.shape)
        imaginary = rng.normal(0.0, S0_WM / params.snr, clean.shape)
        np.testing.assert_array_equal(dti.data.reshape(-1, 7), np.sqrt(real**2 + imaginary**2).astype(np.float32))
        np.testing.assert_array_equal(truth["labels"].reshape(-1)[inside], labels)
        np.testing.assert_array_equal(truth["t1"].reshape(-1)[inside], t1)
        assert np.count_nonzero(truth["labels"]) == np.count_nonzero(labels) > 100


def test_signals_match_dipy_multi_tensor():
    """Peer: dipy.sims.voxel.multi_tensor, voxel by voxel, for syn-scheme compartments (axially symmetric)."""
    voxel = pytest.importorskip("dipy.sims.voxel")
    from dipy.core.gradients import gradient_table

    params = draw_subject("s", 3, vary=False)
    tissue = subject_tissue(params, scanner_affine(SMALL), SMALL, params.head_pose, "syn", reference_pools())[1]
    bvals, gradients = dti_6()
    ours = simulate_signals(tissue, bvals, gradients, "syn", None)
    table = gradient_table(bvals, bvecs=gradients)
    rng = np.random.default_rng(0)
    k = tissue.fibre_fractions.shape[1]
    for n in rng.choice(len(ours), 300, replace=False):
        weight = tissue.fractions[n] * tissue.tissue_s0[n]
        share = np.r_[weight[0] * tissue.fibre_fractions[n], weight[1], weight[2]]
        evals = [np.linalg.eigvalsh(c)[::-1] for c in tissue.compartments[n]]
        sticks = np.vstack([tissue.fibre_directions[n], tissue.fibre_directions[n, :1], tissue.fibre_directions[n, :1]])
        peer, _ = voxel.multi_tensor(table, np.array(evals), S0=share.sum(), angles=sticks,
                                     fractions=100 * share / share.sum(), snr=None)
        np.testing.assert_allclose(ours[n], peer, rtol=1e-9, err_msg=f"voxel {n}")
    assert k == 3


def test_embedded_atlas_is_in_mni_space_with_templates(tmp_path):
    from DTISynthLib.io.files import load_volume
    from DTISynthLib.simulation.phantom_atlas import write_atlas

    paths = write_atlas(tmp_path / "atlas", grid=SMALL)
    assert sorted(p.name for p in paths) == ["atlas.json", "atlas_FA.nii.gz", "atlas_T1like.nii.gz", "atlas_b0.nii.gz",
                                             "atlas_dseg.nii.gz", "labels.tsv"]
    labels, affine = load_volume(tmp_path / "atlas" / "atlas_dseg.nii.gz")
    fa, _ = load_volume(tmp_path / "atlas" / "atlas_FA.nii.gz")
    t1, _ = load_volume(tmp_path / "atlas" / "atlas_T1like.nii.gz")
    assert set(np.unique(labels).astype(int)) == set(range(10))  # background + 9 ROIs
    # World coordinates are MNI: the voxel nearest each ROI centre carries that ROI's label.
    for roi in ROIS:
        ijk = np.round(np.linalg.solve(affine[:3, :3], np.asarray(roi.centre) - affine[:3, 3])).astype(int)
        assert labels[tuple(ijk)] == roi.label, roi.name
    assert fa[labels == 9].mean() > 0.45 and fa[np.isin(labels, (3, 4))].mean() < 0.4
    assert 0 <= t1.min() and t1.max() <= 1 and t1[labels > 0].mean() > 0.3
    table = (tmp_path / "atlas" / "labels.tsv").read_text().splitlines()
    assert table[0] == "index\tname\troi" and len(table) == 10
