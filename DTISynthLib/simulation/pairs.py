"""Paired training data from real multi-direction scans: a 3-direction input and a 6-direction target.

Modes
- "nearest": distinct measured volumes matched one-to-one to the scanner's x, y, z axes and to
  Siemens' 6 directions, minimising the total angle (sign-free; core.gradient_schemes.nearest_volumes,
  as synthesize matches its input); each volume keeps its true gradient vector and b-value, and the
  angle between it and the nominal direction is reported. Refused when the three DWI volumes are not
  well conditioned (core.gradient_schemes.check_three_directions, synthesize's own test, so that every
  pair written is one synthesize accepts) or a DTI volume lies more than MAX_ANGLE_DEGREES from its
  nominal direction.
- "tensor": signals predicted from the full tensor fit of all volumes (IWLS, brain mask) at exactly
  the nominal directions and at `b` (default 1000 s/mm^2, the models' b-value); zero outside the
  brain mask and wherever the fit gives no finite, positive prediction (a voxel whose tensor is not
  positive definite can predict a signal above S0 or overflow). Angle errors are zero by construction.
Frames: nominal and measured directions are RAS world (scanner) vectors, as everywhere in memory.
"""

import numpy as np
from ..core.dwi import DWI
from ..core.errors import InputError
from ..core.gradient_schemes import (
    AXES_3_RAS,
    DEFAULT_B,
    SIEMENS_6_RAS,
    check_three_directions,
    dti_6,
    dwi_3,
    nearest_volumes,
)
from ..fit.tensor_fit import fit_tensors, predict_signals

MODES = ("nearest", "tensor")
ANGLE_WARNING_DEGREES = 10.0  # a direction this far from nominal is a warning
# A 12-direction scheme in any orientation has, one-to-one, a volume within 32 degrees of each of the
# 3 axes and of Siemens' 6 directions; a volume farther off stands for another direction.
MAX_ANGLE_DEGREES = 35.0


def _nearest_acquisition(dwi, directions, name):
    index, angles = nearest_volumes(dwi, directions)
    worst = int(np.argmax(angles))
    if len(directions) == 3:  # the DWI: refused as synthesize refuses it, by its conditioning
        check_three_directions(dwi.source, dwi.gradients[index])
    elif angles[worst] > MAX_ANGLE_DEGREES:
        raise InputError(dwi.source, f"a distinct volume within {MAX_ANGLE_DEGREES:g} degrees of each of the {name} "
                         "nominal directions (or use --mode tensor)",
                         f"volume {int(index[worst])} at {angles[worst]:.1f} degrees from direction {worst + 1} "
                         f"{np.round(np.asarray(directions)[worst], 3).tolist()}")
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
        dwi3, index3, angles3 = _nearest_acquisition(dwi, AXES_3_RAS, "3 axis")
        dti6, index6, angles6 = _nearest_acquisition(dwi, SIEMENS_6_RAS, "6 DTI")
        report.update(dwi3_volumes=index3.tolist(), dwi3_angle_degrees=np.round(angles3, 2).tolist(),
                      dti6_volumes=index6.tolist(), dti6_angle_degrees=np.round(angles6, 2).tolist())
        return dwi3, dti6, report
    from ..fit.brain_mask import brain_mask  # here: service.requests imports this module for its option names

    mask = brain_mask(dwi.mean_b0())
    fit = fit_tensors(dwi, mask)
    acquisitions = []
    for bvals, gradients in (dwi_3(b), dti_6(b)):
        with np.errstate(over="ignore", invalid="ignore"):
            signal = predict_signals(fit.tensor, fit.s0, bvals, gradients).astype(np.float32)
        valid = mask & np.isfinite(signal).all(axis=-1) & (signal[..., 0] > 0)
        signal[~valid] = 0.0
        acquisitions.append(DWI(signal, dwi.affine, bvals, gradients, dwi.source))
    _, angles3 = nearest_volumes(dwi, AXES_3_RAS)
    _, angles6 = nearest_volumes(dwi, SIEMENS_6_RAS)
    report.update(b_value=b, dwi3_angle_degrees=[0.0] * 3, dti6_angle_degrees=[0.0] * 6,
                  nearest_measured_angle_degrees=np.round(np.r_[angles3, angles6], 2).tolist(),
                  mask_voxels=int(mask.sum()))
    return acquisitions[0], acquisitions[1], report
