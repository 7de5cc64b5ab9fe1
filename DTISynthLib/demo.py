"""The README's main job: simulate brain-phantom subjects, synthesize their DTI from their 3-direction
DWI with the shipped demo models, compare synthetic with simulated-acquired maps, and evaluate the
cohort as the seed paper did.

Writes <out>/input (the subjects: 3-direction DWI, 6-direction DTI, ground truth), <out>/synthetic/
<subject> (synthetic DTI, its maps and synthesis.json), <out>/acquired (maps of sub-001's simulated-
acquired DTI), <out>/montage.png (sub-001's acquired, synthetic and ground-truth maps),
<out>/roi_values.tsv (sub-001's ROI means of FA and MD: acquired, synthetic, ground truth and the
seed paper's Table 2 originals) and <out>/evaluation (the cohort's ROI statistics, t-tests,
Bland-Altman, PSNR / SSIM, figures and report.html).
"""

from pathlib import Path

import numpy as np

from .atomic import atomic_output_dir, write_text_atomic
from .brain_phantom import ROI_GROUPS
from .cohort import PAPER_GRID, draw_subject, simulate_subject, write_subject
from .dwi_files import save_volume
from .fit_job import MAP_FILE_NAMES, run_fit
from .io_nifti import read_nifti
from .montage import write_montage
from .synthesis import run_synthesis
from .tensor_maps import compute_maps

TABLE_2_ORIGINALS = {  # the seed paper's Table 2, original DTI: FA, MD (mm^2/s)
    "lentiform_nucleus": (0.28, 7.08e-4), "thalamus": (0.28, 8.79e-4),
    "posterior_limb_internal_capsule": (0.59, 7.08e-4), "posterior_thalamic_radiation": (0.52, 7.94e-4),
    "splenium_corpus_callosum": (0.58, 8.03e-4)}
MAPS = ("fa", "md", "ad", "rd", "color")


def _read_maps(folder):
    return {n: read_nifti(Path(folder) / f"{MAP_FILE_NAMES[n]}.nii.gz")[0] for n in MAPS}


def run_demo(out_dir, reporter, grid=PAPER_GRID, snr=30.0, seed=0, models=None, subjects=3, jobs=2):
    """Simulate, synthesize, fit, compare and evaluate; returns (written paths, summary message)."""
    from .evaluation import run_evaluation

    out_dir = Path(out_dir)
    names = [f"sub-{i + 1:03d}" for i in range(subjects)]
    with atomic_output_dir(out_dir / "input") as staging:
        for i, name in enumerate(names):
            reporter.progress("simulate", i / subjects, f"brain phantom {name} {grid}, SNR {snr:g}")
            subject = simulate_subject(draw_subject(name, seed + i, snr), "sampled", grid=grid)
            write_subject(staging, subject)
            if i == 0:
                first = subject
                save_volume(staging / "brain_mask.nii.gz", (subject.tissue.sum(axis=-1) > 0.5).astype(np.uint8),
                            subject.dti.affine)
        inputs = sorted(out_dir / "input" / p.relative_to(staging) for p in staging.rglob("*") if p.is_file())
    reporter.progress("simulate", 1.0, f"{len(inputs)} files in {out_dir / 'input'}")
    synthetic, warnings = [], []
    for name in names:
        dwi_dir = out_dir / "input" / name / "dwi"
        # the reference b=0 is the acquired DTI's (its first volume), as the paper registered to it
        written, report = run_synthesis(dwi_dir / f"{name}_acq-dwi3_dwi.nii.gz", out_dir / "synthetic" / name,
                                        b0_path=dwi_dir / f"{name}_acq-dti6_dwi.nii.gz", models_dir=models,
                                        reporter=reporter)
        synthetic += written
        warnings += [f"{name}: {w}" for w in report["warnings"]]
    first_dwi = out_dir / "input" / names[0] / "dwi"
    acquired = run_fit(first_dwi / f"{names[0]}_acq-dti6_dwi.nii.gz", out_dir / "acquired",
                       mask_path=out_dir / "input" / "brain_mask.nii.gz", method="ols", reporter=reporter)
    maps = {"acquired": _read_maps(out_dir / "acquired"),
            "synthetic": _read_maps(out_dir / "synthetic" / names[0] / "maps"),
            "ground truth": compute_maps(first.truth_tensor, names=MAPS)}
    montage = write_montage(out_dir / "montage.png", [(name, m) for name, m in maps.items()], first.dti.affine,
                            title=f"DTISynth demo, {names[0]}: synthetic DTI from a 3-direction DWI "
                                  "(brain phantom, demo models)")
    header = ["roi", "voxels"] + [f"{q}_{s}" for q in ("FA", "MD") for s in ("acquired", "synthetic", "truth", "paper")]
    rows = [header]
    for roi, labels in ROI_GROUPS.items():
        inside = np.isin(first.labels, labels)
        row = [roi, str(int(inside.sum()))]
        for quantity, paper in (("fa", TABLE_2_ORIGINALS[roi][0]), ("md", TABLE_2_ORIGINALS[roi][1])):
            fmt = "{:.3f}" if quantity == "fa" else "{:.3e}"
            row += [fmt.format(maps[k][quantity][inside].mean()) for k in ("acquired", "synthetic", "ground truth")]
            row.append(fmt.format(paper))
        rows.append(row)
    table = out_dir / "roi_values.tsv"
    write_text_atomic(table, "".join("\t".join(row) + "\n" for row in rows))
    evaluation, summary = run_evaluation(out_dir / "input", out_dir / "synthetic", out_dir / "evaluation",
                                         jobs=jobs, reporter=reporter)
    fa_rows = [r for r in summary["table2"] if r["map"] == "fa"]
    message = f"demo, {names[0]}: ROI means (acquired / synthetic / ground truth / paper Table 2)\n" + "".join(
        f"  {row[0]:<32}" + "".join(f"{v:>13}" for v in row[1:]) + "\n" for row in rows) + \
        f"cohort of {subjects}, FA original / synthetic (mean +- SD over subjects), paired t-test p:\n" + "".join(
        f"  {r['roi']:<32} {r['original_mean']:.3f} +- {r['original_sd']:.3f}   {r['synthetic_mean']:.3f} +- "
        f"{r['synthetic_sd']:.3f}   p = {r['p_mean']:.3g}\n" for r in fa_rows) + \
        f"synthetic DTIs in {out_dir / 'synthetic'}, montage {montage}, table {table}, " \
        f"report {out_dir / 'evaluation' / 'report.html'}" + "".join(f"\nwarning: {w}" for w in warnings)
    return inputs + synthetic + acquired + [montage, table] + evaluation, message
