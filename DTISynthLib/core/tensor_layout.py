"""The six-element tensor layout used everywhere: (..., 6) = Dxx, Dyy, Dzz, Dxy, Dxz, Dyz (MRtrix3's
order), in mm^2/s and the RAS world frame, and its symmetric 3x3 matrices.
"""

import numpy as np

TENSOR6_INDEX = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]  # (row, column) of each of the six


def tensor6_to_matrix(tensor6):
    """(..., 6) Dxx, Dyy, Dzz, Dxy, Dxz, Dyz -> symmetric (..., 3, 3)."""
    tensor6 = np.asarray(tensor6)
    m = np.empty(tensor6.shape[:-1] + (3, 3), dtype=tensor6.dtype)
    for c, (r, k) in enumerate(TENSOR6_INDEX):
        m[..., r, k] = tensor6[..., c]
        m[..., k, r] = tensor6[..., c]
    return m


def matrix_to_tensor6(matrices):
    """Symmetric (..., 3, 3) -> (..., 6) Dxx, Dyy, Dzz, Dxy, Dxz, Dyz."""
    return np.stack([matrices[..., r, k] for r, k in TENSOR6_INDEX], axis=-1)


def smallest_eigenvalue(tensor6):
    """Smallest eigenvalue (...) of symmetric 3 x 3 matrices given as (..., 6) in closed form (the
    trigonometric solution of the characteristic cubic: with q = trace / 3, p = sqrt(|A - q I|_F^2 / 6)
    and B = (A - q I) / p, the smallest is q + 2 p cos(arccos(det(B) / 2) / 3 + 2 pi / 3)); numpy's
    eigvalsh takes 20 times longer on a brain's voxels."""
    t = np.asarray(tensor6, dtype=np.float64)
    q = t[..., :3].mean(-1)
    a, b, c = t[..., 0] - q, t[..., 1] - q, t[..., 2] - q
    d, e, f = t[..., 3], t[..., 4], t[..., 5]  # xy, xz, yz
    p = np.sqrt((a * a + b * b + c * c + 2 * (d * d + e * e + f * f)) / 6.0)
    determinant = a * (b * c - f * f) - d * (d * c - f * e) + e * (d * f - b * e)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(p > 0, determinant / np.maximum(p, 1e-300) ** 3 / 2.0, 0.0)
    phi = np.arccos(np.clip(r, -1.0, 1.0)) / 3.0
    return q + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0)


def shrink_off_diagonals(tensor6, margin=1.0):
    """Tensors (..., 6) with their off-diagonal terms scaled down together, just enough that each is
    positive semi-definite; the diagonal (so MD) is kept. With C = I + R the correlation matrix
    (R: D_ij / sqrt(D_ii D_jj), zero diagonal), the smallest eigenvalue of I + t R is 1 + t
    lambda_min(R), so t = min(1, -margin / lambda_min(R)). A negative diagonal term (noise) is kept, and
    the off-diagonal terms that involve it become 0."""
    tensor = np.array(tensor6, dtype=np.float64)
    scale = np.sqrt(np.maximum(tensor[..., :3], 0.0))
    pairs = np.stack([scale[..., 0] * scale[..., 1], scale[..., 0] * scale[..., 2], scale[..., 1] * scale[..., 2]], -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(pairs > 0, tensor[..., 3:] / pairs, 0.0)
    smallest = smallest_eigenvalue(np.concatenate([np.zeros_like(r), r], -1))
    with np.errstate(divide="ignore"):
        t = np.where(smallest < -margin, -margin / smallest, 1.0)
    tensor[..., 3:] = r * t[..., None] * pairs
    return tensor


def shrink_toward(tensor6, anchor6):
    """Tensors (..., 6) moved toward positive definite anchors (..., 6): D_t = A + t (D - A) with the
    largest t in [0, 1] that makes D_t positive semi-definite. Every linear constraint that both D and A
    satisfy (g^T D g = ADC along measured directions) holds for D_t too. With A = L L^T (Cholesky) and
    M = L^-1 (D - A) L^-T, lambda_min(A + t (D - A)) >= 0 iff 1 + t lambda_min(M) >= 0. For a diagonal
    anchor equal to D's own diagonal this is shrink_off_diagonals."""
    tensor = np.asarray(tensor6, dtype=np.float64)
    anchor = np.asarray(anchor6, dtype=np.float64)
    t = np.ones(tensor.shape[:-1])
    # Only tensors not clearly positive need M: lambda_min(M) >= lambda_min(D) / lambda_max(A) - 1, and
    # lambda_max(A) <= trace(A), so a margin of 1e-6 trace(A) keeps t = 1 there beyond any rounding.
    doubtful = ~(smallest_eigenvalue(tensor) > 1e-6 * anchor[..., :3].sum(-1))
    lower = np.linalg.cholesky(tensor6_to_matrix(anchor[doubtful]))
    inverse = np.linalg.inv(lower)
    m = inverse @ tensor6_to_matrix(tensor[doubtful] - anchor[doubtful]) @ np.swapaxes(inverse, -1, -2)
    smallest = smallest_eigenvalue(matrix_to_tensor6(m))
    with np.errstate(divide="ignore"):
        t[doubtful] = np.where(smallest < -1.0, -1.0 / smallest, 1.0)
    return anchor + t[..., None] * (tensor - anchor)
