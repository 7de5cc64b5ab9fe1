"""The physics baseline kind, "diagonal": no networks, no weights, nothing learned.

Each DTI direction g_k gets the signal of the diagonal tensor diag(d) (RAS; off-diagonal terms zero)
that reproduces the measured apparent diffusion coefficients ADC_i = -ln(S_i / S0) / b_input along
the DWI's directions m_i: sum_j m_ij^2 d_j = ADC_i (so d = ADC for exact axes), then
S_k = S0_reference exp(-b g_k^T diag(d) g_k) at the manifest's b-value and gradient table (RAS).
Its MD is the input's; its fibre orientation knows only the axes. It is what a learned kind has to
beat: Resources/Models/diagonal is a package of this kind.
"""

import numpy as np

from .registry import GeneratorKind

NAME = "diagonal"


def build(manifest, key):
    raise ValueError(f"the {NAME} kind has no networks (its package lists none)")


def synthesize(predict, grid_signals, manifest, reporter):
    slices = grid_signals.slices
    reporter.progress("synthesize", 0.0, "diagonal tensor from the x, y, z ADCs")
    measured = np.asarray(grid_signals.gradients, dtype=np.float64)
    diagonal = grid_signals.adcs()[:, :, slices] @ np.linalg.inv(measured**2).T  # Dxx, Dyy, Dzz
    tensor6 = np.concatenate([diagonal, np.zeros_like(diagonal)], axis=-1)
    _, directions = manifest.direction_vectors()
    synthetic = grid_signals.signals_of(tensor6, directions, manifest.b_value)
    reporter.progress("synthesize", 1.0, f"{len(directions)} directions")
    return synthetic, {}


KIND = GeneratorKind(NAME, build, synthesize, "DTISynthLib.training.diagonal")
