"""Showing only the fibre orientation a synthetic DTI is confident of.

The x, y, z DWI measures no sign of the tensor's off-diagonal terms; kinds that classify them write
maps/v1_confidence (generators.registry.KIND_MAPS). Colour FA encodes V1 by hue: where the confidence is
below CONFIDENT the hue is a guess, so the "confident only" colour FA shows those voxels in grey (FA as
brightness, no hue) and keeps the colour elsewhere.
"""

import numpy as np

CONFIDENT = 0.8  # v1_confidence at or above which the orientation is shown (and counted "confident")


def confident_color_fa(color_fa, fa, confidence, threshold=CONFIDENT):
    """Colour FA (x, y, z, 3) in [0, 1] (RGB = |V1| x FA, RAS axes) with voxels whose confidence (x, y, z) is
    below `threshold` replaced by grey FA (R = G = B = FA / sqrt(3): the brightness of |V1| x FA)."""
    color_fa, fa, confidence = np.asarray(color_fa), np.asarray(fa), np.asarray(confidence)
    grey = np.repeat(np.clip(fa, 0.0, 1.0)[..., None] / np.sqrt(3.0), 3, axis=-1)
    return np.where((confidence >= threshold)[..., None], color_fa, grey).astype(np.float32)
