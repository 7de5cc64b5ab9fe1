"""The six-element tensor layout used everywhere: (..., 6) = Dxx, Dyy, Dzz, Dxy, Dxz, Dyz (MRtrix3's
order), in mm^2/s and the RAS world frame, and its symmetric 3x3 matrices.
"""

import numpy as np

_TENSOR6_INDEX = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]


def tensor6_to_matrix(tensor6):
    """(..., 6) Dxx, Dyy, Dzz, Dxy, Dxz, Dyz -> symmetric (..., 3, 3)."""
    tensor6 = np.asarray(tensor6)
    m = np.empty(tensor6.shape[:-1] + (3, 3), dtype=tensor6.dtype)
    for c, (r, k) in enumerate(_TENSOR6_INDEX):
        m[..., r, k] = tensor6[..., c]
        m[..., k, r] = tensor6[..., c]
    return m


def matrix_to_tensor6(matrices):
    """Symmetric (..., 3, 3) -> (..., 6) Dxx, Dyy, Dzz, Dxy, Dxz, Dyz."""
    return np.stack([matrices[..., r, k] for r, k in _TENSOR6_INDEX], axis=-1)
