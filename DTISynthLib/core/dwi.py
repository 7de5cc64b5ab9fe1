"""The one in-memory diffusion-weighted image: data, geometry and gradient table.

Frames: `affine` maps voxel indices (i, j, k) to RAS+ millimetres; `gradients` are unit vectors in
that same RAS world frame (see frames.py), zero vectors for b=0 volumes; `bvals` in s/mm^2.
"""

from dataclasses import dataclass

import numpy as np

from .errors import InputError

B0_THRESHOLD = 50.0  # s/mm^2: volumes at or below this b-value count as b=0
SHELL_TOLERANCE = 100.0  # s/mm^2: b-values this close belong to one shell
UNIT_TOLERANCE = 1e-2  # |norm - 1| allowed for a diffusion-weighted gradient vector before refusal
B0_SIGNAL_EXPECTED = "a b=0 volume with signal, mostly positive"


@dataclass
class DWI:
    """Diffusion-weighted image.

    data: float32 (x, y, z, n) signal (C or F order); affine: 4x4 voxel -> RAS mm; bvals: (n,) s/mm^2;
    gradients: (n, 3) unit vectors in RAS world frame (zero for b=0); source: file it came from.
    """

    data: np.ndarray
    affine: np.ndarray
    bvals: np.ndarray
    gradients: np.ndarray
    source: str = "<memory>"

    @property
    def is_b0(self):
        return self.bvals <= B0_THRESHOLD

    def mean_b0(self):
        """Arithmetic mean of the b=0 volumes (x, y, z), float32."""
        index = np.flatnonzero(self.is_b0)
        if len(index) == 1:  # that volume, as the mean gives it, without a float64 reduction over a copy
            return np.array(self.data[..., index[0]], dtype=np.float32)
        return self.data[..., index].mean(axis=-1, dtype=np.float64).astype(np.float32)


def check_dwi(dwi):
    """Validate a DWI and normalise its gradient vectors; raise InputError naming `dwi.source`. Its b=0
    signal must be mostly positive (check_b0_signal)."""
    src = dwi.source
    data = dwi.data
    if data.ndim != 4:
        raise InputError(src, "a 4D image (x, y, z, volumes)", f"{data.ndim}D data of shape {data.shape}")
    n = data.shape[3]
    bvals = np.asarray(dwi.bvals, dtype=np.float64).reshape(-1)
    gradients = np.asarray(dwi.gradients, dtype=np.float64)
    if bvals.shape[0] != n:
        raise InputError(src, f"one b-value per volume ({n} volumes)", f"{bvals.shape[0]} b-values")
    if gradients.shape != (n, 3):
        raise InputError(src, f"one 3-vector per volume ({n} volumes)", f"gradient table of shape {gradients.shape}")
    if not np.isfinite(bvals).all() or (bvals < 0).any():
        raise InputError(src, "finite, non-negative b-values", f"{bvals.tolist()}")
    if not np.isfinite(gradients).all():
        raise InputError(src, "finite gradient vectors", "NaN or inf in the gradient table")
    is_b0 = bvals <= B0_THRESHOLD
    if not is_b0.any():
        raise InputError(src, "at least one b=0 volume (b <= 50 s/mm^2)", f"b-values {sorted(set(bvals.tolist()))}")
    norms = np.linalg.norm(gradients, axis=1)
    bad = np.flatnonzero(~is_b0 & (np.abs(norms - 1.0) > UNIT_TOLERANCE))
    if bad.size:
        k = int(bad[0])
        raise InputError(
            src, "a unit gradient vector on every diffusion-weighted volume",
            f"vector {gradients[k].round(4).tolist()} (norm {norms[k]:.4f}) on volume {k} (b={bvals[k]:g})"
            + (f" and {bad.size - 1} more" if bad.size > 1 else ""))
    finite = np.isfinite(data)
    if not finite.all():
        count = int((~finite).sum())
        first = tuple(int(v) for v in np.argwhere(~finite)[0])
        raise InputError(src, "finite voxel values", f"{count} NaN or inf values, the first at voxel {first}")
    check_b0_signal(src, data[..., is_b0])
    # A diffusion-weighted volume's b-value is b x |g|^2 before g is normalised: Slicer's NRRD rule, and
    # what MRtrix3 does with FSL files, whose text vectors are unit only to ~1e-6.
    bvals = np.where(is_b0, bvals, bvals * norms**2)
    unit = np.where(is_b0[:, None], 0.0, gradients / np.where(norms > 0, norms, 1.0)[:, None])
    # The layout is kept (nibabel loads F order): a transposing copy of a large DWI costs more than the
    # fit's strided gather of voxel rows (fit.tensor_fit.voxel_order).
    return DWI(np.asarray(data, dtype=np.float32), np.asarray(dwi.affine, dtype=np.float64), bvals, unit, src)


def check_b0_signal(src, b0):
    """Refuse b=0 signal (the voxels of one or more b=0 volumes, any shape; the scanner's signal units)
    that is not mostly positive, naming `src`: every voxel zero, or more voxels below 0 than above (no
    voxel above 0 included): a negated image, or a signed one (a phase, a difference), whose fit gives a
    zero tensor everywhere. Magnitude images have no voxel below 0; a real-valued reconstruction's
    zero-mean noise puts about half of the background below 0 and the head above it, so fewer than
    half (the 33 shared real series: none below 0; with noise of 5 % of their b=0's 99th percentile
    added, at most 33 %)."""
    positive = int(np.count_nonzero(b0 > 0))
    negative = int(np.count_nonzero(b0 < 0))
    if positive == 0 and negative == 0:
        raise InputError(src, B0_SIGNAL_EXPECTED, "every b=0 voxel is zero")
    if negative > positive:
        raise InputError(src, B0_SIGNAL_EXPECTED, f"b=0 signal mostly negative: {negative / (positive + negative):.0%} "
                         "of its non-zero voxels below 0 (a negated or signed image?)")


def shells(bvals):
    """Distinct non-zero shells: sorted list of representative b-values (s/mm^2)."""
    found = []
    for b in sorted(float(v) for v in bvals if v > B0_THRESHOLD):
        if not found or b - found[-1][-1] > SHELL_TOLERANCE:
            found.append([b])
        else:
            found[-1].append(b)
    return [float(np.round(np.mean(group))) for group in found]


def select_shell(dwi, shell=None):
    """Keep b=0 volumes and one shell. With `shell` None, a multi-shell DWI is refused."""
    available = shells(dwi.bvals)
    if shell is None:
        if len(available) > 1:
            raise InputError(dwi.source, "a single non-zero shell (or choose one with --shell)",
                             f"shells at b = {', '.join(f'{b:g}' for b in available)} s/mm^2")
        return dwi
    matches = [b for b in available if abs(b - shell) <= SHELL_TOLERANCE]
    if not matches:
        raise InputError(dwi.source, f"a shell at b = {shell:g} s/mm^2",
                         f"shells at b = {', '.join(f'{b:g}' for b in available)} s/mm^2")
    keep = dwi.is_b0 | (np.abs(dwi.bvals - matches[0]) <= SHELL_TOLERANCE)
    return DWI(dwi.data[..., keep], dwi.affine, dwi.bvals[keep], dwi.gradients[keep], dwi.source)


def check_same_grid(reference_shape, reference_affine, shape, affine, path, what, atol=1e-3):
    """Refuse an image whose grid (shape and affine, mm) differs from the reference grid."""
    if tuple(shape[:3]) != tuple(reference_shape[:3]):
        raise InputError(path, f"{what} on the DWI grid {tuple(reference_shape[:3])}", f"grid {tuple(shape[:3])}")
    diff = np.abs(np.asarray(affine) - np.asarray(reference_affine)).max()
    if diff > atol:
        raise InputError(path, f"{what} with the DWI's affine (to {atol} mm)",
                         f"an affine differing by up to {diff:.4g} mm:\n{np.asarray(affine).round(4)}")
