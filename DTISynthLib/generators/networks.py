"""pix2pix networks (Isola et al. 2017): the U-Net generator and the PatchGAN discriminator.

Tensors are (batch, channels, height, width); an image is one axial slice. The generator maps the
3 DWI channels (x, y, z diffusion-weighted signals, scaled to [-1, 1]) to 1 channel: one DTI gradient
direction (one model per direction, as the seed paper). The discriminator is conditional: it sees the
input channels concatenated with a real or generated target and scores overlapping 70 x 70 patches
(n_layers 3).
"""

import torch
from torch import nn

from ..core.errors import InputError


def _down(in_ch, out_ch, norm=True):
    layers = [nn.LeakyReLU(0.2, inplace=False), nn.Conv2d(in_ch, out_ch, 4, 2, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(out_ch))
    return nn.Sequential(*layers)


def _up(in_ch, out_ch, dropout=False, norm=True, final=False):
    layers = [nn.ReLU(inplace=False), nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=not norm)]
    if final:
        layers.append(nn.Tanh())
    else:
        if norm:
            layers.append(nn.BatchNorm2d(out_ch))
        if dropout:
            layers.append(nn.Dropout(0.5))
    return nn.Sequential(*layers)


class UNetGenerator(nn.Module):
    """U-Net with `depth` stride-2 down-samplings (7 for 128 x 128, 8 for 256 x 256) and skips.

    Filters: ngf, 2 ngf, 4 ngf, then 8 ngf for every deeper level; dropout 0.5 in the decoder blocks of
    the depth - 5 intermediate 8 ngf levels (2 at depth 7, 3 at depth 8, as the reference); batch
    norm; tanh output in [-1, 1].
    Input height and width must be divisible by 2**depth.
    """

    def __init__(self, in_channels=3, out_channels=1, ngf=64, depth=7, dropout=True):
        super().__init__()
        if depth < 2:
            raise InputError("--depth", "at least 2 down-samplings", repr(depth))
        widths = [ngf * min(2**i, 8) for i in range(depth)]
        self.depth = depth
        self.first = nn.Conv2d(in_channels, widths[0], 4, 2, 1)
        self.downs = nn.ModuleList(
            _down(widths[i - 1], widths[i], norm=(i < depth - 1)) for i in range(1, depth))
        ups = []
        for i in reversed(range(1, depth)):  # decoder block i takes level i back to level i - 1
            in_ch = widths[i] if i == depth - 1 else widths[i] * 2
            ups.append(_up(in_ch, widths[i - 1], dropout=dropout and 4 <= i <= depth - 2))
        self.ups = nn.ModuleList(ups)
        self.last = _up(widths[0] * 2, out_channels, final=True)

    def to_bf16_inference(self):
        """For inference under bf16 autocast: convolution weights stored in bf16 (bit-identical to
        autocast's own cast, and the fp32 copies are gone), the output layer and tanh kept in fp32
        so that outputs are not quantised to bf16's 8-bit mantissa. Returns self."""
        head = set(self.last.modules())
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and module not in head:
                module.to(torch.bfloat16)
        self.last = _Float32(self.last)
        return self

    def forward(self, x):
        skips = [self.first(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.ups:
            y = torch.cat([up(y), skips.pop()], dim=1)
        return self.last(y)


class _Float32(nn.Module):
    """Runs a module in fp32 inside an autocast region (its input cast up)."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        with torch.autocast(x.device.type, enabled=False):
            return self.module(x.float())


class PatchDiscriminator(nn.Module):
    """PatchGAN: n_layers stride-2 4 x 4 convolutions, then two stride-1; 70 x 70 receptive field for
    n_layers 3. Input: the condition (3 channels) and a target (1 channel); output: one logit per patch."""

    def __init__(self, in_channels=4, ndf=64, n_layers=3):
        super().__init__()
        layers = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = ndf
        for n in range(1, n_layers):
            new = ndf * min(2**n, 8)
            layers += [nn.Conv2d(width, new, 4, 2, 1, bias=False), nn.BatchNorm2d(new), nn.LeakyReLU(0.2)]
            width = new
        new = ndf * min(2**n_layers, 8)
        layers += [nn.Conv2d(width, new, 4, 1, 1, bias=False), nn.BatchNorm2d(new), nn.LeakyReLU(0.2),
                   nn.Conv2d(new, 1, 4, 1, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, condition, target):
        return self.model(torch.cat([condition, target], dim=1))


def receptive_field(n_layers=3, kernel=4):
    """Receptive field (pixels) of a PatchGAN: n_layers stride-2 convolutions and two stride-1."""
    strides = [2] * n_layers + [1, 1]
    field, jump = 1, 1
    for stride in strides:
        field += (kernel - 1) * jump
        jump *= stride
    return field


def init_weights(module, gain=0.02):
    """The reference initialisation: convolutions N(0, 0.02), batch-norm scales N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return module
