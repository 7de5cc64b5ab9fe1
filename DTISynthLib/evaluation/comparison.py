"""Evaluation: synthetic against acquired ("original") DTI, as the seed paper validated it.

Per subject: both DTIs fitted the same way (OLS, one brain mask from the original b=0), FA / MD /
AD / RD; atlas ROIs placed on the original (atlas.py); per ROI and map the mean, SD and SNR (mean /
SD over the ROI's voxels, the paper's definition); PSNR and SSIM of each synthetic direction against
the original direction nearest to it, inside the brain mask. Across subjects: paired t-tests of the
ROI means and of the SNRs (scipy), and Bland-Altman (synthetic - original) of ROI means per map, per
ROI and pooled over subjects x ROIs.

Units: FA unitless; MD, AD, RD stored in mm^2/s and tabulated in 10^-3 mm^2/s (the paper's unit);
PSNR in dB with the original direction's brain maximum as the peak.
"""

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.json_values import without_nan
from ..core.output_layout import (
    DTI6,
    EvaluationOutput,
    SynthesisOutput,
    acquisition_name,
    acquisition_subject,
)
from ..core.progress import NullReporter
from ..core.tables import csv_text
from .statistics import bland_altman, paired_t_test, roi_statistics

CSV_FLOATS = ".6g"  # the tables' numbers: 6 significant digits

MAPS = ("fa", "md", "ad", "rd")
TABLE_SCALE = {"fa": (1.0, "1"), "md": (1e3, "1e-3 mm^2/s"), "ad": (1e3, "1e-3 mm^2/s"), "rd": (1e3, "1e-3 mm^2/s")}
SAME_SUBJECT_MIN_CORRELATION = 0.9  # smoothed b=0 of original and synthetic, inside the brain
MIN_BRAIN_COVERAGE = 0.5
DIRECTION_WARNING_DEGREES = 10.0


# ----------------------------------------------------------------------------- one subject

@dataclass
class SubjectResult:
    subject: str
    roi_rows: list  # dicts: subject, roi, map, source, voxels, mean, sd, snr, flag
    similarity_rows: list  # dicts: subject, direction, gradient angle, psnr_db, ssim
    report: dict
    attenuations: object = None  # realism.dti_index.SubjectAttenuations, None when directions do not pair
    gradient_table: tuple = None  # (bvals, RAS gradients) of the original's weighted volumes
    calibration: tuple = None  # (rows, summary) of calibration.v1_calibration; None without maps/v1_confidence


def _load_synthetic(path):
    path = Path(path)
    from ..io.files import load_dwi

    if path.is_dir():
        found = SynthesisOutput(path).find_dti()
        if found is None:
            raise InputError(path, f"a `dtisynth synthesize` output folder ({SynthesisOutput(path).dti_nifti.name})",
                             "no synthetic_dti")
        path = found
    return load_dwi(path)


def align_synthetic(original, synthetic, synthetic_source, brain):
    """The synthetic DTI on the original's grid: as is when the grids agree, else rigidly registered
    (b=0 to b=0) and resampled. Refuses a synthetic DTI whose b=0 does not match the original's
    (smoothed, inside the brain where both have data, below SAME_SUBJECT_MIN_CORRELATION: another
    subject or scan) or that covers less than MIN_BRAIN_COVERAGE of the original's brain.
    brain: the original's brain mask. Returns (data (x, y, z, n) on the original grid, covered
    (x, y, z) bool, report)."""
    from scipy import ndimage

    from ..registration.rigid import register_rigid, resample_rigid

    b0_orig = original.mean_b0()
    same_grid = synthetic.data.shape[:3] == original.data.shape[:3] and \
        np.allclose(synthetic.affine, original.affine, atol=1e-3)
    report = {"same_grid": bool(same_grid)}
    data = synthetic.data
    covered = np.ones(b0_orig.shape, bool)
    if not same_grid:
        rigid = register_rigid(b0_orig, original.affine, synthetic.mean_b0(), synthetic.affine)
        data = resample_rigid(synthetic.data, synthetic.affine, original.affine, original.data.shape, rigid.matrix)
        ones = np.ones(synthetic.data.shape[:3], np.float32)
        covered = resample_rigid(ones, synthetic.affine, original.affine, original.data.shape, rigid.matrix) > 0.999
        report["registration_matrix_ras"] = rigid.matrix.round(6).tolist()
    b0_syn = data[..., synthetic.is_b0].mean(axis=-1)
    coverage = float((brain & covered).sum() / max(1, brain.sum()))
    report["brain_coverage"] = round(coverage, 4)
    if coverage < MIN_BRAIN_COVERAGE:
        raise InputError(synthetic_source, f"a synthetic DTI covering at least {MIN_BRAIN_COVERAGE:.0%} of the "
                         "original's brain", f"{coverage:.0%}")
    # Smoothed (1 voxel) so that noise and the resampling's smoothing do not count: the same subject
    # on another grid gives 0.96, another phantom subject even after rigid registration 0.66.
    inside = brain & covered
    smooth_orig, smooth_syn = ndimage.gaussian_filter(b0_orig, 1.0), ndimage.gaussian_filter(b0_syn, 1.0)
    correlation = float(np.corrcoef(smooth_orig[inside], smooth_syn[inside])[0, 1]) if inside.sum() > 2 else float("nan")
    report["b0_correlation"] = round(correlation, 4)
    if not correlation >= SAME_SUBJECT_MIN_CORRELATION:
        raise InputError(synthetic_source, f"a synthetic DTI of the original's subject and scan (b=0 correlation >= "
                         f"{SAME_SUBJECT_MIN_CORRELATION} inside the brain{'' if same_grid else ' after registration'})",
                         f"correlation {correlation:.3f}")
    return data, covered, report


def match_directions(original, synthetic):
    """For each synthetic weighted volume, the original weighted volume nearest in direction (|cos|),
    and the angle between them in degrees. Gradients are RAS unit vectors on both sides."""
    syn_idx, orig_idx = np.flatnonzero(~synthetic.is_b0), np.flatnonzero(~original.is_b0)
    cosines = np.abs(synthetic.gradients[syn_idx] @ original.gradients[orig_idx].T)
    best = np.argmax(cosines, axis=1)
    angles = np.degrees(np.arccos(np.clip(cosines[np.arange(len(syn_idx)), best], 0, 1)))
    return [(int(s), int(orig_idx[b]), float(a)) for s, b, a in zip(syn_idx, best, angles)]


def paired_columns(original, synthetic):
    """For each of the original's weighted volumes (in order), the synthetic volume of the same
    direction, or None unless the two pair one to one within DIRECTION_WARNING_DEGREES."""
    matches = match_directions(original, synthetic)
    by_original = {o: s for s, o, a in matches if a <= DIRECTION_WARNING_DEGREES}
    weighted = np.flatnonzero(~original.is_b0)
    if len(matches) != weighted.size or set(by_original) != set(weighted.tolist()):
        return None
    return [by_original[o] for o in weighted]


@dataclass
class SubjectMaps:
    """Both DTIs of one subject on the original's grid, fitted alike: maps {"original" / "synthetic":
    {fa, md, ad, rd, color}} (MD / AD / RD in mm^2/s), the brain mask of the original b=0 where both
    have data, the DWIs and the alignment report."""

    original: object
    synthetic: object
    maps: dict
    mask: np.ndarray
    report: dict


def subject_maps(original_path, synthetic_path):
    """Load, check and align one subject's original and synthetic DTI (align_synthetic), and fit both
    the same way (OLS, one mask). What `evaluate` and the reader studies compare."""
    from dataclasses import replace

    from ..core.dwi import check_dwi
    from ..fit.brain_mask import brain_mask
    from ..fit.tensor_fit import fit_tensors
    from ..fit.tensor_maps import compute_maps
    from ..io.files import load_dwi

    original = check_dwi(load_dwi(original_path))
    synthetic = check_dwi(_load_synthetic(synthetic_path))
    for dwi, path in ((original, original_path), (synthetic, synthetic_path)):
        if (~dwi.is_b0).sum() < 6:
            raise InputError(path, "a DTI with b=0 and at least six diffusion directions", f"{(~dwi.is_b0).sum()}")
    brain = brain_mask(original.mean_b0())
    data, covered, report = align_synthetic(original, synthetic, synthetic_path, brain)
    synthetic = replace(synthetic, data=data, affine=original.affine)
    mask = brain & covered  # statistics only where both DTIs have data
    maps = {}
    for source, dwi in (("original", original), ("synthetic", synthetic)):
        fit = fit_tensors(dwi, mask, "ols")
        maps[source] = compute_maps(fit.tensor, fit.mask, MAPS + ("color", "v1"), policy="clip")
    return SubjectMaps(original, synthetic, maps, mask, report)


def synthetic_confidence(synthetic_path, compared):
    """(v1_confidence on the original's grid (x, y, z), its angle in degrees) from the synthesize folder of
    `synthetic_path` (maps/v1_confidence and synthesis.json), carried as align_synthetic carried the DTI;
    None when the synthesis wrote none (kinds without a sign classification)."""
    from ..io.files import load_volume
    from ..registration.rigid import resample_rigid

    folder = Path(synthetic_path)
    folder = folder if folder.is_dir() else folder.parent
    layout = SynthesisOutput(folder)
    path = layout.maps.map("v1_confidence")
    if not path.exists():
        return None
    confidence, affine = load_volume(path)
    angle = json.loads(layout.report.read_text()).get("v1_confidence_angle_degrees") if layout.report.exists() else None
    if angle is None:
        raise InputError(layout.report, "synthesis.json with v1_confidence_angle_degrees beside maps/v1_confidence",
                         "none")
    if not compared.report["same_grid"]:
        matrix = np.array(compared.report["registration_matrix_ras"])
        confidence = resample_rigid(confidence, affine, compared.original.affine, compared.original.data.shape[:3],
                                    matrix)
    return confidence, float(angle)


def evaluate_subject(subject, original_path, synthetic_path, atlases, rois, out_dir=None):
    """Evaluate one subject (see the module docstring). With `out_dir`, writes its montage and its ROIs
    (EvaluationOutput.montage / roi_labels: label k = the k-th ROI, on the original's grid, inside the
    evaluated brain mask)."""
    from .atlas import check_rois, place_rois
    from ..core.image_metrics import psnr, ssim

    owners = check_rois(atlases, rois)
    compared = subject_maps(original_path, synthetic_path)
    original, synthetic, maps, mask, report = (compared.original, compared.synthetic, compared.maps, compared.mask,
                                               compared.report)
    b0 = original.mean_b0()
    roi_masks, placements = {}, []
    for atlas in {id(a): a for a in owners.values()}.values():
        wanted = [r for r, a in owners.items() if a is atlas]
        masks, placement = place_rois(atlas, b0, maps["original"]["fa"], original.affine, wanted)
        roi_masks.update(masks)
        placements.append(placement)
    report["atlases"] = placements
    rows = []
    for roi in rois:
        for name in MAPS:
            for source in ("original", "synthetic"):
                voxels, mean, sd, snr = roi_statistics(maps[source][name], roi_masks[roi] & mask)
                flag = "" if voxels >= 2 else ("empty ROI after registration" if voxels == 0 else "one voxel")
                rows.append({"subject": subject, "roi": roi, "map": name, "source": source, "voxels": voxels,
                             "mean": mean, "sd": sd, "snr": snr, "flag": flag})
    similarity = []
    slices = lambda v: np.moveaxis(v, 2, 0)  # noqa: E731  axial slices (z, x, y)
    for syn_index, orig_index, angle in match_directions(original, synthetic):
        reference, test = original.data[..., orig_index], synthetic.data[..., syn_index]
        peak = float(reference[mask].max()) if mask.any() else 1.0
        similarity.append({"subject": subject, "direction": syn_index, "original_volume": orig_index,
                           "angle_degrees": round(angle, 2), "psnr_db": psnr(reference, test, peak, mask),
                           "ssim": ssim(slices(reference), slices(test), peak, slices(mask)),
                           "flag": "" if angle <= DIRECTION_WARNING_DEGREES else
                           f"nearest original direction {angle:.1f} degrees away"})
    attenuations = None
    columns = paired_columns(original, synthetic)
    if columns is not None:
        from ..realism.dti_index import subject_attenuations

        b_original, b_synthetic = original.bvals[~original.is_b0].max(), synthetic.bvals[~synthetic.is_b0].max()
        attenuations = subject_attenuations(subject, original, synthetic.data, synthetic.is_b0, columns, mask,
                                            b_original / b_synthetic)
    weighted = ~original.is_b0
    gradient_table = (original.bvals[weighted], original.gradients[weighted])
    calibration = None
    confidence = synthetic_confidence(synthetic_path, compared)
    if confidence is not None:
        from .calibration import WM_FA, v1_calibration

        white_matter = mask & (maps["original"]["fa"] > WM_FA)
        calibration = v1_calibration(confidence[0], maps["synthetic"]["v1"], maps["original"]["v1"], white_matter,
                                     confidence[1])
    if out_dir is not None:
        from ..io.files import save_volume
        from .report import write_subject_montage

        layout = EvaluationOutput(out_dir)
        report["montage"] = str(write_subject_montage(layout.montage(subject), subject, maps["original"],
                                                      maps["synthetic"], original.affine))
        labels = np.zeros(mask.shape, np.uint8)
        for index, roi in enumerate(rois, start=1):
            labels[roi_masks[roi] & mask] = index
        layout.rois.mkdir(exist_ok=True)
        report["rois"] = str(save_volume(layout.roi_labels(subject), labels, original.affine)[0])
    return SubjectResult(subject, rows, similarity, report, attenuations, gradient_table, calibration)


# ----------------------------------------------------------------------------- cohort

def _mean(values):
    return float(np.mean(values)) if values.size else float("nan")


def _sd(values):
    return float(np.std(values, ddof=1)) if values.size > 1 else float("nan")


def cohort_tables(results, rois):
    """Table 2 rows (per ROI and map: mean +- SD across subjects of the ROI means, paired t-test p;
    SNR likewise) and Bland-Altman rows (per map and ROI, and per map pooled over ROIs)."""
    by_key = {}
    for result in results:
        for row in result.roi_rows:
            by_key.setdefault((row["roi"], row["map"]), {}).setdefault(row["subject"], {})[row["source"]] = row
    table, agreement = [], []
    for name in MAPS:
        scale, unit = TABLE_SCALE[name]
        pooled_orig, pooled_syn, pooled_subjects = [], [], []
        for roi in rois:
            subjects = by_key.get((roi, name), {})
            usable = [s for s, pair in sorted(subjects.items())
                      if not pair["original"]["flag"] and not pair["synthetic"]["flag"]]
            skipped = sorted(set(subjects) - set(usable))
            orig = np.array([subjects[s]["original"]["mean"] for s in usable]) * scale
            syn = np.array([subjects[s]["synthetic"]["mean"] for s in usable]) * scale
            snr_o = np.array([subjects[s]["original"]["snr"] for s in usable])
            snr_s = np.array([subjects[s]["synthetic"]["snr"] for s in usable])
            _, p_mean, n = paired_t_test(orig, syn)
            _, p_snr, _ = paired_t_test(snr_o, snr_s)
            flags = []
            if skipped:
                flags.append(f"left out (empty or one-voxel ROI): {', '.join(skipped)}")
            if n < 2:
                flags.append(f"no t-test with {n} subject{'s' if n != 1 else ''}")
            table.append({"roi": roi, "map": name, "unit": unit, "subjects": n,
                          "original_mean": _mean(orig), "original_sd": _sd(orig),
                          "synthetic_mean": _mean(syn), "synthetic_sd": _sd(syn), "p_mean": p_mean,
                          "original_snr": _mean(snr_o), "original_snr_sd": _sd(snr_o),
                          "synthetic_snr": _mean(snr_s), "synthetic_snr_sd": _sd(snr_s), "p_snr": p_snr,
                          "flag": "; ".join(flags)})
            ba = bland_altman(orig, syn)
            agreement.append({"map": name, "roi": roi, "unit": unit, "subjects": usable, **ba})
            pooled_orig += orig.tolist()
            pooled_syn += syn.tolist()
            pooled_subjects += usable
        ba = bland_altman(np.array(pooled_orig), np.array(pooled_syn))
        agreement.append({"map": name, "roi": "all ROIs", "unit": unit, "subjects": pooled_subjects, **ba})
    return table, agreement


def find_subjects(original, synthetic):
    """[(subject, original DTI path, synthetic folder)]: one subject when `original` is a file, every
    <subject>_acq-dti6_dwi under `original` (a cohort folder) with `synthetic`/<subject> otherwise."""
    original, synthetic = Path(original), Path(synthetic)
    if not original.exists():
        raise InputError(original, "an original DTI file or a cohort folder", "no such file or folder")
    if original.is_file():
        name = acquisition_subject(original.name) or original.name.split(".")[0]
        return [(name, original, synthetic)]
    files = sorted(p for p in original.rglob(acquisition_name("*", DTI6, ".*"))
                   if p.name.endswith((".nii.gz", ".nii", ".nrrd")))
    if not files:
        raise InputError(original, "<subject>_acq-dti6_dwi files (a `dtisynth simulate cohort` layout)", "none")
    subjects = [(acquisition_subject(p.name), p, synthetic / acquisition_subject(p.name)) for p in files]
    missing = [s for s, _, folder in subjects if not folder.exists()]
    if missing:
        raise InputError(synthetic, f"one synthesize output folder per subject ({', '.join(s for s, _, _ in subjects)})",
                         f"none for {', '.join(missing)}")
    return subjects


REALISM_DEFINITION = ("reconstruction error of held-out acquired DTIs by an autoencoder trained on synthetic DTIs / "
                      "by one trained on acquired DTIs (attenuation mean abs error; paper 2's test, "
                      "realism.dti_index): about 1 or below, as real as acquired; above 1, less")


CALIBRATION_DEFINITION = (
    "the synthetic DTI's maps/v1_confidence against the observed angle between synthetic and original V1 in white "
    "matter (original FA > 0.3), per confidence bin: share of white-matter voxels, mean confidence, median angle, "
    "share within the confidence's angle (calibrated: about the mean confidence; evaluation.calibration)")


def realism_rows(results, n_train, epochs, seed=0):
    """The synthetic DTIs' realism index (realism.dti_index) over the subjects: (rows, training
    record, flag: why there is none, or "")."""
    from ..realism.dti_index import dti_realism_index

    unpaired = [r.subject for r in results if r.attenuations is None]
    if unpaired:
        return [], [], (f"no realism index: the synthetic directions do not pair one to one with the original's "
                        f"within {DIRECTION_WARNING_DEGREES:g} degrees for {', '.join(unpaired)}")
    bvals, gradients = results[0].gradient_table
    for r in results[1:]:
        b, g = r.gradient_table
        if b.shape != bvals.shape or np.abs(b - bvals).max() > 0.05 * bvals.max() \
                or np.abs((g * gradients).sum(axis=1)).min() < np.cos(np.radians(DIRECTION_WARNING_DEGREES)):
            return [], [], (f"no realism index: {r.subject}'s original DTI has another gradient table than "
                            f"{results[0].subject}'s")
    rows, training = dti_realism_index([r.attenuations for r in results], bvals, gradients, n_train, epochs, seed)
    return rows, training, "" if rows else "no realism index: too few brain voxels for two folds"


def run_evaluation(original, synthetic, out_dir, atlas_dirs=(), rois=None, jobs=1, reporter=NullReporter(),
                   realism_voxels=250_000, realism_epochs=50):
    """The `dtisynth evaluate` job: tables, figures and the HTML report (EvaluationOutput), written
    atomically. realism_epochs 0: no realism index."""
    from ..core.atomic import atomic_output_dir, write_text_atomic
    from .atlas import DEFAULT_ROIS, check_rois, embedded_atlas, load_atlas
    from .report import write_bland_altman_figure, write_html_report

    progress = reporter.progress
    rois = tuple(rois or DEFAULT_ROIS)
    subjects = find_subjects(original, synthetic)
    # Atlases in the order given ("embedded" names the phantom atlas); none given: the phantom atlas.
    # Each ROI comes from the first atlas whose label table has it; one that none has is refused.
    atlases = [embedded_atlas() if str(d) == "embedded" else load_atlas(d) for d in (atlas_dirs or ["embedded"])]
    check_rois(atlases, rois)
    results = []
    with atomic_output_dir(out_dir) as staging:
        layout = EvaluationOutput(staging)
        layout.figures.mkdir()
        layout.rois.mkdir()
        progress("evaluate", 0.0, f"{len(subjects)} subject{'s' if len(subjects) > 1 else ''}, {len(rois)} ROIs")
        if jobs > 1 and len(subjects) > 1:
            # spawn, not fork: the parent may hold torch's OpenMP pool and other threads (the demo)
            with ProcessPoolExecutor(min(jobs, len(subjects)), mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(evaluate_subject, s, o, y, atlases, rois, staging) for s, o, y in subjects]
                for done, future in enumerate(as_completed(futures), start=1):
                    results.append(future.result())
                    progress("evaluate", done / len(subjects), results[-1].subject)
        else:
            for done, (s, o, y) in enumerate(subjects, start=1):
                results.append(evaluate_subject(s, o, y, atlases, rois, staging))
                progress("evaluate", done / len(subjects), s)
        results.sort(key=lambda r: r.subject)
        table, agreement = cohort_tables(results, rois)
        roi_rows = [r for result in results for r in result.roi_rows]
        similarity = [r for result in results for r in result.similarity_rows]
        write_text_atomic(layout.roi_statistics, csv_text(roi_rows, list(roi_rows[0]), float_format=CSV_FLOATS))
        write_text_atomic(layout.roi_comparison, csv_text(table, list(table[0]), float_format=CSV_FLOATS))
        ba_columns = ["map", "roi", "unit", "n", "bias", "sd", "lower", "upper"]
        write_text_atomic(layout.bland_altman, csv_text(agreement, ba_columns, float_format=CSV_FLOATS))
        write_text_atomic(layout.similarity, csv_text(similarity, list(similarity[0]), float_format=CSV_FLOATS))
        realism = {"definition": REALISM_DEFINITION, "rows": [], "training": [], "flag": "not computed"}
        if realism_epochs:
            progress("realism", 0.0, "autoencoders on acquired and on synthetic DTIs")
            realism["rows"], realism["training"], realism["flag"] = realism_rows(results, realism_voxels,
                                                                                 realism_epochs)
            if realism["rows"]:
                write_text_atomic(layout.realism_index,
                                  csv_text(realism["rows"], list(realism["rows"][0]), float_format=CSV_FLOATS))
            progress("realism", 1.0, realism["flag"] or "realism index " + ", ".join(
                f"{r['subject']} {r['realism_index']:.2f}" for r in realism["rows"]))
        calibrated = [r for r in results if r.calibration is not None]
        calibration = {"definition": CALIBRATION_DEFINITION, "rows": [], "summary": {}}
        if calibrated:
            from .calibration import write_calibration_figure

            calibration["rows"] = [dict(subject=r.subject, **row) for r in calibrated for row in r.calibration[0]]
            calibration["summary"] = {r.subject: r.calibration[1] for r in calibrated}
            write_text_atomic(layout.v1_calibration,
                              csv_text(calibration["rows"], list(calibration["rows"][0]), float_format=CSV_FLOATS))
            write_calibration_figure(layout.v1_calibration_figure, {r.subject: r.calibration[0] for r in calibrated},
                                     calibrated[0].calibration[1]["angle_degrees"])
        progress("report", 0.5, "figures and HTML")
        ba_figure = write_bland_altman_figure(layout.bland_altman_figure, agreement, rois)
        summary = {"subjects": [r.subject for r in results], "rois": list(rois), "maps": list(MAPS),
                   "units": {m: TABLE_SCALE[m][1] for m in MAPS}, "table2": table, "bland_altman": agreement,
                   "similarity": similarity, "realism_index": realism, "v1_calibration": calibration,
                   "subject_reports": {r.subject: r.report for r in results},
                   "roi_definition": "atlas ROIs restricted to the brain mask of the original b=0",
                   "snr_definition": "ROI mean / ROI SD over voxels (the seed paper's definition)"}
        for r in results:  # paths in the report relative to the output folder
            for key in ("montage", "rois"):
                r.report[key] = str(Path(r.report[key]).relative_to(staging))
        write_text_atomic(layout.roi_table,
                          "index\troi\n" + "".join(f"{i}\t{roi}\n" for i, roi in enumerate(rois, start=1)))
        write_text_atomic(layout.summary, json.dumps(without_nan(summary), indent=2, allow_nan=False) + "\n")
        write_html_report(layout.report, summary, ba_figure, [layout.montage(s) for s in summary["subjects"]],
                          layout.v1_calibration_figure)
        written = sorted(p.relative_to(staging) for p in staging.rglob("*") if p.is_file())
    progress("report", 1.0, f"{len(written)} files")
    return [Path(out_dir) / p for p in written], summary

