"""Statistics of the seed paper's validation: ROI mean, SD and SNR (mean / SD over the ROI's voxels),
Bland-Altman agreement and paired t-tests (scipy) of paired values.
"""

import numpy as np


def roi_statistics(values, mask):
    """(voxels, mean, SD (ddof 1), SNR = mean / SD) of `values` inside `mask`; NaN for empty ROIs."""
    inside = np.asarray(values, np.float64)[np.asarray(mask, bool)]
    if inside.size == 0:
        return 0, float("nan"), float("nan"), float("nan")
    mean = float(inside.mean())
    sd = float(inside.std(ddof=1)) if inside.size > 1 else float("nan")
    return int(inside.size), mean, sd, (mean / sd if sd > 0 else float("nan"))


def bland_altman(original, synthetic):
    """Bland-Altman agreement of paired values: differences synthetic - original.

    Returns {n, bias, sd (ddof 1), lower, upper (bias -/+ 1.96 SD), means, differences}.
    """
    a, b = np.asarray(original, np.float64), np.asarray(synthetic, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired 1D values needed, not shapes {a.shape} and {b.shape}")
    diff = b - a
    n = diff.size
    bias = float(diff.mean()) if n else float("nan")
    sd = float(diff.std(ddof=1)) if n > 1 else float("nan")
    return {"n": n, "bias": bias, "sd": sd, "lower": bias - 1.96 * sd, "upper": bias + 1.96 * sd,
            "means": ((a + b) / 2).tolist(), "differences": diff.tolist()}


def paired_t_test(original, synthetic):
    """Two-sided paired t-test (scipy.stats.ttest_rel) -> (t, p, n); (nan, nan, n) below 2 pairs."""
    from scipy import stats

    a, b = np.asarray(original, np.float64), np.asarray(synthetic, np.float64)
    if a.size < 2:
        return float("nan"), float("nan"), int(a.size)
    result = stats.ttest_rel(b, a)
    return float(result.statistic), float(result.pvalue), int(a.size)
