"""Diffusion tensor fitting, vectorised over voxels.

Model: ln S(b, g) = ln S0 - b g^T D g, with b in s/mm^2, g a unit vector in the RAS world frame,
so D is in mm^2/s and in the RAS world frame. Parameters per voxel, in MRtrix3's order:
(Dxx, Dyy, Dzz, Dxy, Dxz, Dyz, ln S0).

Methods
- "ols": log-linear ordinary least squares.
- "wls": weighted least squares with weights S_pred^2 from the OLS prediction (Salvador 2005;
  dipy's WLS).
- "iwls": MRtrix3's dwi2tensor default: a first WLS pass weighted by the measured signals S^2, then
  `iterations` passes weighted by the previous pass's predicted signals.
With b0 + 6 directions the system is exactly determined and all three give the same tensor.

Signal policy: a signal below 1e-6 x the voxel's largest signal (including S <= 0) is raised to that
floor before the log, as MRtrix3 does; it then gets a near-zero weight in WLS / IWLS. A voxel with
no positive signal at all, or whose fit is degenerate, gets a zero tensor (never NaN). A signal above
S0 is kept as measured (it lowers the apparent diffusivity along its direction and may make an
eigenvalue negative; see tensor_maps for the negative-eigenvalue policy). Every volume is its own
row of the fit, b=0 volumes and repeated directions included, as in MRtrix3's dwi2tensor.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..core.dwi import B0_THRESHOLD, DWI
from ..core.errors import InputError
from ..core.native_libraries import LOADING, SharedSetting

METHODS = ("ols", "wls", "iwls")
SIGNAL_FLOOR = 1e-6  # relative to the voxel's largest signal
# Largest condition number of the unit-free design matrix (diffusion columns divided by the largest b)
# accepted: scanners' schemes measure 6-15 (Siemens' 6 directions 6.2, the shared real scans 9-13),
# random 6-direction sets have a median of 38; near-coplanar directions reach 1e4-1e6, where noise is
# amplified into FA ~1 and negative MD.
MAX_CONDITION = 1000.0
CHUNK_VOXELS = 8192  # bounds working memory: about 1 kB per voxel of float64 temporaries


@dataclass
class TensorFit:
    """tensor: float32 (x, y, z, 6) Dxx, Dyy, Dzz, Dxy, Dxz, Dyz in mm^2/s, RAS world frame;
    s0: float32 (x, y, z) fitted b=0 signal; mask: bool (x, y, z) voxels fitted (zero elsewhere)."""

    tensor: np.ndarray
    s0: np.ndarray
    mask: np.ndarray


def design_matrix(bvals, gradients):
    """(n, 7) matrix B with ln S = B @ (Dxx, Dyy, Dzz, Dxy, Dxz, Dyz, ln S0)."""
    b = np.asarray(bvals, dtype=np.float64)[:, None]
    g = np.asarray(gradients, dtype=np.float64)
    x, y, z = g[:, 0:1], g[:, 1:2], g[:, 2:3]
    return np.hstack([-b * x * x, -b * y * y, -b * z * z, -2 * b * x * y, -2 * b * x * z, -2 * b * y * z,
                      np.ones_like(b)])


def design_condition(bvals, gradients):
    """Condition number of the design matrix with its diffusion columns divided by the largest b."""
    b = np.asarray(bvals, dtype=np.float64)
    design = design_matrix(b, gradients) / np.r_[np.full(6, max(b.max(), 1.0)), 1.0]
    singular = np.linalg.svd(design, compute_uv=False)
    return float(singular[0] / singular[-1]) if singular[-1] > 0 else float("inf")


def check_design(source, bvals, gradients):
    """Refuse a gradient table that does not determine a tensor, or determines it only ill-conditioned."""
    weighted = np.asarray(bvals) > B0_THRESHOLD
    rank = np.linalg.matrix_rank(design_matrix(bvals, gradients))
    if rank < 7 or not (~weighted).any():
        raise InputError(source, "b=0 and at least 6 diffusion directions that determine a tensor",
                         f"{int(weighted.sum())} diffusion-weighted volumes spanning only {max(rank - 1, 0)} of the 6 "
                         "tensor components")
    condition = design_condition(bvals, gradients)
    if condition > MAX_CONDITION:
        raise InputError(source, f"gradient directions spread in 3D (design-matrix condition number <= {MAX_CONDITION:g})",
                         f"condition number {condition:.3g}: the directions are nearly coplanar or clustered, so "
                         "noise would dominate the fitted tensor")


def solve_spd(normal, rhs):
    """Solve symmetric positive-definite systems laid out voxel-last: normal (k, k, N), rhs (k, N).

    A Cholesky factorisation written as k^2 vector operations over the N voxels: far faster than N
    small LAPACK calls. A voxel whose matrix is not positive definite gets NaN parameters.
    """
    k = normal.shape[0]
    lower = np.zeros_like(normal)
    with np.errstate(invalid="ignore", divide="ignore"):
        for j in range(k):
            pivot = normal[j, j] - np.einsum("kn,kn->n", lower[j, :j], lower[j, :j])
            lower[j, j] = np.sqrt(np.where(pivot > 0, pivot, np.nan))
            for i in range(j + 1, k):
                lower[i, j] = (normal[i, j] - np.einsum("kn,kn->n", lower[i, :j], lower[j, :j])) / lower[j, j]
        y = np.empty_like(rhs)
        for i in range(k):
            y[i] = (rhs[i] - np.einsum("kn,kn->n", lower[i, :i], y[:i])) / lower[i, i]
        x = np.empty_like(rhs)
        for i in reversed(range(k)):
            x[i] = (y[i] - np.einsum("kn,kn->n", lower[i + 1:, i], x[i + 1:])) / lower[i, i]
    return x


def _weighted_solve(design, weights_sq, log_signal):
    """Per-voxel weighted least squares: solve (B^T W B) p = B^T W y for (N, n) weights W -> (N, 7)."""
    scale = np.abs(design).max(axis=0)  # equilibrate columns (b ~ 1e3 against 1 for ln S0)
    scaled = design / scale
    n_params = scaled.shape[1]
    outer = (scaled[:, :, None] * scaled[:, None, :]).reshape(scaled.shape[0], -1)
    normal = (outer.T @ weights_sq.T).reshape(n_params, n_params, -1)
    rhs = scaled.T @ (weights_sq * log_signal).T
    return (solve_spd(normal, rhs) / scale[:, None]).T


def fit_signals(signals, bvals, gradients, method="iwls", iterations=2):
    """Fit tensors to signals (N, n) with float64 arithmetic -> parameters (N, 7) (see design_matrix)."""
    if method not in METHODS:
        raise ValueError(f"fit method must be one of {METHODS}, not {method!r}")
    design = design_matrix(bvals, gradients)
    signals = np.asarray(signals, dtype=np.float64)
    params = _fit_log_linear(design, signals, method, iterations)
    params[signals.max(axis=1) <= 0] = 0.0  # no signal at all: no tensor
    return params


def _fit_log_linear(design, signals, method, iterations):
    floor = SIGNAL_FLOOR * signals.max(axis=1, keepdims=True)
    signals = np.maximum(signals, np.maximum(floor, np.finfo(np.float64).tiny))
    log_signal = np.log(signals)
    params = log_signal @ np.linalg.pinv(design).T  # OLS
    if method == "ols" or np.linalg.matrix_rank(design) == design.shape[0]:
        return params  # exactly determined: every weighting gives the same solution
    if method == "wls":
        return _weighted_solve(design, _predicted_weights(params, design)**2, log_signal)
    weights = signals
    for _ in range(iterations + 1):
        params = _weighted_solve(design, weights**2, log_signal)
        weights = _predicted_weights(params, design)
    return params


def _predicted_weights(params, design):
    # Clipped so that squared weights stay finite in float64 for wild fits in noise-only voxels.
    return np.exp(np.clip(params @ design.T, -300.0, 300.0))


def voxel_order(array):
    """The order ("F" or "C") in which `array`'s voxels lie in memory: volumes read from NIfTI are
    Fortran-ordered (x fastest). Working in that order saves a transposing copy on the way in and
    on the way out (NIfTI is written in F order)."""
    return "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"


def voxel_rows(array, order):
    """(voxels, k) rows of an (x, y, z, k) array laid out in `order`: a view of a contiguous array, so
    writing the rows writes the array."""
    return array.reshape(-1, array.shape[-1], order=order)


def _one_blas_thread():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas").restore_original_limits


_ONE_BLAS_THREAD = SharedSetting(_one_blas_thread, LOADING)


def single_threaded_blas():
    """BLAS limited to one thread within the block (threadpoolctl); the loaded libraries are looked up
    under core.native_libraries.LOADING, never while a background thread loads one. Blocks may overlap
    in several threads: the first in sets the limit, the last out restores the process's own
    (SharedSetting)."""
    return _ONE_BLAS_THREAD.held()


def chunk_threads():
    """in_chunks' threads: one per core this process may run on, up to 4, or fewer where OMP_NUM_THREADS
    asks for fewer (the workers of a local Dask cluster: 1, one core each, so two workers on two cores
    do not run four threads)."""
    cores = len(os.sched_getaffinity(0))
    try:
        asked = int(os.environ.get("OMP_NUM_THREADS", "0"))
    except ValueError:
        asked = 0
    return max(1, min(4, cores, asked if asked > 0 else cores))


def in_chunks(index, work, progress=None, chunk=CHUNK_VOXELS):
    """Call work(rows) on consecutive chunks of `chunk` indices (voxels; GridSignals.signals_of: slices),
    on chunk_threads() threads (numpy releases the GIL in its loops), each with single-threaded BLAS
    (threads of threads oversubscribe: on 2 cores the 30-direction IWLS fit takes 0.95 s this way, 1.2 s with BLAS's own
    two threads alone, 1.6 s with both). `work` must write disjoint rows only. progress(fraction) after each
    chunk, from this thread."""
    chunks = [index[start:start + chunk] for start in range(0, index.size, chunk)]
    settings = np.geterr()  # numpy's error state is per thread: the chunks keep the caller's (np.errstate)

    def run(rows):
        with np.errstate(**settings):
            return work(rows)

    with single_threaded_blas(), ThreadPoolExecutor(chunk_threads()) as pool:
        for done, _ in enumerate(pool.map(run, chunks), 1):
            if progress:
                progress(done / len(chunks))


def fit_tensors(dwi: DWI, mask=None, method="iwls", iterations=2, progress=None):
    """Fit a tensor in every mask voxel of a checked single-shell DWI.

    mask: bool (x, y, z) or None for every voxel whose mean b=0 signal is positive.
    progress: optional callable(fraction) called after each chunk of voxels.
    Works chunk by chunk on rows gathered from dwi.data: beyond the outputs (7 float32 per voxel, the
    size of a b0 + 6 input) it needs only a few MB of working memory. Outputs are laid out in the
    input's voxel order.
    """
    check_design(dwi.source, dwi.bvals, dwi.gradients)
    shape = dwi.data.shape[:3]
    order = voxel_order(dwi.data)
    flat = voxel_rows(dwi.data, order)
    if mask is None:
        mask = dwi.mean_b0() > 0
    mask = np.asarray(mask, dtype=bool)
    index = np.flatnonzero(mask.ravel(order=order))
    tensor = np.zeros(shape + (6,), dtype=np.float32, order=order)
    s0 = np.zeros(shape + (1,), dtype=np.float32, order=order)
    tensor_rows, s0_rows = voxel_rows(tensor, order), voxel_rows(s0, order)[:, 0]
    def fit_rows(rows):
        params = fit_signals(flat[rows], dwi.bvals, dwi.gradients, method, iterations)
        params[~np.isfinite(params).all(axis=1)] = 0.0  # degenerate voxel: no tensor rather than NaN
        tensor_rows[rows] = params[:, :6]
        s0_rows[rows] = np.where(params[:, 6] != 0, np.exp(np.clip(params[:, 6], -80, 80)), 0.0)

    in_chunks(index, fit_rows, progress)
    return TensorFit(tensor, s0[..., 0], mask)


def predict_signals(tensor6, s0, bvals, gradients):
    """Signals (..., n) of tensors (..., 6) [mm^2/s, RAS] for b-values (s/mm^2) and RAS unit vectors; a
    volume's voxels in chunks (in_chunks: small temporaries, every core)."""
    design = design_matrix(bvals, gradients)[:, :6].T
    tensor6 = np.asarray(tensor6, dtype=np.float64)
    s0 = np.asarray(s0)
    if tensor6[..., 0].size <= CHUNK_VOXELS:
        return s0[..., None] * np.exp(tensor6 @ design)
    rows, s0_rows = tensor6.reshape(-1, 6), np.broadcast_to(s0, tensor6.shape[:-1]).reshape(-1)
    out = np.empty((len(rows), design.shape[1]), np.result_type(s0.dtype, np.float64))

    def signals(index):
        out[index] = s0_rows[index, None] * np.exp(rows[index] @ design)

    in_chunks(np.arange(len(rows)), signals)
    return out.reshape(tensor6.shape[:-1] + (design.shape[1],))


def assembly_matrices(measured_bvals, measured_gradients, bvals, gradients):
    """(from_generated (6, n), from_measured (6, 3)): D = L @ from_generated.T + a @ from_measured.T, the
    tensor (Dxx, Dyy, Dzz, Dxy, Dxz, Dyz; mm^2/s, RAS) that reproduces the measured log-attenuations a
    (N, 3) along `measured_gradients` exactly and fits log-attenuations L (N, n) along `gradients` best
    (least squares): the physics assembly of synthesis.assembly (its docstring); here so that a
    generator kind can use it too (generators.tensor_unet.md_uncertainty_map)."""
    constraint = design_matrix(measured_bvals, measured_gradients)[:, :6]  # (3, 6)
    design = design_matrix(bvals, gradients)[:, :6]  # (n, 6)
    _, singular, vt = np.linalg.svd(constraint)
    rank = int((singular > 1e-12 * singular.max()).sum())
    null = vt[rank:].T  # (6, 6 - rank)
    from_generated = null @ np.linalg.pinv(design @ null)
    from_measured = (np.eye(6) - from_generated @ design) @ np.linalg.pinv(constraint)
    return from_generated, from_measured
