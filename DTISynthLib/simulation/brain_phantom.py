"""DTISynth's digital brain phantom and embedded default atlas, defined in MNI ICBM152 space.

Frames and units: every point is in MNI152 (2009a symmetric) RAS millimetres; every fibre direction
is a unit vector in that RAS frame. A subject is made by sampling this model through the subject's
deformation and head pose (cohort.py), so one definition serves every grid and pose.

- Tissue fractions (WM, GM, CSF) and a T1-like image come from Resources/Phantom (MNI ICBM152 2009a
  maps shipped by nilearn, 2 mm; see its README for source and licence). Nothing is downloaded.
- ROIs: the seed paper's five regions as ellipsoids at their usual MNI positions, restricted to
  the tissue they lie in; left and right where anatomical (LABELS).
- Fibres: the major tracts as centrelines (corticospinal tract through the posterior limb of the
  internal capsule, posterior thalamic radiation, superior longitudinal fasciculus, cingulum,
  anterior thalamic radiation) and the corpus callosum as an arched sheet; a voxel holds up to three
  WM fibre compartments, crossing where tracts overlap (centrum semiovale), with a radial
  corona-like background elsewhere in WM.
"""

from dataclasses import dataclass
from functools import lru_cache

import nibabel as nib
import numpy as np

from ..core.resources import RESOURCES

TISSUE_FILE = RESOURCES / "Phantom" / "mni_icbm152_2009_tissue_2mm.nii.gz"
MAX_FIBRES = 3
BACKGROUND_WEIGHT = 0.2  # weight of the radial background fibre against a tract at its core (1.0)


@dataclass(frozen=True)
class RegionOfInterest:
    label: int
    name: str
    centre: tuple  # MNI mm
    radii: tuple  # mm along the rotated axes
    yaw_degrees: float  # rotation about the superior axis (axial plane)
    tissue: str  # "wm" or "deep_gm": the tissue the region is restricted to


def _pair(label, name, centre, radii, yaw, tissue):
    """Left (x < 0) and right regions, mirrored."""
    x, y, z = centre
    return [RegionOfInterest(label, f"{name}_left", (-abs(x), y, z), radii, -yaw, tissue),
            RegionOfInterest(label + 1, f"{name}_right", (abs(x), y, z), radii, yaw, tissue)]


ROIS = (
    _pair(1, "lentiform_nucleus", (25, 2, 1), (6, 11, 7), -15, "deep_gm")
    + _pair(3, "thalamus", (11, -18, 6), (6, 11, 7.5), 5, "deep_gm")
    + _pair(5, "posterior_limb_internal_capsule", (19, -13, 6), (3, 9, 7), -25, "wm")
    + _pair(7, "posterior_thalamic_radiation", (33, -58, 4), (3, 12, 6), 12, "wm")
    + [RegionOfInterest(9, "splenium_corpus_callosum", (0, -37, 13), (14, 5, 5.5), 0, "wm")]
)
LABELS = {roi.name: roi.label for roi in ROIS}
# Deep grey nuclei differ in cell density: diffusivities relative to the deep-grey eigenvalue pool
# (lentiform nucleus MD ~ 0.71e-3, thalamus ~ 0.88e-3 mm^2/s in adults; the seed paper's Table 2).
NUCLEUS_DIFFUSIVITY = {1: 0.86, 2: 0.86, 3: 1.06, 4: 1.06}
ROI_GROUPS = {  # the paper's five ROIs: label numbers of each
    "lentiform_nucleus": (1, 2), "thalamus": (3, 4), "posterior_limb_internal_capsule": (5, 6),
    "posterior_thalamic_radiation": (7, 8), "splenium_corpus_callosum": (9,),
}


def label_table():
    """{label: (ROI name, ROI group)}: each phantom ROI label and which of the seed paper's five ROIs it
    belongs to (ROI_GROUPS)."""
    return {roi.label: (roi.name, next(g for g, labels in ROI_GROUPS.items() if roi.label in labels)) for roi in ROIS}


def label_table_tsv():
    """label_table() as labels.tsv text (index, name, roi), the atlas label-table format."""
    return "index\tname\troi\n" + "".join(f"{label}\t{name}\t{group}\n" for label, (name, group) in label_table().items())


@lru_cache(maxsize=1)
def tissue_atlas():
    """(maps float32 (X, Y, Z, 4): WM, GM, CSF probabilities and T1 in [0, 1]; voxel -> MNI affine)."""
    img = nib.load(str(TISSUE_FILE))
    return np.asarray(img.dataobj, dtype=np.float32) / 255.0, img.affine.astype(np.float64)


def sample_tissue(points):
    """Trilinear WM, GM, CSF fractions (N, 3), normalised to sum <= 1, and T1 (N,) at MNI points (N, 3)."""
    from scipy import ndimage  # here: service.requests imports this module for its option names

    maps, affine = tissue_atlas()
    ijk = np.linalg.solve(affine[:3, :3], (np.asarray(points, dtype=np.float64) - affine[:3, 3]).T)
    values = np.stack([ndimage.map_coordinates(maps[..., c], ijk, order=1, mode="constant", cval=0.0)
                       for c in range(4)], axis=1)
    fractions = np.clip(values[:, :3], 0.0, 1.0)
    total = fractions.sum(axis=1, keepdims=True)
    fractions = np.where(total > 1.0, fractions / np.maximum(total, 1e-12), fractions)
    return fractions.astype(np.float32), values[:, 3].astype(np.float32)


def _rotation_z(degrees):
    a = np.radians(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def roi_membership(points, roi):
    """Boolean (N,): points inside the ROI's ellipsoid (tissue not yet applied)."""
    local = (np.asarray(points) - np.asarray(roi.centre)) @ _rotation_z(roi.yaw_degrees)
    return ((local / np.asarray(roi.radii)) ** 2).sum(axis=1) <= 1.0


def roi_labels(points, fractions):
    """ROI label (N,) int16 at MNI points; 0 outside. WM ROIs need WM >= 0.5, nuclei GM + WM >= 0.5."""
    labels = np.zeros(len(points), dtype=np.int16)
    wm, gm = fractions[:, 0], fractions[:, 1]
    for roi in ROIS:
        inside = roi_membership(points, roi)
        inside &= (wm >= 0.5) if roi.tissue == "wm" else (gm + wm >= 0.5)
        labels[inside] = roi.label
    return labels


# ----------------------------------------------------------------------------- fibres

@dataclass(frozen=True)
class Tract:
    name: str
    centreline: tuple  # MNI mm points of the right-hemisphere tract (mirrored for the left)
    radius: float  # mm: weight exp(-d^2 / (2 (radius/2)^2)), zero beyond 1.5 radius
    dispersion: float  # orientation dispersion delta: D -> (1 - delta) D + delta MD I (keeps MD)


TRACTS = (
    Tract("corticospinal", ((9, -24, -38), (16, -17, -10), (20, -14, 8), (24, -16, 28), (28, -18, 48),
                            (32, -20, 62)), 6.0, 0.05),
    Tract("posterior_thalamic_radiation", ((18, -30, 5), (30, -44, 4), (34, -60, 4), (30, -84, 4)), 5.0, 0.30),
    Tract("superior_longitudinal", ((36, 22, 24), (38, -6, 30), (37, -36, 30), (40, -56, 18)), 6.0, 0.25),
    Tract("cingulum", ((8, 32, 14), (8, 8, 32), (8, -26, 34), (8, -50, 18)), 4.0, 0.15),
    Tract("anterior_thalamic_radiation", ((10, -12, 6), (16, 8, 4), (22, 30, 8)), 4.0, 0.20),
    # The posterior limb of the internal capsule carries a fan of projection fibres, not one bundle.
    Tract("corticopontine", ((11, -14, -22), (16, -9, -4), (20, -6, 10), (24, -6, 30), (28, -4, 50)), 5.0, 0.10),
    Tract("superior_thalamic_radiation", ((13, -21, 6), (20, -22, 14), (25, -27, 34), (29, -31, 52)), 5.0, 0.10),
)
CALLOSUM_DISPERSION = 0.05
BACKGROUND_DISPERSION = 0.45  # association and U-fibres: many orientations per voxel


def _tract_field(points, centreline, radius):
    """(weight (N,), unit tangent (N, 3)) of one centreline at points (N, 3).

    The weight is zero beyond 1.5 radius of the centreline; there the tangent is the first segment's
    (any unit vector would do: a zero weight never gives a compartment a volume fraction), so only
    points in the centreline's bounding box, grown by 1.5 radius, are measured.
    """
    c = np.asarray(centreline, dtype=np.float64)
    reach = 1.5 * radius
    near = np.flatnonzero(((points >= c.min(axis=0) - reach) & (points <= c.max(axis=0) + reach)).all(axis=1))
    weight = np.zeros(len(points))
    tangent = np.tile((c[1] - c[0]) / np.linalg.norm(c[1] - c[0]), (len(points), 1))
    points = points[near]
    best_d2 = np.full(len(points), np.inf)
    for a, b in zip(c[:-1], c[1:]):
        seg = b - a
        t = np.clip((points - a) @ seg / (seg @ seg), 0.0, 1.0)
        d2 = ((points - (a + t[:, None] * seg)) ** 2).sum(axis=1)
        closer = d2 < best_d2
        best_d2[closer] = d2[closer]
        tangent[near[closer]] = seg / np.linalg.norm(seg)
    sigma = radius / 2.0
    weight[near] = np.where(best_d2 <= reach**2, np.exp(-best_d2 / (2 * sigma**2)), 0.0)
    return weight, tangent


def _callosal_field(points):
    """Corpus callosum: an arched sheet crossing the midline, fanning upward laterally."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    arch = 24.0 - 0.012 * (y + 6.0) ** 2  # sheet height: genu and splenium (z ~ 12) low, body (24) high
    half_thickness = 3.5 + 2.5 * np.clip((np.abs(y + 6.0) - 20.0) / 15.0, 0.0, 1.0)  # thick at the ends
    across = np.exp(-((z - arch) ** 2) / (2 * half_thickness**2))
    along = np.clip((33.0 - np.abs(y + 6.0)) / 6.0, 0.0, 1.0) * (y > -44) * (y < 31)
    lateral = np.exp(-np.maximum(np.abs(x) - 12.0, 0.0) ** 2 / (2 * 14.0**2))
    weight = across * along * lateral
    tilt = 0.7 * np.tanh(x / 20.0)
    # Lateral to the splenium the forceps major turns back towards the occipital poles.
    splenial = np.clip((-y - 28.0) / 10.0, 0.0, 1.0) * np.tanh(np.maximum(np.abs(x) - 10.0, 0.0) / 10.0)
    direction = np.stack([np.ones_like(x), -splenial * np.sign(x), tilt], axis=1)
    return weight, direction / np.linalg.norm(direction, axis=1, keepdims=True)


def fibre_compartments(points):
    """WM fibre compartments at MNI points (N, 3): up to MAX_FIBRES per voxel.

    Returns directions (N, K, 3) (unit, MNI RAS), fractions (N, K) summing to 1 within WM and the
    orientation dispersion (N, K) of each compartment's tract. A compartment of fraction 0 carries some
    unit direction that means nothing. Tracts compete by weight; the radial
    background fibre fills WM that no tract reaches.
    """
    points = np.asarray(points, dtype=np.float64)
    weights, directions, dispersions = [], [], []
    for tract in TRACTS:
        for side in (1.0, -1.0):
            line = np.asarray(tract.centreline) * [side, 1.0, 1.0]
            w, d = _tract_field(points, line, tract.radius)
            weights.append(w)
            directions.append(d)
            dispersions.append(tract.dispersion)
    w, d = _callosal_field(points)
    weights.append(w)
    directions.append(d)
    dispersions.append(CALLOSUM_DISPERSION)
    radial = points - np.array([0.0, -15.0, 12.0])
    radial /= np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-9)
    weights.append(np.full(len(points), BACKGROUND_WEIGHT))
    directions.append(radial)
    dispersions.append(BACKGROUND_DISPERSION)
    weights = np.stack(weights, axis=1)
    directions = np.stack(directions, axis=1)
    top = np.argsort(-weights, axis=1)[:, :MAX_FIBRES]
    rows = np.arange(len(points))[:, None]
    chosen_w = weights[rows, top]
    # Drop compartments much weaker than the strongest: they would only blur a coherent tract.
    chosen_w = np.where(chosen_w >= 0.5 * chosen_w[:, :1], chosen_w, 0.0)
    fractions = chosen_w / chosen_w.sum(axis=1, keepdims=True)
    return directions[rows, top], fractions, np.asarray(dispersions)[top]
