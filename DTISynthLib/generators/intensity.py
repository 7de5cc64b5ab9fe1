"""Intensity: how signals become network units and back, stored in the model manifest and applied
identically in training and at inference.

Modes
- "paper": raw signal clipped at 255, no normalisation (the seed paper); optionally quantised to
  8 bits like its PNG files. Network units: value / 127.5 - 1.
- "relative": signal / b=0 of the same acquisition (attenuation, clipped to [0, 1]), full float
  precision; b=0 contrast and scanner scaling drop out. Network units: 2 attenuation - 1. At
  inference the synthetic signal is attenuation x the b=0 given to the pipeline.
"""

from dataclasses import dataclass

import numpy as np

INTENSITY_MODES = ("paper", "relative")
PAPER_CLIP = 255.0


@dataclass(frozen=True)
class Intensity:
    mode: str = "paper"
    quantise_8bit: bool = False

    def __post_init__(self):
        if self.mode not in INTENSITY_MODES:
            raise ValueError(f"intensity mode must be one of {INTENSITY_MODES}, not {self.mode!r}")

    def to_network(self, signal, b0):
        """Signal (..., x, y) and its b=0 -> network units in [-1, 1] (float32)."""
        if self.mode == "paper":
            value = np.clip(signal, 0.0, PAPER_CLIP)
            if self.quantise_8bit:
                value = np.round(value)
            return (value / 127.5 - 1.0).astype(np.float32)
        attenuation = np.divide(signal, b0, out=np.zeros(np.broadcast(signal, b0).shape, np.float64),
                                where=b0 > brain_floor(b0))
        return (2.0 * np.clip(attenuation, 0.0, 1.0) - 1.0).astype(np.float32)

    def from_network(self, units, b0):
        """Network units -> signal (the inverse of to_network, up to clipping)."""
        if self.mode == "paper":
            return ((np.asarray(units, np.float64) + 1.0) * 127.5).astype(np.float32)
        return ((np.asarray(units, np.float64) + 1.0) / 2.0 * b0).astype(np.float32)


def brain_floor(b0):
    """b=0 level below which a voxel is background in relative mode: 5 % of the 99th percentile."""
    positive = np.asarray(b0)[np.asarray(b0) > 0]
    return 0.05 * float(np.percentile(positive, 99)) if positive.size else np.inf
