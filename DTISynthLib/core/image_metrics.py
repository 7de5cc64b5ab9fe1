"""Image similarity: PSNR and SSIM (Wang et al. 2004), as the seed paper reports for synthetic DTI.

Inputs are arrays of one image or a stack of 2D slices (..., H, W) on a stated intensity range
(`data_range`: the paper's 8-bit images have 255; DTISynth's network units [-1, 1] have 2).
"""

import numpy as np
from scipy import ndimage


def psnr(reference, test, data_range, mask=None):
    """Peak signal-to-noise ratio in dB over all voxels (or `mask`); inf for identical images."""
    reference, test = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    diff = (reference - test) if mask is None else (reference - test)[np.asarray(mask, bool)]
    mse = float(np.mean(diff**2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))


def ssim(reference, test, data_range, mask=None, sigma=1.5):
    """Mean structural similarity of 2D slices (..., H, W): 11 x 11 Gaussian window (sigma 1.5),
    K1 = 0.01, K2 = 0.03, mean over all pixels (or over `mask`)."""
    reference, test = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    sigmas = (0,) * (reference.ndim - 2) + (sigma, sigma)

    def blur(image):
        return ndimage.gaussian_filter(image, sigmas, mode="reflect", truncate=3.5)

    mu_x, mu_y = blur(reference), blur(test)
    var_x = blur(reference * reference) - mu_x**2
    var_y = blur(test * test) - mu_y**2
    cov = blur(reference * test) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(index.mean() if mask is None else index[np.asarray(mask, bool)].mean())
