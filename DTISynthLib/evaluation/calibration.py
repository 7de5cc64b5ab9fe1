"""Is the synthetic DTI's orientation confidence honest? Calibration of `maps/v1_confidence` (written by
kinds that classify the off-diagonal signs) against the observed angle between the synthetic and a
reference principal eigenvector (the acquired DTI's, or the truth's).

Per confidence bin over the white-matter voxels (reference FA > WM_FA): voxels, their share of white
matter, the mean confidence, the median V1 angle (degrees) and the share within the confidence's own
angle (the probability it claims). Calibrated means: that share is about the mean confidence in every
bin, and the angle falls as confidence rises. V1 vectors are unit vectors in one frame (sign-free).
"""

import numpy as np

from ..core.orientation_confidence import CONFIDENT
from ..core.tables import new_figure
from ..fit.tensor_maps import v1_angles

CONFIDENCE_BINS = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
WM_FA = 0.3  # reference FA above which a voxel counts as white matter (as the quality benchmark on real scans)


def v1_calibration(confidence, v1, reference_v1, white_matter, angle_degrees):
    """(rows, summary) of the calibration (module docstring). confidence (x, y, z) in [0, 1]; v1 and
    reference_v1 (x, y, z, 3) unit vectors in one frame; white_matter (x, y, z) bool; angle_degrees: the
    angle the confidence is about (the package's v1_confidence.angle_degrees).

    rows: {low, high, voxels, wm_share, mean_confidence, median_angle_degrees, within_angle_share}
    (NaN for an empty bin); summary: {wm_voxels, confident_share (confidence >= CONFIDENT),
    confident_median_angle_degrees, median_angle_degrees, brier}."""
    c = np.asarray(confidence, dtype=np.float64)[white_matter]
    angles = v1_angles(np.asarray(v1)[white_matter], np.asarray(reference_v1)[white_matter])
    within = angles <= angle_degrees
    rows = []
    edges = list(CONFIDENCE_BINS)
    for k, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        inside = (c >= low) & ((c < high) if k < len(edges) - 2 else (c <= high))
        n = int(inside.sum())
        rows.append({"low": low, "high": high, "voxels": n, "wm_share": n / max(c.size, 1),
                     "mean_confidence": float(c[inside].mean()) if n else float("nan"),
                     "median_angle_degrees": float(np.median(angles[inside])) if n else float("nan"),
                     "within_angle_share": float(within[inside].mean()) if n else float("nan")})
    confident = c >= CONFIDENT
    summary = {"wm_voxels": int(c.size), "angle_degrees": float(angle_degrees), "confident_threshold": CONFIDENT,
               "confident_share": float(confident.mean()) if c.size else float("nan"),
               "confident_median_angle_degrees": float(np.median(angles[confident])) if confident.any() else float("nan"),
               "median_angle_degrees": float(np.median(angles)) if c.size else float("nan"),
               "brier": float(np.mean((c - within) ** 2)) if c.size else float("nan")}
    return rows, summary


def write_calibration_figure(path, rows_by_subject, angle_degrees):
    """A two-panel PNG: median V1 angle per confidence bin (one line per subject) and the share of
    white-matter voxels in each bin. rows_by_subject: {subject: rows of v1_calibration}."""
    fig, (angle_axis, share_axis) = new_figure(1, 2, figsize=(9, 3.4))
    for subject, rows in rows_by_subject.items():
        centres = [(r["low"] + r["high"]) / 2 for r in rows]
        angle_axis.plot(centres, [r["median_angle_degrees"] for r in rows], "o-", label=subject)
        share_axis.plot(centres, [r["wm_share"] for r in rows], "o-", label=subject)
    angle_axis.axhline(angle_degrees, color="grey", linestyle=":", label=f"{angle_degrees:g} degrees")
    angle_axis.set(xlabel="v1_confidence", ylabel="median V1 angle (degrees)", title="error by confidence")
    share_axis.set(xlabel="v1_confidence", ylabel="share of white-matter voxels", title="how much is confident")
    angle_axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
