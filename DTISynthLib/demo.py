"""The README's main job: simulate a brain-phantom subject, synthesize its DTI from its 3-direction DWI
with the shipped demo models, and compare synthetic with simulated-acquired maps.

Writes <out>/input (the subject: 3-direction DWI, 6-direction DTI, ground truth), <out>/synthetic
(synthetic DTI, its maps and synthesis.json), <out>/acquired (maps of the simulated-acquired DTI),
<out>/montage.png (acquired, synthetic and ground-truth maps) and <out>/roi_values.tsv (ROI means of
FA and MD: acquired, synthetic, ground truth and the seed paper's Table 2 originals).
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


def run_demo(out_dir, reporter, grid=PAPER_GRID, snr=30.0, seed=0, models=None):
    """Simulate, synthesize, fit and compare; returns (written paths, summary message)."""
    out_dir = Path(out_dir)
    reporter.progress("simulate", 0.0, f"brain phantom subject {grid}, SNR {snr:g}")
    subject = simulate_subject(draw_subject("sub-001", seed, snr), "sampled", grid=grid)
    with atomic_output_dir(out_dir / "input") as staging:
        write_subject(staging, subject)
        save_volume(staging / "brain_mask.nii.gz", (subject.tissue.sum(axis=-1) > 0.5).astype(np.uint8),
                    subject.dti.affine)
        save_volume(staging / "dti_b0.nii.gz", subject.dti.mean_b0(), subject.dti.affine)
        inputs = sorted(out_dir / "input" / p.relative_to(staging) for p in staging.rglob("*") if p.is_file())
    reporter.progress("simulate", 1.0, f"{len(inputs)} files in {out_dir / 'input'}")
    dwi_dir = out_dir / "input" / "sub-001" / "dwi"
    synthetic, report = run_synthesis(dwi_dir / "sub-001_acq-dwi3_dwi.nii.gz", out_dir / "synthetic",
                                      b0_path=out_dir / "input" / "dti_b0.nii.gz", models_dir=models, reporter=reporter)
    acquired = run_fit(dwi_dir / "sub-001_acq-dti6_dwi.nii.gz", out_dir / "acquired",
                       mask_path=out_dir / "input" / "brain_mask.nii.gz", method="ols", reporter=reporter)
    maps = {"acquired": _read_maps(out_dir / "acquired"), "synthetic": _read_maps(out_dir / "synthetic" / "maps"),
            "ground truth": compute_maps(subject.truth_tensor, names=MAPS)}
    montage = write_montage(out_dir / "montage.png", [(name, m) for name, m in maps.items()], subject.dti.affine,
                            title="DTISynth demo: synthetic DTI from a 3-direction DWI (brain phantom, demo models)")
    header = ["roi", "voxels"] + [f"{q}_{s}" for q in ("FA", "MD") for s in ("acquired", "synthetic", "truth", "paper")]
    rows = [header]
    for roi, labels in ROI_GROUPS.items():
        inside = np.isin(subject.labels, labels)
        row = [roi, str(int(inside.sum()))]
        for quantity, paper in (("fa", TABLE_2_ORIGINALS[roi][0]), ("md", TABLE_2_ORIGINALS[roi][1])):
            fmt = "{:.3f}" if quantity == "fa" else "{:.3e}"
            row += [fmt.format(maps[k][quantity][inside].mean()) for k in ("acquired", "synthetic", "ground truth")]
            row.append(fmt.format(paper))
        rows.append(row)
    table = out_dir / "roi_values.tsv"
    write_text_atomic(table, "".join("\t".join(row) + "\n" for row in rows))
    message = "demo: ROI means (acquired / synthetic / ground truth / paper Table 2)\n" + "".join(
        f"  {row[0]:<32}" + "".join(f"{v:>13}" for v in row[1:]) + "\n" for row in rows) + \
        f"synthetic DTI in {out_dir / 'synthetic'}, montage {montage}, table {table}" + \
        "".join(f"\nwarning: {w}" for w in report["warnings"])
    return inputs + synthetic + acquired + [montage, table], message
