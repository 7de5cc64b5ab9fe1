"""Quality of synthetic DTIs against ground truth, through the real pipeline (registration to the
DTI's b=0, model grid, generator kind, assembly, tensor fit), on held-out phantom subjects and on the
shared real scans, against the acquired DTI and the diagonal physics baseline.

Data
- phantom: full-size subjects (128 x 128 x 76, SNR 30, re-posed, deformed, misregistered) from seeds
  disjoint from those of the cohorts that trained the shipped sets (checked). Truth: the apparent
  tensor of the noise-free DTI; the noise-free DTI signal for PSNR / SSIM against truth. Input: the
  3-direction DWI registered to the acquired DTI's b=0, as the seed paper did.
- real: every scan under ../shared/data/real with b=0 + >= 6 directions. Input and acquired DTI are
  the volumes nearest the axes and Siemens' 6 directions (`dtisynth pairs --mode nearest`); where
  those are refused (a direction > 30 degrees from its axis, two axes on one volume) the scan's tensor
  fit predicts both (`--mode tensor`, listed; no acquired row then). Truth is the IWLS fit of all the
  scan's volumes. An input at a b-value a package does not take is forced (`--force-b`: its
  attenuations converted to the package's b per voxel and direction, A^(b_model / b_scan), exact for
  mono-exponential decay; listed); the acquired DTI it is compared with is converted to the
  synthetic DTI's b the same way. Scans a scored package trained on (its manifest's training
  subjects, those it trained on and those that chose its model) count in "real (all)" only; the others
  also in "real (held out)", the honest figure.

DTIs: each model package (default: every shipped set but the baseline) with physics-consistent assembly and with
the networks' outputs as they are ("network": the paper's raw outputs for pix2pix, the denoised tensor for
tensor-unet), the diagonal baseline (Resources/Models/diagonal), the acquired DTI.

Metrics (per subject or scan, then the mean over them): FA mean abs error and bias in WM and GM; MD
median and mean relative error and the share of brain voxels with MD error > 50 % (where the true
MD exceeds 0.1e-3 mm^2/s); AD and RD bias in
WM (relative); median angle of the principal eigenvector where true FA > 0.4; PSNR / SSIM of the six
directions against the acquired DTI and (phantom) the noise-free truth signal; ROI SNR of FA (mean / SD
over the ROI, the seed paper's definition) synthetic / acquired over the paper's five ROIs (phantom).
WM / GM: tissue fractions > 0.8 (phantom); true FA > 0.3, and FA < 0.2 with MD < 1.5e-3 mm^2/s (real).

Oblique input (phantom): the cost of input directions up to 30 degrees from orthogonal (run_oblique).

Orientation confidence (packages that write maps/v1_confidence): its calibration against the true V1 in
WM per confidence bin (evaluation.calibration), printed per data group with each subject's share of WM
at confidence >= 0.8 and its median V1 angle there; one figure per group in the output folder.

    .venv/bin/python benchmarks/bench_quality.py [--subjects 4] [--models DIR ...] [--out DIR] [--grid 128x128x76]
        [--no-real] [--no-oblique] [--scans TEXT ...]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PHANTOM_SEEDS = (900001, 900002, 900003, 900004, 900005, 900006, 900007, 900008)
TRAINING_COHORTS = {"pix2pix": (7301, 20),  # Resources/Models/make_pix2pix_models.sh: --seed 7301 --n 20
                    "tensor-unet-signed": (7301, 20),  # the previous default set, the same cohort
                    "tensor-unet": (7301, 20)}  # Resources/Models/make_tensor_models.sh: --seed 7301 --n 20


class CachedPredictions:
    """The runner's predictions kept per network and slice set, so that one subject's network and
    physics assemblies run the networks once."""

    def __init__(self, generators):
        self.generators, self.cache = generators, {}

    def predict(self, key, inputs, slice_indices):
        index = (key, tuple(np.asarray(slice_indices).tolist()), inputs.shape)
        if index not in self.cache:
            self.cache[index] = self.generators.predict(key, inputs, slice_indices)
        return self.cache[index]


def tensor_and_maps(dwi, mask):
    from DTISynthLib.core.dwi import check_dwi
    from DTISynthLib.fit.tensor_fit import fit_tensors
    from DTISynthLib.fit.tensor_maps import compute_maps

    tensor = fit_tensors(check_dwi(dwi), mask, "ols").tensor
    return compute_maps(tensor, mask, ("fa", "md", "ad", "rd", "v1"), policy="clip")


def direction_similarity(test, reference, mask):
    """PSNR (dB, peak: the reference direction's brain maximum) and SSIM: their means over the
    directions, then each direction's [PSNR, SSIM]."""
    from DTISynthLib.core.image_metrics import psnr, ssim

    axial = lambda v: np.moveaxis(v, 2, 0)  # noqa: E731
    values = []
    for k in range(1, test.shape[-1]):
        ref, syn = reference[..., k], test[..., k]
        peak = float(ref[mask].max())
        values.append((psnr(ref, syn, peak, mask), ssim(axial(ref), axial(syn), peak, axial(mask))))
    return float(np.mean([v[0] for v in values])), float(np.mean([v[1] for v in values])), values


def fa_snr(fa, rois):
    """FA SNR (mean / SD over the voxels) of each ROI mask."""
    return np.array([fa[r].mean() / fa[r].std(ddof=1) for r in rois])


# FA bias per bin of the truth's FA over the brain (shrinkage toward the mean shows as + below, - above)
FA_BINS = (("fa_bias_below_02", 0.0, 0.2), ("fa_bias_02_04", 0.2, 0.4), ("fa_bias_above_04", 0.4, 1.01))
# The people of ../shared/data/real (its README): scans of one person are one row of the per-person table.
PEOPLE = (("Philips b2000", "dev_philips_achieva_b2000"), ("Siemens XA30", "dev_siemens_prisma_xa30_"),
          ("Philips b1000", "dev_philips_achieva_b1000"), ("UIH", "dev_uih_"), ("Siemens sagittal", "dev_siemens_prisma_sag_"),
          ("Canon", "dev_canon_"), ("Siemens 3 systems", "dev_siemens_trio"), ("Siemens 3 systems", "dev_siemens_prisma18_"),
          ("Siemens 3 systems", "dev_siemens_prisma_decub_"), ("ds000114", "dev_ds114_"))


def person_of(scan):
    return next((person for person, prefix in PEOPLE if scan.startswith(prefix)), scan)


def score(maps, truth, masks):
    """The metrics of one DTI's maps against the truth maps (module docstring)."""
    wm, gm, brain = masks["wm"], masks["gm"], masks["brain"]
    fa_error = maps["fa"] - truth["fa"]
    tissue = brain & (truth["md"] > 1e-4)  # MD relative errors where MD is tissue's, not noise's
    md_error = np.abs(maps["md"][tissue] - truth["md"][tissue]) / truth["md"][tissue]
    strong = brain & (truth["fa"] > 0.4)
    cosine = np.abs((maps["v1"][strong] * truth["v1"][strong]).sum(-1)).clip(0, 1)
    bins = {key: brain & (truth["fa"] >= low) & (truth["fa"] < high) for key, low, high in FA_BINS}
    # the same bins of the synthetic FA: near 0 there, the map is calibrated (E[truth | shown] = shown) and the
    # bias per truth bin is regression to the mean of what the input leaves undetermined
    bins.update({f"{key}_by_shown": brain & (maps["fa"] >= low) & (maps["fa"] < high) for key, low, high in FA_BINS})
    return {**{key: float(fa_error[inside].mean()) if inside.any() else float("nan") for key, inside in bins.items()},
            "fa_abs_wm": float(np.abs(fa_error[wm]).mean()), "fa_bias_wm": float(fa_error[wm].mean()),
            "fa_abs_gm": float(np.abs(fa_error[gm]).mean()), "fa_bias_gm": float(fa_error[gm].mean()),
            "md_rel_median": float(np.median(md_error)), "md_rel_mean": float(np.mean(md_error)),
            "md_over_50": float(np.mean(md_error > 0.5)),
            "ad_bias_wm": float(np.mean(maps["ad"][wm]) / np.mean(truth["ad"][wm]) - 1),
            "rd_bias_wm": float(np.mean(maps["rd"][wm]) / np.mean(truth["rd"][wm]) - 1),
            "v1_angle_median": float(np.degrees(np.median(np.arccos(cosine)))) if strong.any() else float("nan")}


def at_b(dwi, b):
    """The DWI with its diffusion-weighted volumes at b-value `b` (synthesis.pipeline.signals_at_b)."""
    from DTISynthLib.core.dwi import DWI
    from DTISynthLib.synthesis.pipeline import signals_at_b

    weighted = ~dwi.is_b0
    data = dwi.data.copy()
    data[..., weighted] = signals_at_b(dwi.data[..., weighted], dwi.mean_b0(), dwi.bvals[weighted], b)
    return DWI(data, dwi.affine, np.where(weighted, b, dwi.bvals), dwi.gradients, dwi.source)


def register_each_pair_once():
    """Every package and assembly synthesizes one DWI against one b=0, and the registration is
    deterministic (registration.rigid: one thread, a fixed sampling seed): the pipeline's register_rigid
    is computed once per pair of volumes and affines and reused (the same matrix, correlation and
    candidates; a subject's seven syntheses registered seven times before)."""
    import hashlib

    from DTISynthLib.synthesis import pipeline

    register, done = pipeline.register_rigid, {}

    def register_once(*volumes_and_affines):
        key = tuple((np.shape(a), hashlib.blake2b(np.ascontiguousarray(a, dtype=np.float64).tobytes(),
                                                  digest_size=16).digest()) for a in volumes_and_affines)
        if key not in done:
            done[key] = register(*volumes_and_affines)
        return done[key]

    pipeline.register_rigid = register_once


def synthesize(generators, manifest, dwi, b0, assembly, force_b):
    from DTISynthLib.synthesis.pipeline import synthesize_dwi

    return synthesize_dwi(dwi, generators, manifest, b0=b0, force_b=force_b, assembly=assembly)


def calibration(result, maps, truth, wm):
    """{rows, summary} of the synthesis's v1_confidence against the true V1 in white matter
    (evaluation.calibration), or None when the package writes no confidence."""
    from DTISynthLib.evaluation.calibration import v1_calibration

    if "v1_confidence" not in result.maps:
        return None
    rows, summary = v1_calibration(result.maps["v1_confidence"], maps["v1"], truth["v1"], wm,
                                   result.report["v1_confidence_angle_degrees"])
    return {"rows": rows, "summary": summary}


def packages(model_dirs):
    """[(label, runner, manifest, assemblies)] for each model package and the diagonal baseline."""
    from DTISynthLib.core.resources import RESOURCES
    from DTISynthLib.generators.runner import TorchGenerators

    rows = []
    for folder in model_dirs:
        runner = TorchGenerators(folder, "cpu", precision="fp32")
        rows.append((Path(folder).name, runner, runner.manifest, ("physics", "network")))
    diagonal = TorchGenerators(RESOURCES / "Models" / "diagonal", "cpu", precision="fp32")
    rows.append(("diagonal baseline", diagonal, diagonal.manifest, ("physics",)))
    return rows


def phantom_subjects(n, grid):
    from DTISynthLib.simulation.cohort import draw_subject, simulate_subject

    training = {int(np.random.default_rng([seed, i]).integers(0, 2**31 - 1))
                for seed, n in TRAINING_COHORTS.values() for i in range(n)}
    assert not training & set(PHANTOM_SEEDS), "benchmark seeds must be disjoint from the shipped sets' cohorts"
    for i, seed in enumerate(PHANTOM_SEEDS[:n]):
        params = draw_subject(f"bench-{i + 1:02d}", seed)
        yield params.subject_id, simulate_subject(params, "sampled", grid=grid), \
            simulate_subject(params, "sampled", grid=grid, noise=False)


def run_phantom(rows, n, grid, results, log, oblique=True):
    from DTISynthLib.core.dwi import check_dwi
    from DTISynthLib.fit.tensor_maps import compute_maps
    from DTISynthLib.simulation.brain_phantom import ROI_GROUPS

    for name, subject, clean in phantom_subjects(n, grid):
        start = time.perf_counter()
        masks = {"brain": subject.tissue.sum(-1) > 0.5, "wm": subject.tissue[..., 0] > 0.8,
                 "gm": subject.tissue[..., 1] > 0.8}
        truth = compute_maps(subject.truth_tensor, masks["brain"], ("fa", "md", "ad", "rd", "v1"), policy="clip")
        rois = [np.isin(subject.labels, labels) & masks["brain"] for labels in ROI_GROUPS.values()]
        acquired = subject.dti
        acquired_maps = tensor_and_maps(acquired, masks["brain"])
        acquired_snr = fa_snr(acquired_maps["fa"], rois)
        entry = dict(score(acquired_maps, truth, masks), similarity_truth=direction_similarity(
            acquired.data, clean.dti.data, masks["brain"]))
        results.setdefault(("phantom", "acquired 6-direction"), []).append(dict(entry, subject=name))
        b0 = (acquired.mean_b0(), acquired.affine, f"{name} DTI b=0")
        dwi = check_dwi(subject.dwi)
        for label, runner, manifest, assemblies in rows:
            cached = CachedPredictions(runner)
            for assembly in assemblies:
                result = synthesize(cached, manifest, dwi, b0, assembly, False)
                dti = result.dti
                maps = tensor_and_maps(dti, masks["brain"])
                entry = dict(score(maps, truth, masks), subject=name, calibration=calibration(result, maps, truth,
                                                                                              masks["wm"]),
                             similarity_acquired=direction_similarity(dti.data, acquired.data, masks["brain"]),
                             similarity_truth=direction_similarity(dti.data, clean.dti.data, masks["brain"]),
                             roi_snr_ratio=float(np.mean(fa_snr(maps["fa"], rois) / acquired_snr)))
                results.setdefault(("phantom", row_label(label, assembly)), []).append(entry)
        if oblique:
            run_oblique(rows, name, subject, clean, truth, masks, results)
        log(f"phantom {name}: {time.perf_counter() - start:.1f} s")


OBLIQUE_DEGREES = (0.0, 15.0, 29.5)  # the synthesis limit is 30


def oblique_directions(degrees):
    """x tilted toward y and z tilted toward x by `degrees`, y exact (RAS rows): non-orthogonal input
    directions up to the synthesis limit (30 degrees from each axis)."""
    t = np.radians(degrees)
    return np.array([[np.cos(t), np.sin(t), 0.0], [0.0, 1.0, 0.0], [np.sin(t), 0.0, np.cos(t)]])


def run_oblique(rows, name, subject, clean, truth, masks, results):
    """The cost of non-orthogonal input directions: each package (its default assembly) on a DWI
    simulated from the subject's true tensors along oblique_directions, on the DTI grid (no
    registration), Rician noise at the subject's sigma; 0 degrees is the same construction with the
    exact axes, the reference for the cost."""
    from DTISynthLib.core.dwi import DWI, check_dwi
    from DTISynthLib.core.errors import InputError
    from DTISynthLib.fit.tensor_fit import predict_signals
    from DTISynthLib.simulation.signals import add_rician_noise

    s0 = clean.dti.mean_b0()
    for degrees in OBLIQUE_DEGREES:
        gradients = oblique_directions(degrees)
        signals = predict_signals(subject.truth_tensor, s0, np.full(3, 1000.0), gradients)
        rng = np.random.default_rng([subject.parameters.seed, int(degrees)])
        data = add_rician_noise(np.concatenate([s0[..., None], signals], -1), subject.sigma, rng)
        dwi = check_dwi(DWI(data.astype(np.float32), subject.dti.affine, np.r_[0.0, np.full(3, 1000.0)],
                            np.vstack([np.zeros(3), gradients]), f"<{name} oblique {degrees:g}>"))
        for label, runner, manifest, _ in rows:
            try:
                dti = synthesize(runner, manifest, dwi, None, None, False).dti
            except InputError:  # beyond the package's measured limits (its manifest's accepted_directions)
                continue
            results.setdefault(("phantom, oblique input", f"{label}, x and z tilted {degrees:g} degrees"), []).append(
                dict(score(tensor_and_maps(dti, masks["brain"]), truth, masks), subject=name))


def row_label(label, assembly):
    return label if label == "diagonal baseline" else f"{label}, {assembly} assembly"


def real_scans(only=None):
    """Every shared real scan, or those whose folder name contains one of `only` (substrings)."""
    folder = SHARED / "data" / "real"
    scans = sorted(p / f"{p.name}.nii.gz" for p in folder.iterdir() if (p / f"{p.name}.nii.gz").exists()) \
        if folder.is_dir() else []
    return [s for s in scans if not only or any(text in s.parent.name for text in only)]


def trained_on(manifest):
    """Names of the subjects a package saw in training: trained on, or chose its model by (validation)."""
    training = manifest.training
    return {s["subject"] for s in training.get("subjects", [])} | set(training.get("training_subjects", [])) | \
        set(training.get("validation_subjects", []))


def run_real(rows, results, refusals, log, only=None):
    from DTISynthLib.core.dwi import check_dwi
    from DTISynthLib.core.errors import InputError
    from DTISynthLib.fit.brain_mask import brain_mask
    from DTISynthLib.fit.tensor_fit import fit_tensors
    from DTISynthLib.fit.tensor_maps import compute_maps
    from DTISynthLib.io.files import load_dwi
    from DTISynthLib.simulation.pairs import make_pairs
    from DTISynthLib.synthesis.pipeline import assign_axes

    for path in real_scans(only):
        name = path.parent.name
        start = time.perf_counter()
        groups = ["real (all)"] + ([] if any(path.name.split(".")[0] in trained_on(m) for _, _, m, _ in rows)
                                   else ["real (held out)"])
        full = load_dwi(path)
        if (~full.is_b0).sum() < 6:
            refusals.append({"scan": name, "reason": "fewer than 6 diffusion directions"})
            continue
        brain = brain_mask(full.mean_b0())
        truth = compute_maps(fit_tensors(full, brain).tensor, brain, ("fa", "md", "ad", "rd", "v1"), policy="clip")
        masks = {"brain": brain, "wm": brain & (truth["fa"] > 0.3),
                 "gm": brain & (truth["fa"] < 0.2) & (truth["md"] < 1.5e-3) & (truth["md"] > 0)}
        b = float(np.round(full.bvals.max()))
        mode = "nearest"
        try:
            dwi3, dti6, pairs = make_pairs(full, mode)
            assign_axes(check_dwi(dwi3))
        except InputError as exc:
            mode = "tensor"
            refusals.append({"scan": name, "pairs": "nearest", "reason": str(exc), "instead": "tensor-mode pairs"})
            dwi3, dti6, pairs = make_pairs(full, mode, b)
        acquired = check_dwi(dti6)
        if mode == "nearest":
            try:  # a 12-direction scheme turned 180 degrees (the Prisma 2022 prone scan) has no 6 to fit
                entry = dict(score(tensor_and_maps(acquired, brain), truth, masks), subject=name)
            except InputError as exc:
                refusals.append({"scan": name, "acquired": "6 nearest volumes", "reason": str(exc)})
                entry = None
            for group in groups if entry else []:
                results.setdefault((group, "acquired 6 nearest volumes"), []).append(entry)
        b0 = (acquired.mean_b0(), acquired.affine, f"{name} 6-direction b=0")
        for label, runner, manifest, assemblies in rows:
            cached = CachedPredictions(runner)
            b_model, b_range = manifest.b_value, manifest.b_range
            converted = not b_range[0] <= b <= b_range[1] if b_range else abs(b - b_model) > 0.05 * b_model
            for assembly in assemblies:
                try:  # a package that states the triples it synthesizes within its targets refuses the others
                    result = synthesize(cached, manifest, check_dwi(dwi3), b0, assembly, True)
                except InputError as exc:
                    refusals.append({"scan": name, "package": label, "pairs": mode, "reason": str(exc)})
                    break
                dti = result.dti
                maps = tensor_and_maps(dti, brain)
                entry = dict(score(maps, truth, masks), subject=name, pairs=mode, b_converted=converted,
                             calibration=calibration(result, maps, truth, masks["wm"]),
                             similarity_acquired=direction_similarity(dti.data, at_b(acquired, float(dti.bvals.max())).data,
                                                                      brain))
                for group in groups:
                    results.setdefault((group, row_label(label, assembly)), []).append(entry)
        log(f"real {name} (b={b:g}, {mode} pairs, largest angle to nominal "
            f"{max(pairs['dwi3_angle_degrees'] + pairs['dti6_angle_degrees']):.1f} degrees): "
            f"{time.perf_counter() - start:.1f} s")


COLUMNS = (("FA abs WM", "fa_abs_wm", "{:.3f}"), ("FA bias WM", "fa_bias_wm", "{:+.3f}"),
           ("FA abs GM", "fa_abs_gm", "{:.3f}"), ("FA bias GM", "fa_bias_gm", "{:+.3f}"),
           ("MD err med", "md_rel_median", "{:.1%}"), ("MD err mean", "md_rel_mean", "{:.1%}"),
           ("MD err>50%", "md_over_50", "{:.2%}"), ("AD bias WM", "ad_bias_wm", "{:+.1%}"),
           ("RD bias WM", "rd_bias_wm", "{:+.1%}"), ("V1 angle", "v1_angle_median", "{:.1f}"),
           ("FA bias <0.2", "fa_bias_below_02", "{:+.3f}"), ("FA bias 0.2-0.4", "fa_bias_02_04", "{:+.3f}"),
           ("FA bias >0.4", "fa_bias_above_04", "{:+.3f}"))


def summarize(results):
    """[(data, DTI, n, {metric: mean over subjects})] in table order."""
    rows = []
    for (data, label), entries in results.items():
        mean = {key: float(np.nanmean([e.get(key, np.nan) for e in entries])) for _, key, _ in COLUMNS}
        for similarity in ("similarity_acquired", "similarity_truth"):
            if all(similarity in e for e in entries):
                mean[similarity] = [float(np.mean([e[similarity][i] for e in entries])) for i in (0, 1)]
        if all("roi_snr_ratio" in e for e in entries):
            mean["roi_snr_ratio"] = float(np.mean([e["roi_snr_ratio"] for e in entries]))
        rows.append((data, label, len(entries), mean))
    return rows


def print_table(rows):
    header = ["data", "DTI", "n"] + [c[0] for c in COLUMNS] + ["PSNR/SSIM vs acquired", "PSNR/SSIM vs truth",
                                                               "ROI SNR syn/acq"]
    lines = [header]
    for data, label, n, mean in rows:
        similarity = [f"{mean[s][0]:.1f} / {mean[s][1]:.2f}" if s in mean else "-"
                      for s in ("similarity_acquired", "similarity_truth")]
        lines.append([data, label, str(n)] + [fmt.format(mean[key]) for _, key, fmt in COLUMNS] + similarity +
                     [f"{mean['roi_snr_ratio']:.2f}" if "roi_snr_ratio" in mean else "-"])
    print("| " + " | ".join(lines[0]) + " |")
    print("|" + "---|" * len(lines[0]))
    for line in lines[1:]:
        print("| " + " | ".join(line) + " |")


def print_per_scan(results):
    """FA abs error in WM / V1 angle of every DTI on every real scan (rows: scans)."""
    labels = [label for data, label in results if data == "real (all)"]
    if not labels:
        return
    scans = sorted({e["subject"] for label in labels for e in results[("real (all)", label)]})
    held_out = {e["subject"] for (data, _), entries in results.items() if data == "real (held out)" for e in entries}
    print("\nPer real scan: FA abs error WM / V1 angle (degrees)")
    print("| scan | " + " | ".join(labels) + " |")
    print("|" + "---|" * (len(labels) + 1))
    for scan in scans:
        cells = []
        for label in labels:
            entry = next((e for e in results[("real (all)", label)] if e["subject"] == scan), None)
            cells.append(f"{entry['fa_abs_wm']:.3f} / {entry['v1_angle_median']:.1f}" if entry else "-")
        print(f"| {scan}{'' if scan in held_out else ' (trained on)'} | " + " | ".join(cells) + " |")


def print_per_person(results):
    """Per person (PEOPLE) and DTI, the mean over the person's scans: FA abs error WM, FA bias per truth-FA
    bin, V1 angle, MD median error (the issue's per-person targets)."""
    labels = [label for data, label in results if data == "real (all)"]
    if not labels:
        return
    held_out = {e["subject"] for (data, _), entries in results.items() if data == "real (held out)" for e in entries}
    print("\nPer real person (mean over its scans): FA abs WM | FA bias per bin of the truth's FA (<0.2 / 0.2-0.4 / "
          ">0.4) | the same per bin of the shown FA | V1 | MD med")
    print("| person | DTI | scans | FA abs WM | FA bias by truth <0.2 / 0.2-0.4 / >0.4 | by shown FA | V1 angle | "
          "MD err med |")
    print("|---|---|---|---|---|---|---|---|")
    people = sorted({person_of(e["subject"]) for label in labels for e in results[("real (all)", label)]},
                    key=[p for p, _ in PEOPLE].index)
    for person in people:
        for label in labels:
            entries = [e for e in results[("real (all)", label)] if person_of(e["subject"]) == person]
            if not entries:
                continue
            mean = lambda key: float(np.nanmean([e[key] for e in entries]))  # noqa: E731
            seen = "held out" if all(e["subject"] in held_out for e in entries) else "trained/selected"
            bins = lambda suffix: " / ".join(f"{mean(key + suffix):+.3f}" for key, _, _ in FA_BINS)  # noqa: E731
            print(f"| {person} ({seen}) | {label} | {len(entries)} | {mean('fa_abs_wm'):.3f} | {bins('')} | "
                  f"{bins('_by_shown')} | {mean('v1_angle_median'):.1f} | {mean('md_rel_median'):.1%} |")


def print_calibration(results, out):
    """Per group and DTI with a confidence: the calibration table (confidence bins: share of WM voxels, mean
    confidence, median V1 angle, share within the confidence's angle; each the mean over subjects) and per
    subject the share of WM at confidence >= 0.8 and its median V1 angle; one figure per group."""
    from DTISynthLib.evaluation.calibration import CONFIDENT, write_calibration_figure

    for (data, label), entries in results.items():
        entries = [e for e in entries if e.get("calibration")]
        if not entries:
            continue
        print(f"\nV1 confidence calibration, {data}, {label} (truth's V1; WM; mean over {len(entries)})")
        print("| confidence | share of WM | mean confidence | median V1 angle | share within angle |")
        print("|---|---|---|---|---|")
        for k, row in enumerate(entries[0]["calibration"]["rows"]):
            cells = [[e["calibration"]["rows"][k][key] for e in entries] for key in
                     ("wm_share", "mean_confidence", "median_angle_degrees", "within_angle_share")]
            mean = [float(np.nanmean(c)) if np.isfinite(c).any() else float("nan") for c in cells]
            print(f"| {row['low']:g}-{row['high']:g} | {mean[0]:.1%} | {mean[1]:.2f} | {mean[2]:.1f} | {mean[3]:.0%} |")
        for e in entries:
            summary = e["calibration"]["summary"]
            print(f"  {e['subject']}: confidence >= {CONFIDENT:g} on {summary['confident_share']:.0%} of WM, V1 median "
                  f"{summary['confident_median_angle_degrees']:.1f} deg there (all WM {summary['median_angle_degrees']:.1f}); "
                  f"Brier {summary['brier']:.3f}")
        slug = "".join(c if c.isalnum() else "_" for c in f"{data}_{label}")
        write_calibration_figure(out / f"calibration_{slug}.png", {e["subject"]: e["calibration"]["rows"] for e in entries},
                                 entries[0]["calibration"]["summary"]["angle_degrees"])


def main():
    from DTISynthLib.generators.package import DEFAULT_MODELS
    from DTISynthLib.service.requests import parse_grid
    from DTISynthLib.simulation.cohort import PAPER_GRID

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=4, help="phantom subjects (at most 8)")
    shipped = sorted(str(p.parent) for p in DEFAULT_MODELS.parent.glob("*/manifest.json") if p.parent.name != "diagonal")
    parser.add_argument("--models", nargs="+", default=shipped, help="model packages to score (default: every shipped "
                        "set; the diagonal baseline always runs)")
    parser.add_argument("--grid", type=parse_grid, default=PAPER_GRID)
    parser.add_argument("--no-real", action="store_true", help="phantom subjects only")
    parser.add_argument("--no-oblique", action="store_true", help="skip the non-orthogonal input experiment")
    parser.add_argument("--scans", nargs="+", help="only the real scans whose folder name contains one of these")
    parser.add_argument("--out", help="folder for bench_quality.json (default: a new temporary folder)")
    args = parser.parse_args()
    started = time.perf_counter()
    log = lambda text: print(f"[{time.perf_counter() - started:6.0f} s] {text}", file=sys.stderr, flush=True)  # noqa: E731
    rows = packages(args.models)
    register_each_pair_once()
    results, refusals = {}, []
    run_phantom(rows, args.subjects, args.grid, results, log, not args.no_oblique)
    if not args.no_real:
        run_real(rows, results, refusals, log, args.scans)
    order = {"acquired": 0, "diagonal": 2}
    groups = {"phantom": 0, "phantom, oblique input": 1, "real (held out)": 2, "real (all)": 3}
    summary = sorted(summarize(results), key=lambda r: (groups[r[0]], order.get(r[1].split(" ")[0], 1), r[1]))
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-quality-"))
    out.mkdir(parents=True, exist_ok=True)
    print_table(summary)
    print_per_scan(results)
    print_per_person(results)
    print_calibration(results, out)
    for refusal in refusals:
        print(f"refused: {refusal}")
    elapsed = time.perf_counter() - started
    print(f"\n{len(results)} rows; {elapsed / 60:.1f} min on this machine ({args.subjects} phantom subjects at "
          f"{'x'.join(map(str, args.grid))}, fp32)")
    report = {"summary": [{"data": d, "dti": label, "n": n, **mean} for d, label, n, mean in summary],
              "per_subject": {f"{d} / {label}": entries for (d, label), entries in results.items()},
              "refusals": refusals, "seconds": round(elapsed, 1), "models": args.models,
              "phantom_seeds": list(PHANTOM_SEEDS[:args.subjects])}
    (out / "bench_quality.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"JSON: {out / 'bench_quality.json'}")


if __name__ == "__main__":
    main()
