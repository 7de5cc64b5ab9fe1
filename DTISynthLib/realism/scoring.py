"""Paper 2's reconstruction scores: how well an autoencoder reproduces a real scan's voxels.

Attenuations are S/S0 of the diffusion-weighted volumes (unitless); tensors are fitted to the input
and to its reconstruction the same way (IWLS on a b=0 of 1 followed by the attenuations, gradients
as RAS unit vectors), and compared by FA and by the angle between principal eigenvectors (sign-free)
in voxels whose input FA lies in paper 2's 0.5-0.9.
"""

from dataclasses import dataclass

import numpy as np

from ..fit.tensor_fit import fit_signals
from ..fit.tensor_maps import eigen_decompose, fractional_anisotropy

FA_RANGE = (0.5, 0.9)  # paper 2's voxels for the principal-direction deviation
MAX_ATTENUATION = 1.5  # noise in dark voxels can push S/S0 far above 1; kept within what noise does near 1


def scan_attenuations(dwi, mask):
    """Attenuations (N, n_dw) of the mask voxels whose mean b=0 is positive, float32, clipped to
    [0, MAX_ATTENUATION]; columns are the diffusion-weighted volumes in order."""
    b0 = dwi.mean_b0()
    voxels = np.asarray(mask, dtype=bool) & (b0 > 0)
    weighted = dwi.data[voxels][:, ~dwi.is_b0]
    return np.clip(weighted / b0[voxels][:, None], 0.0, MAX_ATTENUATION).astype(np.float32)


@dataclass
class ReconstructionScores:
    """Per-voxel errors (for paired tests) and their means: attenuation mean abs error, FA abs error,
    principal-direction angle in degrees (voxels with input FA in FA_RANGE only)."""

    attenuation_error: np.ndarray
    fa_error: np.ndarray
    direction_degrees: np.ndarray

    def summary(self):
        return {"attenuation_mae": float(self.attenuation_error.mean()), "fa_mae": float(self.fa_error.mean()),
                "direction_degrees": float(self.direction_degrees.mean()) if self.direction_degrees.size else None,
                "voxels": int(self.attenuation_error.size), "direction_voxels": int(self.direction_degrees.size)}


def _fa_and_v1(attenuations, bvals, gradients):
    rows = np.concatenate([np.ones((len(attenuations), 1)), np.maximum(attenuations, 1e-6)], axis=1)
    params = fit_signals(rows, np.r_[0.0, bvals], np.vstack([np.zeros(3), gradients]))
    evals, v1 = eigen_decompose(params[:, :6])
    return fractional_anisotropy(evals), v1


def reconstruction_scores(attenuations, reconstructed, bvals, gradients):
    """Scores of `reconstructed` against `attenuations` (both (N, n_dw)); bvals (n_dw,) s/mm^2 and
    gradients (n_dw, 3) RAS unit vectors of those volumes."""
    attenuations = np.asarray(attenuations, dtype=np.float64)
    reconstructed = np.asarray(reconstructed, dtype=np.float64)
    fa_in, v1_in = _fa_and_v1(attenuations, bvals, gradients)
    fa_out, v1_out = _fa_and_v1(reconstructed, bvals, gradients)
    selected = (fa_in >= FA_RANGE[0]) & (fa_in <= FA_RANGE[1])
    cosine = np.clip(np.abs((v1_in[selected] * v1_out[selected]).sum(axis=1)), 0.0, 1.0)
    return ReconstructionScores(np.abs(reconstructed - attenuations).mean(axis=1), np.abs(fa_out - fa_in),
                                np.degrees(np.arccos(cosine)))
