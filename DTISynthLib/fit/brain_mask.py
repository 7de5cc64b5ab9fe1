"""Brain mask from a b=0 image: median smoothing, Otsu threshold, largest component, holes filled
in 3D and in each slice.

The recipe of dipy's median_otsu with a smaller default filter (radius 2, 2 passes: about 8x faster).
The filter rounds off small or thin brains (test grids of a few slices): pass a mask there.
"""

from concurrent.futures import ThreadPoolExecutor

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


def median_filter_threaded(volume, size, workers=2):
    """scipy's median_filter (size^3, mode reflect) split into slabs along the first axis, each padded
    by the filter's reach, on `workers` threads (scipy releases the GIL): identical to one call."""
    reach = size // 2
    n = volume.shape[0]
    bounds = np.linspace(0, n, min(workers, max(1, n // (4 * size))) + 1).astype(int)
    out = np.empty_like(volume)

    def slab(k):
        low, high = bounds[k], bounds[k + 1]
        pad_low, pad_high = max(low - reach, 0), min(high + reach, n)
        filtered = ndimage.median_filter(volume[pad_low:pad_high], size=size)
        out[low:high] = filtered[low - pad_low:high - pad_low]

    with ThreadPoolExecutor(len(bounds) - 1) as pool:
        list(pool.map(slab, range(len(bounds) - 1)))
    return out


def brain_mask(b0, median_radius=2, passes=2):
    """Boolean (x, y, z) brain mask of a mean b=0 volume."""
    b0 = np.asarray(b0, dtype=np.float32)
    # Median filtering is the cost: do it only in the box around the head (rough Otsu threshold),
    # padded by the filters' reach; outside it every voxel is background anyway.
    rough = b0 > otsu_threshold(b0)
    box = tuple(slice(0, n) for n in b0.shape)
    if rough.any():
        reach = median_radius * passes + 2
        corners = np.argwhere(rough)
        low, high = np.maximum(corners.min(0) - reach, 0), np.minimum(corners.max(0) + reach + 1, b0.shape)
        box = tuple(slice(a, b) for a, b in zip(low, high))
    smoothed = np.zeros_like(b0)
    inner = b0[box]
    for _ in range(passes):
        inner = median_filter_threaded(inner, 2 * median_radius + 1)
    smoothed[box] = inner
    mask = smoothed > otsu_threshold(inner)
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
