"""The embedded default atlas: the digital brain phantom in MNI space without pose, deformation or
noise, with its ROI labels and the templates (T1-like, FA, b=0) that register it to subjects.

Frames: world = MNI152 RAS mm; arrays (x, y, z) with a voxel -> RAS affine.
"""

import json
from pathlib import Path

import numpy as np

from .. import __version__
from ..core.atomic import atomic_output_dir, write_text_atomic
from ..fit.tensor_maps import compute_maps
from ..io.files import save_volume
from .brain_phantom import ROIS, label_table_tsv
from .cohort import PAPER_GRID, draw_subject, simulate_acquisition


def phantom_atlas(grid=PAPER_GRID):
    """The atlas on `grid`: (affine, ROI labels, T1-like template (0-1), FA template, b=0 template)."""
    dti, truth = simulate_acquisition(draw_subject("atlas", 0, vary=False), "dti", "sampled", grid=grid, noise=False)
    fa = compute_maps(truth["tensor"], names=("fa",))["fa"]
    return dti.affine, truth["labels"], truth["t1"], fa, dti.data[..., 0]


def write_atlas(out_dir, grid=PAPER_GRID):
    """Write the embedded atlas (labels, T1-like, FA and b=0 templates, label table) atomically."""
    affine, labels, t1, fa, b0 = phantom_atlas(grid)
    with atomic_output_dir(out_dir) as staging:
        save_volume(staging / "atlas_dseg.nii.gz", labels.astype(np.uint8), affine)
        save_volume(staging / "atlas_T1like.nii.gz", t1, affine)
        save_volume(staging / "atlas_FA.nii.gz", fa, affine)
        save_volume(staging / "atlas_b0.nii.gz", b0, affine)
        write_text_atomic(staging / "labels.tsv", label_table_tsv())
        write_text_atomic(staging / "atlas.json", json.dumps({
            "space": "MNI152NLin2009aSym (RAS mm)", "grid": list(grid),
            "source": "DTISynth digital brain phantom (MNI ICBM152 2009a tissue maps, Resources/Phantom)",
            "rois": {roi.name: roi.label for roi in ROIS}, "generated_by": f"DTISynth {__version__}"},
            indent=2, sort_keys=True) + "\n")
        names = sorted(p.name for p in staging.iterdir())
    return [Path(out_dir) / name for name in names]
