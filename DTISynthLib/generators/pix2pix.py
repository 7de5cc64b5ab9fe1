"""The seed paper's generator kind, "pix2pix-per-direction": six pix2pix models, one per DTI gradient
direction, each mapping a slice of the x, y, z DWI (network units of the manifest's intensity) to that
direction's DTI slice. The synthetic DTI's gradient table is the manifest's directions (RAS); each
direction's weights file is named on its direction entry.
"""

import numpy as np

from .intensity import Intensity
from .registry import GeneratorKind

NAME = "pix2pix-per-direction"


def build(manifest, key):
    """The U-Net of direction `key` (every direction has the same architecture)."""
    from .networks import UNetGenerator

    g = manifest.architecture["generator"]
    return UNetGenerator(g["in_channels"], g["out_channels"], g["ngf"], g["depth"], g.get("dropout", True))


def prepare_inference(network, precision):
    return network.to_bf16_inference() if precision == "bf16" else network


def synthesize(predict, grid_signals, manifest, reporter):
    """Each direction's generator on the network units of the x, y, z volumes, slice-wise; the output
    mapped back to signal with the reference b=0 (Intensity.from_network)."""
    intensity = Intensity(**manifest.intensity)
    moved, reference, slices = grid_signals.signals, grid_signals.reference, grid_signals.slices
    inputs = np.transpose(intensity.to_network(moved[..., 1:], moved[..., :1]), (2, 3, 1, 0))  # (z, 3, y, x)
    indices, _ = manifest.direction_vectors()
    synthetic = np.zeros(reference.shape + (len(indices),), dtype=np.float32)
    for k, index in enumerate(indices):
        reporter.progress("synthesize", k / len(indices), f"direction {index}")
        units = predict(index, inputs[slices], slices)  # (n, y, x)
        synthetic[:, :, slices, k] = intensity.from_network(np.transpose(units, (2, 1, 0)), reference[:, :, slices])
    reporter.progress("synthesize", 1.0, f"{len(indices)} directions")
    return synthetic, {}


KIND = GeneratorKind(NAME, build, synthesize, "DTISynthLib.training.pix2pix", prepare_inference, any_frame=False)
