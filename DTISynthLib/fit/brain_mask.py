"""Brain mask from a b=0 image: median smoothing, Otsu threshold, largest component, holes filled
in 3D and in each slice.

The recipe of dipy's median_otsu with a smaller default filter (radius 2, 2 passes), computed without
the median filter itself, which was the cost (about 2.5 s of a full-size synthesis, twice with a
reference b=0): the median is a stack filter, so [median(x) > T] is the majority of [x > T] over the
window, exactly, and so for repeated passes; a majority is a box sum (majority_filter). The threshold T
is Otsu's of the b=0 median-filtered at half resolution (3 x 3 x 3, one pass): the full-resolution
histogram would need the filter. Measured on the 33 shared real series against MRtrix3's dwi2mask (an
independent peer): mean Dice 0.9616 (the full-resolution filter's threshold: 0.9605), no series worse
by more than 0.0007; the masks agree with those of the full filter (Dice 0.98-1.00), and where they
differ most (Philips b1000 0.983, Prisma 2018 0.983-0.998) they agree better with the peer. With the
full filter's threshold the two are identical on all 33.
The filter rounds off small or thin brains (test grids of a few slices): pass a mask there.
"""

import numpy as np
from scipy import ndimage


def otsu_threshold(values, bins=256):
    """Threshold maximising the between-class variance of a 1D sample (Otsu 1979)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    hist, edges = np.histogram(values, bins=bins)
    centers = 0.5 * (edges[:-1] + edges[1:])
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(hist * centers)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(centers[np.argmax(between)])


def majority_filter(binary, size):
    """[median(x) > T] from binary = [x > T]: True where more than half of the size^3 window (mode
    reflect, as scipy's median_filter) is True. Box sums: separable, a few milliseconds a pass."""
    window = size ** 3
    counts = np.rint(ndimage.uniform_filter(binary.astype(np.float32), size) * window)
    return counts >= window // 2 + 1


def brain_mask(b0, median_radius=2, passes=2):
    """Boolean (x, y, z) brain mask of a mean b=0 volume (the module docstring's recipe)."""
    b0 = np.asarray(b0, dtype=np.float32)
    # Only the box around the head (rough Otsu threshold), padded by the filters' reach, is filtered:
    # outside it every voxel is background anyway.
    rough = b0 > otsu_threshold(b0)
    box = tuple(slice(0, n) for n in b0.shape)
    if rough.any():
        reach = median_radius * passes + 2
        corners = np.argwhere(rough)
        low, high = np.maximum(corners.min(0) - reach, 0), np.minimum(corners.max(0) + reach + 1, b0.shape)
        box = tuple(slice(a, b) for a, b in zip(low, high))
    inner = b0[box]
    threshold = otsu_threshold(ndimage.median_filter(inner[::2, ::2, ::2], size=3))
    smoothed = inner > threshold
    for _ in range(passes):
        smoothed = majority_filter(smoothed, 2 * median_radius + 1)
    mask = np.zeros(b0.shape, bool)
    mask[box] = smoothed
    return largest_filled_component(mask)


def largest_filled_component(mask):
    """The largest connected component of a thresholded mask, its holes filled in 3D and in each slice."""
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = labels == np.argmax(sizes)
    mask = ndimage.binary_fill_holes(mask)
    # Dark deep structures can reach the outside through one slice's gap, which 3D filling misses.
    for k in range(mask.shape[2]):
        mask[:, :, k] = ndimage.binary_fill_holes(mask[:, :, k])
    return mask
