"""Which simulation scheme is closest to a real scan (paper 2): one denoising autoencoder per scheme,
trained only on that scheme's voxels simulated on the scan's own gradient table, scored by how well
it reconstructs the scan's brain voxels.

Per scan: a single shell (b=0 volumes + one b), its IWLS tensor fit in the brain mask, eigenvalue
pools from that fit for the sampled schemes (simulation.signals.pools_from_fit), and the noise level
sigma / S0 from the fit's residuals (below). Schemes are compared voxel by voxel with Wilcoxon
signed-rank tests on each score (two-sided).
"""

import itertools
from dataclasses import dataclass, field, replace

import numpy as np

from ..core.errors import InputError
from ..core.dwi import DWI
from ..core.progress import NullReporter
from ..fit.brain_mask import brain_mask
from ..fit.tensor_fit import fit_tensors, predict_signals
from ..fit.tensor_maps import compute_maps
from ..simulation.signals import SCHEMES, pools_from_fit, simulate_voxels
from .autoencoder import AutoencoderConfig, reconstruct, train_autoencoder
from .scoring import reconstruction_scores, scan_attenuations

SCORES = ("attenuation_error", "fa_error", "direction_degrees")


def attenuation_noise(dwi: DWI, fit, mask):
    """Noise SD of the attenuations (sigma / S0, unitless): the median over brain voxels of the robust
    SD (1.4826 x median absolute deviation) of the measured minus fitted attenuations, scaled by
    sqrt(n / (n - 7)) for the 7 fitted parameters. Voxels whose fit predicts no finite attenuation
    are left out."""
    weighted = ~dwi.is_b0
    inside = mask & (fit.s0 > 0)
    measured = dwi.data[inside][:, weighted] / fit.s0[inside][:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        predicted = predict_signals(fit.tensor[inside], 1.0, dwi.bvals[weighted], dwi.gradients[weighted])
        residual = measured - predicted
    residual = residual[np.isfinite(residual).all(axis=1)]  # degenerate fits (S0 ~ 1e34) overflow
    n = dwi.data.shape[3]
    spread = 1.4826 * np.median(np.abs(residual - np.median(residual, axis=1, keepdims=True)), axis=1)
    return float(np.median(spread) * np.sqrt(n / max(n - 7, 1)))


@dataclass
class SchemeComparison:
    """Per scheme: ReconstructionScores on the scan and the autoencoder's training record; the paired
    tests (list of dicts); the scan's noise level and voxel counts."""

    scores: dict
    training: dict
    tests: list = field(default_factory=list)
    noise: float = 0.0
    source: str = ""


def compare_schemes(dwi: DWI, schemes=SCHEMES, n_train=250_000, n_validation=50_000, config=AutoencoderConfig(),
                    seed=0, reporter=NullReporter()):
    """Paper 2's experiment on one checked single-shell DWI."""
    from scipy.stats import wilcoxon

    unknown = sorted(set(schemes) - set(SCHEMES))
    if unknown:
        raise InputError("--schemes", f"schemes from {SCHEMES}", ", ".join(unknown))
    reporter.progress("fit", 0.0, "tensor fit of the scan")
    mask = brain_mask(dwi.mean_b0())
    fit = fit_tensors(dwi, mask)
    maps = compute_maps(fit.tensor, mask, ("fa", "md", "evals"))
    pools = pools_from_fit(maps["evals"], maps["fa"], maps["md"], mask, dwi.source)
    noise = attenuation_noise(dwi, fit, mask)
    real = scan_attenuations(dwi, mask)
    weighted = ~dwi.is_b0
    bvals, gradients = dwi.bvals[weighted], dwi.gradients[weighted]
    reporter.progress("fit", 1.0, f"{len(real)} brain voxels, attenuation noise {noise:.4f}")
    rng = np.random.default_rng(seed)
    comparison = SchemeComparison({}, {}, noise=noise, source=dwi.source)
    for k, scheme in enumerate(schemes):
        reporter.progress("train", k / len(schemes), f"{scheme}: simulating {n_train + n_validation} voxels")
        voxels = simulate_voxels(scheme, pools, dwi.bvals, dwi.gradients, n_train + n_validation, rng).astype(np.float32)
        model = train_autoencoder(voxels[:n_train], voxels[n_train:], noise,
                                  replace(config, seed=seed + k))
        comparison.training[scheme] = {"train_mse": model.train_mse, "validation_mse": model.validation_mse,
                                       "restarts": model.restarts, "dead_units": model.dead_units,
                                       "layers": [model.weights[0].shape[0]] + [w.shape[1] for w in model.weights],
                                       "seconds": round(model.seconds, 2)}
        comparison.scores[scheme] = reconstruction_scores(real, reconstruct(model, real), bvals, gradients)
    reporter.progress("train", 1.0, "all schemes trained")
    # Every score is per voxel of the same scan (directions: the voxels the scan's own FA selects), so
    # schemes pair voxel by voxel.
    for a, b in itertools.combinations(schemes, 2):
        for score in SCORES:
            x, y = getattr(comparison.scores[a], score), getattr(comparison.scores[b], score)
            comparison.tests.append(_paired_test(wilcoxon, a, b, score, x, y))
    return comparison


def _paired_test(wilcoxon, a, b, score, x, y):
    difference = float(np.mean(x) - np.mean(y)) if len(x) else float("nan")
    p_value = float(wilcoxon(x, y).pvalue) if len(x) > 10 and np.any(x != y) else float("nan")
    return {"scheme_a": a, "scheme_b": b, "score": score, "mean_a": float(np.mean(x)) if len(x) else None,
            "mean_b": float(np.mean(y)) if len(y) else None, "difference": difference, "wilcoxon_p": p_value}
