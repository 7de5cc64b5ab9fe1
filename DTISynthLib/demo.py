"""The README's main job at this stage: a simulated brain-phantom subject, fitted, mapped and shown.

Writes <out>/input (the subject's 6-direction DTI, 3-direction DWI and ground truth), <out>/maps
(fitted maps), <out>/montage.png (ground truth against fitted maps) and <out>/roi_values.tsv (ROI
means of FA and MD: fitted, ground truth and the seed paper's Table 2 originals).
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
from .tensor_maps import compute_maps

TABLE_2_ORIGINALS = {  # the seed paper's Table 2, original DTI: FA, MD (mm^2/s)
    "lentiform_nucleus": (0.28, 7.08e-4), "thalamus": (0.28, 8.79e-4),
    "posterior_limb_internal_capsule": (0.59, 7.08e-4), "posterior_thalamic_radiation": (0.52, 7.94e-4),
    "splenium_corpus_callosum": (0.58, 8.03e-4)}


def run_demo(out_dir, reporter, grid=PAPER_GRID, snr=30.0, seed=0):
    """Simulate, fit and report; returns (written paths, summary message)."""
    out_dir = Path(out_dir)
    reporter.progress("simulate", 0.0, f"brain phantom subject {grid}, SNR {snr:g}")
    subject = simulate_subject(draw_subject("sub-001", seed, snr), "sampled", grid=grid)
    with atomic_output_dir(out_dir / "input") as staging:
        write_subject(staging, subject)
        save_volume(staging / "brain_mask.nii.gz", (subject.tissue.sum(axis=-1) > 0.5).astype(np.uint8),
                    subject.dti.affine)
        inputs = sorted(out_dir / "input" / p.relative_to(staging) for p in staging.rglob("*") if p.is_file())
    reporter.progress("simulate", 1.0, f"{len(inputs)} files in {out_dir / 'input'}")
    dti_path = out_dir / "input" / "sub-001" / "dwi" / "sub-001_acq-dti6_dwi.nii.gz"
    fitted = run_fit(dti_path, out_dir / "maps", mask_path=out_dir / "input" / "brain_mask.nii.gz",
                     reporter=reporter)
    names = ("fa", "md", "ad", "rd", "color")
    maps = {n: read_nifti(out_dir / "maps" / f"{MAP_FILE_NAMES[n]}.nii.gz")[0] for n in names}
    truth = compute_maps(subject.truth_tensor, names=names)
    montage = write_montage(out_dir / "montage.png", [("ground truth", truth), (f"fitted, SNR {snr:g}", maps)],
                            subject.dti.affine, slices=None,
                            title="DTISynth demo: simulated subject (brain phantom), b=0 + 6 directions")
    rows = [["roi", "voxels", "FA_fitted", "FA_truth", "FA_paper", "MD_fitted", "MD_truth", "MD_paper"]]
    for roi, labels in ROI_GROUPS.items():
        inside = np.isin(subject.labels, labels)
        fa_paper, md_paper = TABLE_2_ORIGINALS[roi]
        rows.append([roi, str(int(inside.sum())), f"{maps['fa'][inside].mean():.3f}", f"{truth['fa'][inside].mean():.3f}",
                     f"{fa_paper:.2f}", f"{maps['md'][inside].mean():.3e}", f"{truth['md'][inside].mean():.3e}",
                     f"{md_paper:.2e}"])
    table = out_dir / "roi_values.tsv"
    write_text_atomic(table, "".join("\t".join(row) + "\n" for row in rows))
    message = "demo: ROI means (fitted / truth / paper Table 2)\n" + "".join(
        f"  {row[0]:<32}" + "".join(f"{v:>11}" for v in row[1:]) + "\n" for row in rows) + \
        f"maps in {out_dir / 'maps'}, montage {montage}, table {table}"
    return inputs + fitted + [montage, table], message
