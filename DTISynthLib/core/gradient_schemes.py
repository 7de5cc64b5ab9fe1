"""Gradient tables of the acquisitions DTISynth simulates and synthesizes (b in s/mm^2).

Frames: every table is returned as unit vectors in the RAS world (scanner) frame, like every DWI in
memory. Siemens defines its 6-direction DTI scheme in the device frame, which for a head-first
supine patient is DICOM's LPS patient frame: SIEMENS_6_LPS holds it as published; the RAS table
negates x and y (up to sign, the set is unchanged but the order of directions 1-2 swaps meaning).
"""

import numpy as np

from .frames import LPS_TO_RAS

SIEMENS_6_LPS = np.array([[1, 0, 1], [-1, 0, 1], [0, 1, 1], [0, 1, -1], [1, 1, 0], [-1, 1, 0]],
                         dtype=np.float64) / np.sqrt(2.0)
SIEMENS_6_RAS = SIEMENS_6_LPS @ LPS_TO_RAS.T
AXES_3_RAS = np.eye(3)  # conventional clinical DWI: x, y, z of the scanner
DEFAULT_B = 1000.0


def with_b0(directions, b=DEFAULT_B):
    """(bvals (n+1,), gradients (n+1, 3)) with one b=0 volume first, then `directions` at `b`."""
    directions = np.asarray(directions, dtype=np.float64)
    return np.r_[0.0, np.full(len(directions), float(b))], np.vstack([np.zeros((1, 3)), directions])


def dti_6(b=DEFAULT_B):
    """b=0 + Siemens' 6 directions (RAS)."""
    return with_b0(SIEMENS_6_RAS, b)


def dwi_3(b=DEFAULT_B):
    """b=0 + the scanner's x, y, z axes (RAS)."""
    return with_b0(AXES_3_RAS, b)
