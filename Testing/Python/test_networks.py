import pytest
import torch

from DTISynthLib.generators.networks import (
    PatchDiscriminator,
    UNetGenerator,
    init_weights,
    receptive_field,
)


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_paper_sizes():
    # pix2pix reference: unet_128 (7 downs) 41.8 M, unet_256 (8 downs) 54.4 M, PatchGAN n_layers 3: 2.77 M
    assert _count(UNetGenerator(ngf=64, depth=7)) == 41_825_472
    assert _count(UNetGenerator(ngf=64, depth=8)) == 54_410_432
    assert _count(PatchDiscriminator(ndf=64, n_layers=3)) == 2_766_657
    assert sum(isinstance(m, torch.nn.Dropout) for m in UNetGenerator(ngf=4, depth=7).modules()) == 2


def test_shapes_and_output_range():
    generator = init_weights(UNetGenerator(ngf=8, depth=5))
    x = torch.randn(2, 3, 64, 96)
    y = generator(x)
    assert y.shape == (2, 1, 64, 96) and y.abs().max() <= 1.0
    logits = PatchDiscriminator(ndf=8)(x, y)
    assert logits.shape == (2, 1, 6, 10)
    with pytest.raises(RuntimeError):
        generator(torch.randn(1, 3, 60, 60))  # not divisible by 2**depth


def test_patchgan_receptive_field_is_70_pixels():
    assert receptive_field(3) == 70
    # Empirically: one output logit depends on a 70 x 70 window of the input.
    disc = init_weights(PatchDiscriminator(ndf=4, n_layers=3)).eval()
    condition = torch.randn(1, 3, 128, 128, requires_grad=True)
    target = torch.randn(1, 1, 128, 128, requires_grad=True)
    out = disc(condition, target)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    touched = (condition.grad[0].abs().sum(0) + target.grad[0, 0].abs()) > 0
    rows = torch.nonzero(touched.any(1)).flatten()
    cols = torch.nonzero(touched.any(0)).flatten()
    assert (rows.max() - rows.min() + 1) == 70 and (cols.max() - cols.min() + 1) == 70
