"""The demo job (`dtisynth demo`, the README's main job): simulate brain-phantom subjects, synthesize
their DTI from their 3-direction DWI with the default model set (`models` for another), compare
synthetic with simulated-acquired maps, and evaluate the cohort as the seed paper did.

Writes (core.output_layout.DemoOutput) the subjects (3-direction DWI, 6-direction DTI, ground
truth), their synthetic DTIs and maps, sub-001's simulated-acquired maps, a montage of sub-001's
acquired, synthetic and ground-truth maps, sub-001's ROI means of FA and MD (acquired, synthetic,
ground truth and the seed paper's Table 2 originals) and the cohort's evaluation (ROI statistics,
t-tests, Bland-Altman, PSNR / SSIM, figures and report.html).
"""

from pathlib import Path

import numpy as np

from ..core.atomic import atomic_output_dir, write_text_atomic
from ..core.output_layout import DTI6, DWI3, DemoOutput, acquisition_name
from ..core.progress import NullReporter
from ..evaluation.comparison import run_evaluation
from ..evaluation.montage import write_montage
from ..fit.tensor_maps import compute_maps
from ..generators.package import DEFAULT_MODELS
from ..io.files import save_volume
from ..io.nifti import read_nifti
from ..simulation.brain_phantom import ROI_GROUPS
from ..simulation.cohort import draw_subject, simulate_subject, write_subject
from .fit import fit
from .requests import FitRequest, SynthesisRequest
from .synthesize import synthesize

PAPER_ORIGINAL_ROI_MEANS = {  # the seed paper's Table 2, original DTI: FA, MD (mm^2/s)
    "lentiform_nucleus": (0.28, 7.08e-4), "thalamus": (0.28, 8.79e-4),
    "posterior_limb_internal_capsule": (0.59, 7.08e-4), "posterior_thalamic_radiation": (0.52, 7.94e-4),
    "splenium_corpus_callosum": (0.58, 8.03e-4)}
MAPS = ("fa", "md", "ad", "rd", "color")


def _read_maps(fit_output):
    return {n: read_nifti(fit_output.map(n))[0] for n in MAPS}


SNR = 30.0  # of the simulated acquisitions' b=0


def run_demo(request, reporter=NullReporter(), snr=SNR, seed=0):
    """Simulate, synthesize, fit, compare and evaluate (requests.DemoRequest); returns (written paths,
    summary message)."""
    grid, models, subjects = tuple(request.grid), request.models, request.subjects
    layout = DemoOutput(request.out)
    names = [f"sub-{i + 1:03d}" for i in range(subjects)]
    with atomic_output_dir(layout.input) as staging:
        for i, name in enumerate(names):
            reporter.progress("simulate", i / subjects, f"brain phantom {name} {grid}, SNR {snr:g}")
            subject = simulate_subject(draw_subject(name, seed + i, snr), "sampled", grid=grid)
            write_subject(staging, subject)
            if i == 0:
                first = subject
                save_volume(staging / layout.brain_mask.name, (subject.tissue.sum(axis=-1) > 0.5).astype(np.uint8),
                            subject.dti.affine)
        inputs = sorted(layout.input / p.relative_to(staging) for p in staging.rglob("*") if p.is_file())
    reporter.progress("simulate", 1.0, f"{len(inputs)} files in {layout.input}")
    synthetic, warnings = [], []
    for name in names:
        dwi_dir = layout.input / name / "dwi"
        # the reference b=0 is the acquired DTI's (its first volume), as the paper registered to it
        written, report = synthesize(SynthesisRequest(dwi=dwi_dir / acquisition_name(name, DWI3),
                                                      out=layout.synthetic(name).folder,
                                                      b0=dwi_dir / acquisition_name(name, DTI6), models=models),
                                     reporter)
        synthetic += written
        warnings += [f"{name}: {w}" for w in report["warnings"]]
    first_dwi = layout.input / names[0] / "dwi"
    acquired = fit(FitRequest(dwi=first_dwi / acquisition_name(names[0], DTI6), out=layout.acquired.folder,
                              mask=layout.brain_mask, method="ols"), reporter)
    maps = {"acquired": _read_maps(layout.acquired),
            "synthetic": _read_maps(layout.synthetic(names[0]).maps),
            "ground truth": compute_maps(first.truth_tensor, names=MAPS)}
    montage = write_montage(layout.montage, [(name, m) for name, m in maps.items()], first.dti.affine,
                            title=f"DTISynth demo, {names[0]}: synthetic DTI from a 3-direction DWI "
                                  f"(brain phantom, {Path(models or DEFAULT_MODELS).name} models)")
    header = ["roi", "voxels"] + [f"{q}_{s}" for q in ("FA", "MD") for s in ("acquired", "synthetic", "truth", "paper")]
    rows = [header]
    for roi, labels in ROI_GROUPS.items():
        inside = np.isin(first.labels, labels)
        row = [roi, str(int(inside.sum()))]
        for quantity, paper in (("fa", PAPER_ORIGINAL_ROI_MEANS[roi][0]), ("md", PAPER_ORIGINAL_ROI_MEANS[roi][1])):
            fmt = "{:.3f}" if quantity == "fa" else "{:.3e}"
            row += [fmt.format(maps[k][quantity][inside].mean()) for k in ("acquired", "synthetic", "ground truth")]
            row.append(fmt.format(paper))
        rows.append(row)
    table = layout.roi_values
    write_text_atomic(table, "".join("\t".join(row) + "\n" for row in rows))
    evaluation, summary = run_evaluation(layout.input, layout.synthetic(), layout.evaluation.folder, jobs=request.jobs,
                                         reporter=reporter, realism_voxels=request.realism_voxels,
                                         realism_epochs=request.realism_epochs)
    fa_rows = [r for r in summary["table2"] if r["map"] == "fa"]
    message = f"demo, {names[0]}: ROI means (acquired / synthetic / ground truth / paper Table 2)\n" + "".join(
        f"  {row[0]:<32}" + "".join(f"{v:>13}" for v in row[1:]) + "\n" for row in rows) + \
        f"cohort of {subjects}, FA original / synthetic (mean +- SD over subjects), paired t-test p:\n" + "".join(
        f"  {r['roi']:<32} {r['original_mean']:.3f} +- {r['original_sd']:.3f}   {r['synthetic_mean']:.3f} +- "
        f"{r['synthetic_sd']:.3f}   p = {r['p_mean']:.3g}\n" for r in fa_rows) + \
        "".join(f"realism index of the synthetic DTIs (paper 2's autoencoder test; ~1 or below: as real as "
                f"acquired): {r['realism_index']:.2f}\n" for r in summary["realism_index"]["rows"][-1:]) + \
        f"synthetic DTIs in {layout.synthetic()}, montage {montage}, table {table}, " \
        f"report {layout.evaluation.report}" + "".join(f"\nwarning: {w}" for w in warnings)
    return inputs + synthetic + acquired + [montage, table] + evaluation, message
