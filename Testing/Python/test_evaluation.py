"""Evaluation: statistics against hand-computed values and scipy, ROI placement on a deformed,
re-posed phantom subject, the report's content, and bad input."""

import base64
import csv
import io
import re

import numpy as np
import pytest

from DTISynthLib.core.dwi import DWI, check_dwi
from DTISynthLib.core.errors import InputError
from DTISynthLib.evaluation.atlas import DEFAULT_ROIS, embedded_atlas, place_rois
from DTISynthLib.evaluation.comparison import MAPS, run_evaluation
from DTISynthLib.evaluation.statistics import (
    bland_altman,
    paired_t_test,
    roi_statistics,
)
from DTISynthLib.io.files import load_dwi, save_dwi, save_volume
from DTISynthLib.simulation.brain_phantom import ROI_GROUPS
from DTISynthLib.simulation.cohort import draw_subject, simulate_subject, write_cohort

GRID = (64, 64, 38)


def test_bland_altman_matches_hand_computed_values():
    original = [1.0, 2.0, 3.0, 4.0]
    synthetic = [1.5, 1.5, 4.0, 4.0]
    # differences 0.5, -0.5, 1.0, 0.0: mean 0.25; SD (n - 1) sqrt(((.25)^2 + (.75)^2 + (.75)^2 + (.25)^2) / 3)
    sd = np.sqrt((0.0625 + 0.5625 + 0.5625 + 0.0625) / 3)
    result = bland_altman(original, synthetic)
    assert result["n"] == 4
    assert result["bias"] == pytest.approx(0.25)
    assert result["sd"] == pytest.approx(sd)
    assert result["lower"] == pytest.approx(0.25 - 1.96 * sd) and result["upper"] == pytest.approx(0.25 + 1.96 * sd)
    assert result["means"] == [1.25, 1.75, 3.5, 4.0]
    assert result["differences"] == [0.5, -0.5, 1.0, 0.0]
    with pytest.raises(ValueError, match="paired"):
        bland_altman([1.0, 2.0], [1.0])


def test_paired_t_test_agrees_with_scipy_and_the_formula():
    from scipy import stats

    original = np.array([0.58, 0.61, 0.55, 0.60, 0.57, 0.62])
    synthetic = np.array([0.55, 0.60, 0.50, 0.59, 0.52, 0.60])
    t, p, n = paired_t_test(original, synthetic)
    reference = stats.ttest_rel(synthetic, original)
    assert (t, p) == pytest.approx((reference.statistic, reference.pvalue), rel=1e-12)
    d = synthetic - original
    t_hand = d.mean() / (d.std(ddof=1) / np.sqrt(d.size))
    assert n == 6 and t == pytest.approx(t_hand) and p == pytest.approx(2 * stats.t.sf(abs(t_hand), 5))
    assert np.isnan(paired_t_test([1.0], [2.0])[1])  # one pair: no test, reported as n/a and flagged


def test_snr_is_roi_mean_over_roi_sd():
    values = np.zeros((4, 4, 2))
    values[:2, :2, 0] = [[1.0, 2.0], [3.0, 4.0]]
    mask = np.zeros(values.shape, bool)
    mask[:2, :2, 0] = True
    voxels, mean, sd, snr = roi_statistics(values, mask)
    assert voxels == 4 and mean == pytest.approx(2.5) and sd == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert snr == pytest.approx(2.5 / np.std([1, 2, 3, 4], ddof=1))
    voxels, mean, _, snr = roi_statistics(values, np.zeros(values.shape, bool))
    assert voxels == 0 and np.isnan(mean) and np.isnan(snr)


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_atlas_rois_recover_the_phantom_labels_of_a_deformed_reposed_subject():
    # Full size: the ROIs are a few millimetres thick. Subject sub-002 (seed 7): head turned by up to
    # 4 degrees and moved 4 mm, deformed smoothly by 2.5 mm (RMS at the control points), noisy.
    subject = simulate_subject(draw_subject("sub-002", 7), "sampled")
    assert max(np.abs(subject.parameters.head_rotation_degrees)) > 1.0 and subject.parameters.deformation_mm > 0
    dti = check_dwi(subject.dti)
    masks, report = place_rois(embedded_atlas(), dti.mean_b0(), None, dti.affine, DEFAULT_ROIS)
    dice = {roi: _dice(masks[roi], np.isin(subject.labels, ROI_GROUPS[roi])) for roi in DEFAULT_ROIS}
    # measured: lentiform 0.93, thalamus 0.92, PLIC 0.91, PTR 0.83, splenium 0.86 (sub-001: min 0.83;
    # sub-003 fails: its left PTR, 93 voxels, lands 3 mm off; see the README)
    assert min(dice.values()) >= 0.8, dice
    assert report["roi_voxels"] == {roi: int(m.sum()) for roi, m in masks.items()}


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory):
    """Two subjects; each "synthetic" DTI is its acquired DTI with extra noise and a 5 % MD-like scaling
    of the weighted signals, written as a synthesize output folder."""
    root = tmp_path_factory.mktemp("evaluation")
    write_cohort(root / "cohort", 2, "sampled", seed=5, grid=GRID)
    rng = np.random.default_rng(0)
    for subject in ("sub-001", "sub-002"):
        dti = load_dwi(root / "cohort" / subject / "dwi" / f"{subject}_acq-dti6_dwi.nii.gz")
        data = dti.data.copy()
        data[..., 1:] *= 0.95
        data[..., 1:] += rng.normal(0, 3.0, data[..., 1:].shape).astype(np.float32)
        (root / "synthetic" / subject).mkdir(parents=True)
        save_dwi(root / "synthetic" / subject / "synthetic_dti.nii.gz",
                 DWI(np.clip(data, 0, None), dti.affine, dti.bvals, dti.gradients))
    return root


def _pngs(page):
    from matplotlib import image

    return [image.imread(io.BytesIO(base64.b64decode(data)), format="png")
            for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_cohort_report_holds_every_roi_and_map_with_real_figures(small_cohort, tmp_path):
    out = tmp_path / "evaluation"
    # realism autoencoders of 10 epochs (50 by default): the index's layout and determinism, not its accuracy
    written, summary = run_evaluation(small_cohort / "cohort", small_cohort / "synthetic", out, jobs=2, realism_epochs=10)
    names = {p.relative_to(out).as_posix() for p in written}
    assert {"table2.csv", "roi_statistics.csv", "bland_altman.csv", "similarity.csv", "evaluation.json",
            "report.html", "figures/bland_altman.png", "figures/montage_sub-001.png",
            "figures/montage_sub-002.png"} <= names
    with open(out / "table2.csv") as f:
        table = list(csv.DictReader(f))
    assert {(r["roi"], r["map"]) for r in table} == {(roi, m) for roi in DEFAULT_ROIS for m in MAPS}
    for row in table:
        assert row["subjects"] == "2" and not row["flag"], row
        assert float(row["original_mean"]) > 0 and 0 <= float(row["p_mean"]) <= 1
    md = {r["roi"]: r for r in table if r["map"] == "md"}
    # the weighted signals were scaled by 0.95, so every MD rises by -ln(0.95) / b = 5.1e-5 mm^2/s
    for roi, row in md.items():
        assert float(row["synthetic_mean"]) - float(row["original_mean"]) == pytest.approx(0.0513, abs=0.01), roi
    ba = [r for r in summary["bland_altman"] if r["map"] == "md" and r["roi"] == "all ROIs"][0]
    assert ba["n"] == 2 * len(DEFAULT_ROIS) and ba["bias"] == pytest.approx(0.0513, abs=0.01)
    page = (out / "report.html").read_text()
    for roi in DEFAULT_ROIS:
        for name in MAPS:
            assert re.search(rf"<td>{roi.replace('_', ' ')}</td><td>{name.upper()}</td>", page), (roi, name)
    images = _pngs(page)
    assert len(images) == 3  # Bland-Altman grid and two montages
    for image in images:
        assert image.shape[0] > 400 and image.shape[1] > 600
        grey = image[..., :3].mean(axis=-1)
        assert grey.std() > 0.1 and (grey < 0.5).mean() > 0.02  # drawn content, not a blank canvas
    similarity = summary["similarity"]
    assert len(similarity) == 12 and all(r["angle_degrees"] == 0 for r in similarity)
    assert all(20 < r["psnr_db"] < 60 and 0.5 < r["ssim"] < 1 for r in similarity)
    realism = summary["realism_index"]
    assert not realism["flag"] and [r["subject"] for r in realism["rows"]] == ["sub-001", "sub-002", "all subjects"]
    assert realism["rows"][-1]["voxels"] == realism["rows"][0]["voxels"] + realism["rows"][1]["voxels"] > 1000
    assert [t["held_out_fold"] for t in realism["training"]] == [0, 1]
    assert all(np.isfinite(r["realism_index"]) and r["realism_index"] > 0 for r in realism["rows"])
    with open(out / "realism_index.csv") as f:
        assert [r["subject"] for r in csv.DictReader(f)] == ["sub-001", "sub-002", "all subjects"]
    assert "<h2>Realism index" in page and "<td>all subjects</td>" in page
    serial, _ = run_evaluation(small_cohort / "cohort", small_cohort / "synthetic", tmp_path / "serial", jobs=1,
                               realism_epochs=10)
    assert (tmp_path / "serial" / "table2.csv").read_text() == (out / "table2.csv").read_text()
    assert (tmp_path / "serial" / "realism_index.csv").read_text() == (out / "realism_index.csv").read_text()


def test_a_synthetic_dti_of_another_subject_is_refused(small_cohort, tmp_path):
    original = small_cohort / "cohort" / "sub-001" / "dwi" / "sub-001_acq-dti6_dwi.nii.gz"
    with pytest.raises(InputError, match="correlation"):
        run_evaluation(original, small_cohort / "synthetic" / "sub-002", tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _user_atlas(folder, table_rows, blob_outside=False):
    """A user atlas made from the phantom atlas: its b=0 template, its labels, and a label table."""
    atlas = embedded_atlas(GRID)
    labels = atlas.labels.copy()
    if blob_outside:  # a labelled region in the air in front of the head: empty after registration
        labels[28:34, -4:, 16:20] = 40
    folder.mkdir()
    save_volume(folder / "atlas_dseg.nii.gz", labels.astype(np.uint8), atlas.affine)
    save_volume(folder / "atlas_b0.nii.gz", atlas.b0, atlas.affine)
    (folder / "labels.tsv").write_text("index\tname\troi\n" + "".join(f"{r}\n" for r in table_rows))
    return folder


def test_atlas_table_missing_a_requested_roi_is_refused(small_cohort, tmp_path):
    atlas = _user_atlas(tmp_path / "atlas", ["9\tsplenium\tsplenium_corpus_callosum"])
    with pytest.raises(InputError, match="a row for the ROI .thalamus."):
        run_evaluation(small_cohort / "cohort", small_cohort / "synthetic", tmp_path / "out", [atlas],
                       ["splenium_corpus_callosum", "thalamus"])


def test_an_roi_empty_after_registration_is_flagged_not_nan(small_cohort, tmp_path):
    atlas = _user_atlas(tmp_path / "atlas", ["9\tsplenium\tsplenium_corpus_callosum", "40\tnowhere\tnowhere"],
                        blob_outside=True)
    _, summary = run_evaluation(small_cohort / "cohort", small_cohort / "synthetic", tmp_path / "out", [atlas],
                                ["splenium_corpus_callosum", "nowhere"], realism_epochs=0)
    rows = {r["roi"]: r for r in summary["table2"] if r["map"] == "fa"}
    assert rows["nowhere"]["subjects"] == 0 and "empty" in rows["nowhere"]["flag"] and "sub-001" in rows["nowhere"]["flag"]
    assert rows["splenium_corpus_callosum"]["subjects"] == 2 and not rows["splenium_corpus_callosum"]["flag"]
    with open(tmp_path / "out" / "roi_statistics.csv") as f:
        flagged = [r for r in csv.DictReader(f) if r["roi"] == "nowhere"]
    assert flagged and all(r["flag"] == "empty ROI after registration" and r["mean"] == "" for r in flagged)
    assert "flagged row" in (tmp_path / "out" / "report.html").read_text()


def test_shipped_jhu_label_table_has_the_documented_labels():
    from DTISynthLib.evaluation.atlas import RESOURCES_ATLASES, read_label_table

    table = read_label_table(RESOURCES_ATLASES / "jhu_icbm_dti_81_labels.tsv")
    rois = {}
    for label, (_, roi) in table.items():
        rois.setdefault(roi, []).append(label)
    assert rois == {"splenium_corpus_callosum": [5], "posterior_limb_internal_capsule": [19, 20],
                    "posterior_thalamic_radiation": [29, 30]}


def test_label_table_without_its_header_is_refused(tmp_path):
    from DTISynthLib.evaluation.atlas import read_label_table

    (tmp_path / "labels.tsv").write_text("5\tsplenium\tsplenium_corpus_callosum\n")
    with pytest.raises(InputError, match="header row"):
        read_label_table(tmp_path / "labels.tsv")


def test_a_synthetic_dti_on_another_grid_is_registered_onto_the_original(small_cohort, tmp_path):
    from DTISynthLib.registration.rigid import resample_rigid
    from DTISynthLib.simulation.cohort import rigid_matrix

    original = small_cohort / "cohort" / "sub-001" / "dwi" / "sub-001_acq-dti6_dwi.nii.gz"
    dti = load_dwi(original)
    affine = dti.affine.copy()
    affine[:3, 3] += [3.7, -2.1, 1.3]  # another field of view, and the head turned by 2 degrees
    moved = resample_rigid(dti.data, dti.affine, affine, (60, 62, 36), rigid_matrix((0, 0, 2), (0, 0, 0)))
    (tmp_path / "synthetic").mkdir()
    save_dwi(tmp_path / "synthetic" / "synthetic_dti.nii.gz", DWI(moved, affine, dti.bvals, dti.gradients))
    _, summary = run_evaluation(original, tmp_path / "synthetic", tmp_path / "out", realism_epochs=0)
    report = summary["subject_reports"]["sub-001"]
    assert report["same_grid"] is False and report["b0_correlation"] > 0.95
    md = {r["roi"]: r["synthetic_mean"] / r["original_mean"] - 1 for r in summary["table2"] if r["map"] == "md"}
    # Two trilinear resamplings of 3.4 mm voxels mix in neighbouring tissue: away from the ventricles
    # MD holds (measured +1.4 % lentiform, +0.2 % PLIC); beside them CSF raises it (PTR +7.7 %,
    # splenium +15 %). Evaluate on the original's grid (synthesize with --b0) where possible.
    assert abs(md["lentiform_nucleus"]) < 0.03 and abs(md["posterior_limb_internal_capsule"]) < 0.03, md
    assert max(np.abs(list(md.values()))) < 0.25, md
    assert "1 subject" in summary["table2"][0]["flag"]  # no t-test with one subject, and it says so


def test_the_v1_calibration_table_counts_white_matter_by_confidence_and_measures_its_error():
    """Voxels whose confidence is high have the true V1, the others a V1 tilted by a known angle: each
    bin's share, mean confidence, median angle and share within the angle are what was built."""
    from DTISynthLib.evaluation.calibration import v1_calibration

    rng = np.random.default_rng(0)
    n = 1000
    reference = np.tile([1.0, 0.0, 0.0], (n, 1))
    confidence = np.r_[np.full(600, 0.95), np.full(300, 0.55), np.full(100, 0.1)]
    tilt = np.radians(np.r_[np.full(600, 5.0), np.full(300, 30.0), np.full(100, 80.0)])
    v1 = np.stack([np.cos(tilt), np.sin(tilt), np.zeros(n)], -1) * rng.choice([-1, 1], (n, 1))  # signs are arbitrary
    white = np.ones(n, bool)
    white[:50] = False  # not white matter: not counted
    rows, summary = v1_calibration(confidence, v1, reference, white, 20.0)
    by_low = {r["low"]: r for r in rows}
    assert by_low[0.9]["voxels"] == 550 and by_low[0.5]["voxels"] == 300 and by_low[0.0]["voxels"] == 100
    assert by_low[0.9]["median_angle_degrees"] == pytest.approx(5.0) and by_low[0.9]["within_angle_share"] == 1.0
    assert by_low[0.5]["median_angle_degrees"] == pytest.approx(30.0) and by_low[0.5]["within_angle_share"] == 0.0
    assert by_low[0.9]["wm_share"] == pytest.approx(550 / 950) and np.isnan(by_low[0.7]["median_angle_degrees"])
    assert summary["confident_share"] == pytest.approx(550 / 950) and summary["confident_median_angle_degrees"] == pytest.approx(5.0)
    expected_brier = (550 * 0.05**2 + 300 * 0.55**2 + 100 * 0.1**2) / 950
    assert summary["brier"] == pytest.approx(expected_brier)
