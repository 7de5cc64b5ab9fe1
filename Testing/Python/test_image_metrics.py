import numpy as np
import pytest

from DTISynthLib.core.image_metrics import psnr, ssim


def test_psnr_by_hand():
    a = np.zeros((4, 4))
    b = a.copy()
    b[0, 0] = 2.0  # MSE = 4 / 16 = 0.25
    assert psnr(a, b, data_range=1.0) == pytest.approx(10 * np.log10(1 / 0.25))
    assert psnr(a, a, data_range=1.0) == float("inf")
    assert psnr(a, b, data_range=1.0, mask=np.arange(16).reshape(4, 4) > 0) == float("inf")


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:64]
    reference = np.sin(x / 5.0) * np.cos(y / 7.0)
    for noise in (0.05, 0.3):
        test = reference + rng.normal(0, noise, reference.shape)
        peer = metrics.structural_similarity(reference, test, data_range=2.0, gaussian_weights=True, sigma=1.5,
                                             use_sample_covariance=False)
        assert ssim(reference, test, data_range=2.0) == pytest.approx(peer, abs=2e-3)
    assert ssim(reference, reference, data_range=2.0) == pytest.approx(1.0)
    stack = np.stack([reference, reference + 0.1])
    assert ssim(stack, stack, data_range=2.0) == pytest.approx(1.0)  # slices are independent
