"""Paired training data from real multi-direction scans: a 3-direction input and a 6-direction target.

Modes
- "nearest": the measured volumes closest in angle (sign-free) to the scanner's x, y, z axes and
  to Siemens' 6 directions; each volume keeps its true gradient vector and b-value, and the angle
  between it and the nominal direction is reported.
- "tensor": signals predicted from the full tensor fit of all volumes (IWLS, brain mask) at exactly
  the nominal directions and at `b` (default 1000 s/mm^2, the models' b-value); zero outside the
  brain mask. Angle errors are zero by construction.
Frames: nominal and measured directions are RAS world (scanner) vectors, as everywhere in memory.
"""

import numpy as np

from ..core.dwi import DWI
from ..core.errors import InputError
from ..core.gradient_schemes import AXES_3_RAS, DEFAULT_B, SIEMENS_6_RAS, dti_6, dwi_3
from ..fit.brain_mask import brain_mask
from ..fit.tensor_fit import fit_tensors, predict_signals

MODES = ("nearest", "tensor")
ANGLE_WARNING_DEGREES = 10.0  # a direction this far from nominal is a warning


def nearest_volumes(dwi, directions):
    """For each nominal direction (RAS), the diffusion-weighted volume closest in angle (sign-free).

    Returns (volume indices (m,), angles in degrees (m,)).
    """
    weighted = np.flatnonzero(~dwi.is_b0)
    cosines = np.abs(dwi.gradients[weighted] @ np.asarray(directions, dtype=np.float64).T)
    best = np.argmax(cosines, axis=0)
    angles = np.degrees(np.arccos(np.clip(cosines[best, np.arange(len(directions))], -1.0, 1.0)))
    return weighted[best], angles


def _nearest_acquisition(dwi, directions):
    index, angles = nearest_volumes(dwi, directions)
    b0 = dwi.mean_b0()[..., None]
    data = np.concatenate([b0, dwi.data[..., index]], axis=-1)
    bvals = np.r_[0.0, dwi.bvals[index]]
    gradients = np.vstack([np.zeros((1, 3)), dwi.gradients[index]])
    return DWI(data, dwi.affine, bvals, gradients, dwi.source), index, angles


def make_pairs(dwi, mode="nearest", b=DEFAULT_B):
    """(3-direction DWI, 6-direction DTI, report) from a checked single-shell multi-direction DWI."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    report = {"source": dwi.source, "mode": mode, "source_b_values": sorted(set(np.round(dwi.bvals).tolist()))}
    if mode == "nearest":
        dwi3, index3, angles3 = _nearest_acquisition(dwi, AXES_3_RAS)
        dti6, index6, angles6 = _nearest_acquisition(dwi, SIEMENS_6_RAS)
        if len(set(index6.tolist())) < 6:
            raise InputError(dwi.source, "6 distinct volumes nearest to Siemens' 6 directions",
                             f"volumes {index6.tolist()} (too few or clustered directions)")
        report.update(dwi3_volumes=index3.tolist(), dwi3_angle_degrees=np.round(angles3, 2).tolist(),
                      dti6_volumes=index6.tolist(), dti6_angle_degrees=np.round(angles6, 2).tolist())
        return dwi3, dti6, report
    mask = brain_mask(dwi.mean_b0())
    fit = fit_tensors(dwi, mask)
    acquisitions = []
    for bvals, gradients in (dwi_3(b), dti_6(b)):
        signal = predict_signals(fit.tensor, fit.s0, bvals, gradients)
        signal[~mask] = 0.0
        acquisitions.append(DWI(signal.astype(np.float32), dwi.affine, bvals, gradients, dwi.source))
    _, angles3 = nearest_volumes(dwi, AXES_3_RAS)
    _, angles6 = nearest_volumes(dwi, SIEMENS_6_RAS)
    report.update(b_value=b, dwi3_angle_degrees=[0.0] * 3, dti6_angle_degrees=[0.0] * 6,
                  nearest_measured_angle_degrees=np.round(np.r_[angles3, angles6], 2).tolist(),
                  mask_voxels=int(mask.sum()))
    return acquisitions[0], acquisitions[1], report
