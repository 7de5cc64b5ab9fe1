"""The physics baseline kind, "diagonal": no networks, no weights, nothing learned.

Each DTI direction g_k gets the signal of the diagonal tensor diag(d) (RAS; off-diagonal terms zero)
that reproduces the measured apparent diffusion coefficients ADC_i = -ln(S_i / S0) / b_input along
the DWI's directions m_i: sum_j m_ij^2 d_j = ADC_i (so d = ADC for exact axes), then
S_k = S0_reference exp(-b g_k^T diag(d) g_k) at the manifest's b-value and gradient table (RAS). Its MD is the input's; its fibre orientation knows only the axes. It is
what a learned kind has to beat: Resources/Models/diagonal is a package of this kind.
"""

import numpy as np

from .registry import GeneratorKind

NAME = "diagonal"
ATTENUATION_FLOOR = 1e-6


def build(manifest, key):
    raise ValueError(f"the {NAME} kind has no networks (its package lists none)")


def synthesize(predict, grid_signals, manifest, reporter):
    signals, reference, slices = grid_signals.signals, grid_signals.reference, grid_signals.slices
    reporter.progress("synthesize", 0.0, "diagonal tensor from the x, y, z ADCs")
    b0 = signals[..., :1].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        attenuation = np.where(b0 > 0, signals[..., 1:] / b0, 1.0)
    adc = -np.log(np.maximum(attenuation, ATTENUATION_FLOOR)) / grid_signals.b_value  # (x, y, z, 3) mm^2/s
    diagonal = adc @ np.linalg.inv(np.asarray(grid_signals.gradients, dtype=np.float64) ** 2).T  # Dxx, Dyy, Dzz
    entries = sorted(manifest["directions"], key=lambda d: d["index"])
    weights = np.array([e["gradient_ras"] for e in entries], dtype=np.float64) ** 2  # (n, 3): g_k^T diag(d) g_k
    synthetic = np.zeros(reference.shape + (len(entries),), dtype=np.float32)
    log_attenuation = -float(manifest["b_value"]) * (diagonal[:, :, slices] @ weights.T)
    synthetic[:, :, slices] = reference[:, :, slices, None] * np.exp(log_attenuation)
    reporter.progress("synthesize", 1.0, f"{len(entries)} directions")
    return synthetic


def train(request):
    raise ValueError(f"the {NAME} kind learns nothing: use its package, Resources/Models/diagonal")


KIND = GeneratorKind(NAME, build, synthesize, train)
