"""Atlases and ROI placement: the embedded phantom atlas or user atlases, registered to a subject.

An atlas is labels plus a b=0 and / or FA template in one space, and a label table saying which
labels make which ROI. The ROIs are the seed paper's five by default (brain_phantom.ROI_GROUPS);
any ROI named in a label table's `roi` column can be requested.

- Embedded: DTISynth's digital phantom in MNI space (simulation.phantom_atlas). Its ROIs are analytic
  (ellipsoids within tissue), so they are evaluated at the exact atlas point of every subject voxel,
  with no second resampling of a label image.
- User: a folder with `atlas_dseg.nii.gz` (integer labels), `atlas_b0.nii.gz` and / or
  `atlas_FA.nii.gz` (templates on the same grid) and `labels.tsv` (columns index, name, roi). For
  example FSL's JHU ICBM-DTI-81 labels with the FMRIB58 FA template and the table in
  Resources/Atlases/jhu_icbm_dti_81_labels.tsv (splenium 5, posterior limb of the internal capsule
  19 / 20, posterior thalamic radiation 29 / 30), plus a second atlas for the lentiform nucleus and
  thalamus. Labels are carried by nearest neighbour.

Registration (registration.deformable.register_atlas): affine, then demons, on b=0 (on FA when the atlas has
no b=0 template). On full-size phantom subjects b=0 placed the ROIs at least as well as FA did.
Frames: voxel -> RAS affines throughout.
"""

import csv
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.resources import RESOURCES
from ..simulation.brain_phantom import (
    ROI_GROUPS,
    label_table,
    roi_labels,
    sample_tissue,
)

DEFAULT_ROIS = tuple(ROI_GROUPS)
RESOURCES_ATLASES = RESOURCES / "Atlases"


@dataclass
class Atlas:
    """labels (x, y, z int) and templates (or None) on one grid with a voxel -> RAS affine; table:
    {label: (name, roi)}; analytic: ROIs evaluated by brain_phantom.roi_labels at mapped points."""

    name: str
    affine: np.ndarray
    labels: np.ndarray
    b0: np.ndarray = None
    fa: np.ndarray = None
    table: dict = field(default_factory=dict)
    analytic: bool = False

    def rois(self):
        """{roi: (labels...)} of this atlas."""
        groups = {}
        for label, (_, roi) in sorted(self.table.items()):
            groups.setdefault(roi, []).append(label)
        return {roi: tuple(labels) for roi, labels in groups.items()}


@lru_cache(maxsize=2)
def embedded_atlas(grid=None):
    """The phantom atlas (MNI space) on `grid` (default the seed paper's geometry); cached, so treat
    its arrays as read-only."""
    from ..simulation.cohort import PAPER_GRID
    from ..simulation.phantom_atlas import phantom_atlas

    affine, labels, _, fa, b0 = phantom_atlas(grid or PAPER_GRID)
    table = label_table()
    return Atlas("DTISynth phantom (MNI ICBM152 2009a)", affine, labels.astype(np.int32), b0, fa, table, True)


def read_label_table(path):
    """labels.tsv (index, name, roi; tab-separated, header row) -> {index: (name, roi)}."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "a label table (labels.tsv: index, name, roi)", "no such file")
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if not rows or [c.strip().lower() for c in rows[0][:3]] != ["index", "name", "roi"]:
        raise InputError(path, "a header row 'index<TAB>name<TAB>roi'", f"{rows[0] if rows else 'an empty file'}")
    table = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 3 or not row[0].strip().isdigit() or not row[2].strip():
            raise InputError(path, "rows of a label number, a name and an ROI", f"line {number}: {row}")
        table[int(row[0])] = (row[1].strip(), row[2].strip())
    if not table:
        raise InputError(path, "at least one labelled ROI", "no rows")
    return table


def load_atlas(folder):
    """A user atlas folder (see the module docstring)."""
    from ..core.dwi import check_same_grid
    from ..io.files import load_volume

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "an atlas folder (atlas_dseg.nii.gz, atlas_b0 / atlas_FA, labels.tsv)", "no such folder")
    labels_path = folder / "atlas_dseg.nii.gz"
    if not labels_path.exists():
        raise InputError(labels_path, "the atlas labels", "no such file")
    labels, affine = load_volume(labels_path)
    if np.any(labels != np.round(labels)) or labels.min() < 0:
        raise InputError(labels_path, "non-negative integer labels", f"values from {labels.min()} to {labels.max()}")
    templates = {}
    for key, name in (("b0", "atlas_b0.nii.gz"), ("fa", "atlas_FA.nii.gz")):
        if (folder / name).exists():
            volume, template_affine = load_volume(folder / name)
            check_same_grid(labels.shape, affine, volume.shape, template_affine, folder / name, "an atlas template")
            templates[key] = volume
    if not templates:
        raise InputError(folder, "a template: atlas_b0.nii.gz and / or atlas_FA.nii.gz", "neither")
    return Atlas(str(folder), affine, labels.astype(np.int32), templates.get("b0"), templates.get("fa"),
                 read_label_table(folder / "labels.tsv"))


def check_rois(atlases, rois):
    """{roi: atlas} for each requested ROI (the first atlas defining it); refuses an ROI no atlas has."""
    chosen = {}
    for roi in rois:
        owner = next((a for a in atlases if roi in a.rois()), None)
        if owner is None:
            known = sorted({r for a in atlases for r in a.rois()})
            raise InputError(" + ".join(f"{a.name} label table" for a in atlases), f"a row for the ROI {roi!r}",
                             f"ROIs {known}")
        chosen[roi] = owner
    return chosen


def atlas_points(transform, subject_affine, shape):
    """Atlas RAS points (N, 3) of every subject voxel (C order) through a SimpleITK transform."""
    import SimpleITK as sitk

    from ..registration.itk import to_sitk

    reference = to_sitk(np.zeros(tuple(shape[:3]), np.float32), subject_affine)
    displacement = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, reference.GetSize(),
                                                     reference.GetOrigin(), reference.GetSpacing(),
                                                     reference.GetDirection())
    lps_shift = np.transpose(sitk.GetArrayFromImage(displacement), (2, 1, 0, 3)).reshape(-1, 3)
    ijk = np.indices(tuple(shape[:3])).reshape(3, -1).T
    world = ijk @ np.asarray(subject_affine)[:3, :3].T + np.asarray(subject_affine)[:3, 3]
    return world + lps_shift * np.array([-1.0, -1.0, 1.0])  # ITK displacements are LPS vectors


def place_rois(atlas, subject_b0, subject_fa, subject_affine, rois):
    """Register `atlas` to the subject and return ({roi: boolean mask on the subject grid}, report)."""
    from ..registration.deformable import register_atlas, warp_labels

    contrast = "b=0" if atlas.b0 is not None else "FA"
    transform = register_atlas(subject_b0 if atlas.b0 is not None else subject_fa, subject_affine,
                               atlas.b0 if atlas.b0 is not None else atlas.fa, atlas.affine)
    shape = np.asarray(subject_b0).shape
    if atlas.analytic:
        points = atlas_points(transform, subject_affine, shape)
        fractions, _ = sample_tissue(points)
        labels = roi_labels(points, fractions).reshape(shape)
    else:
        labels = warp_labels(atlas.labels, atlas.affine, transform, subject_affine, shape)
    groups = atlas.rois()
    masks = {roi: np.isin(labels, groups[roi]) for roi in rois}
    report = {"atlas": atlas.name, "registration": f"affine + demons on {contrast}",
              "roi_voxels": {roi: int(m.sum()) for roi, m in masks.items()}}
    return masks, report
