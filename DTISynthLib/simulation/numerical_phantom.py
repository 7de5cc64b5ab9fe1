"""A small analytic DWI phantom with known tensors, for frame, format and fitting tests.

(The realistic phantom is brain_phantom.py; this one is exact and fast, with sharp regions.)

Geometry: an ellipsoidal "brain" of isotropic grey-matter-like tissue holding three white-matter
bundles along known RAS directions (left-right, anterior-posterior, superior-inferior) and a
CSF-like core. Tensors are defined in the RAS world frame, so a rotated (oblique) affine moves the
voxel grid but keeps every fibre direction fixed in RAS: what a correct reader must recover.
"""

import numpy as np

from ..core.dwi import DWI
from ..core.frames import rotation_matrix
from ..core.gradient_schemes import dti_6
from ..core.tensor_layout import matrix_to_tensor6
from ..fit.tensor_fit import predict_signals

WM_EIGENVALUES = (1.5e-3, 0.35e-3, 0.35e-3)  # mm^2/s, FA about 0.74
GM_DIFFUSIVITY = 0.8e-3
CSF_DIFFUSIVITY = 3.0e-3
BUNDLES = {"left_right": (1.0, 0.0, 0.0), "anterior_posterior": (0.0, 1.0, 0.0), "superior_inferior": (0.0, 0.0, 1.0)}
LABELS = {"background": 0, "grey": 1, "csf": 2, "left_right": 3, "anterior_posterior": 4, "superior_inferior": 5}


def stick_tensor(direction, eigenvalues=WM_EIGENVALUES):
    """Cylindrically symmetric tensor (3x3, mm^2/s) with principal axis `direction` (RAS)."""
    v = np.asarray(direction, dtype=np.float64)
    v = v / np.linalg.norm(v)
    l1, l2, _ = eigenvalues
    return l2 * np.eye(3) + (l1 - l2) * np.outer(v, v)


def make_fibre_phantom(shape=(32, 32, 16), voxel_size=(1.72, 1.72, 2.0), rotation_degrees=(0, 0, 0),
                       bvals=None, gradients=None, s0=1000.0, snr=None, seed=0):
    """Phantom DWI with ground truth.

    Returns (dwi, truth) where truth has "tensor" (x, y, z, 6) RAS mm^2/s, "labels" (x, y, z) int
    (see LABELS) and "s0". Default gradient table: b=0 + the Siemens 6 directions at b=1000 s/mm^2.
    `snr`: Rician noise with sigma = s0 / snr (None for noise-free).
    """
    if bvals is None:
        bvals, gradients = dti_6()
    shape = tuple(int(v) for v in shape)
    rotation = rotation_matrix(rotation_degrees)
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(voxel_size)
    centre = (np.asarray(shape) - 1) / 2.0
    affine[:3, 3] = -affine[:3, :3] @ centre
    # Coordinates of voxel centres in the unrotated, centred RAS frame (mm), normalised to the ellipsoid.
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(np.float64)
    mm = (ijk - centre) * np.asarray(voxel_size)
    radii = (np.asarray(shape) - 1) / 2.0 * np.asarray(voxel_size) * 0.9
    u = mm / radii
    labels = np.zeros(shape, dtype=np.int16)
    labels[(u**2).sum(-1) <= 1.0] = LABELS["grey"]
    inside = labels > 0
    labels[inside & (np.abs(u[..., 1] - 0.45) < 0.15) & (np.abs(u[..., 2]) < 0.35)] = LABELS["left_right"]
    labels[inside & (np.abs(u[..., 0] - 0.45) < 0.15) & (np.abs(u[..., 2]) < 0.35) & (u[..., 1] < 0.2)] = LABELS["anterior_posterior"]
    labels[inside & (np.abs(u[..., 0] + 0.45) < 0.15) & (np.abs(u[..., 1] + 0.2) < 0.2)] = LABELS["superior_inferior"]
    labels[inside & ((u[..., :2] ** 2).sum(-1) < 0.04) & (np.abs(u[..., 2]) < 0.3)] = LABELS["csf"]
    matrices = np.zeros(shape + (3, 3))
    matrices[labels == LABELS["grey"]] = GM_DIFFUSIVITY * np.eye(3)
    matrices[labels == LABELS["csf"]] = CSF_DIFFUSIVITY * np.eye(3)
    for name, direction in BUNDLES.items():
        # Bundles follow the rotated head: their RAS direction is the rotated reference direction.
        matrices[labels == LABELS[name]] = stick_tensor(rotation @ np.asarray(direction))
    tensor = matrix_to_tensor6(matrices)
    s0_map = np.where(inside, s0 * np.where(labels == LABELS["csf"], 1.6, 1.0), 0.0)
    signal = predict_signals(tensor, s0_map, bvals, gradients)
    if snr:
        rng = np.random.default_rng(seed)
        sigma = s0 / float(snr)
        signal = np.sqrt((signal + rng.normal(0, sigma, signal.shape)) ** 2 + rng.normal(0, sigma, signal.shape) ** 2)
    dwi = DWI(signal.astype(np.float32), affine, np.asarray(bvals, dtype=np.float64),
              np.asarray(gradients, dtype=np.float64), "<numerical phantom>")
    return dwi, {"tensor": tensor.astype(np.float32), "labels": labels, "s0": s0_map.astype(np.float32),
                 "bundle_directions": {k: rotation @ np.asarray(v) for k, v in BUNDLES.items()}}
