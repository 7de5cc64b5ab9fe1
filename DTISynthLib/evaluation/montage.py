"""PNG montages of tensor maps, displayed as radiologists read them.

Axial slices of the volume reoriented to the nearest RAS axes, anterior at the top and the subject's
right on the left of the image (radiological convention), each map with its colour bar and units.
"""

import nibabel as nib
import numpy as np

from ..core.tables import new_figure

MAP_DISPLAY = {  # name: (title, colour map, value range, scale shown on the colour bar)
    "fa": ("FA", "gray", (0.0, 1.0), 1.0),
    "md": ("MD (10^-3 mm^2/s)", "gray", (0.0, 2.0), 1e3),
    "ad": ("AD (10^-3 mm^2/s)", "gray", (0.0, 2.5), 1e3),
    "rd": ("RD (10^-3 mm^2/s)", "gray", (0.0, 2.0), 1e3),
    "color": ("colour FA (R: L-R, G: A-P, B: S-I)", None, (0.0, 1.0), 1.0),
}


def to_ras_axes(volume, affine):
    """Reorder and flip voxel axes so that they run along R, A, S as closely as the affine allows."""
    orientation = nib.orientations.io_orientation(affine)
    return nib.orientations.apply_orientation(volume, orientation)


def axial_display(volume_ras, k):
    """Axial slice k of an RAS-ordered volume as an image: rows anterior to posterior, columns R to L."""
    return np.flip(np.swapaxes(volume_ras[:, :, k], 0, 1), axis=(0, 1))


DIFFERENCE_RANGE = {"fa": 0.3, "md": 0.5, "ad": 0.5, "rd": 0.5}  # +- this, in the colour bar's unit


def write_montage(path, rows, affine, slices=None, title=None, difference_rows=()):
    """rows: list of (row label, {map name: volume}); writes a PNG with one column per map. Rows whose
    label is in `difference_rows` are shown on a diverging scale symmetric about 0 (DIFFERENCE_RANGE)."""
    names = [n for n in MAP_DISPLAY if any(n in maps for _, maps in rows)]
    first = rows[0][1][names[0]]
    depth = to_ras_axes(first, affine).shape[2]
    k = depth // 2 if slices is None else slices
    fig, axes = new_figure(len(rows), len(names), squeeze=False, figsize=(2.6 * len(names), 2.8 * len(rows)))
    for r, (label, maps) in enumerate(rows):
        for c, name in enumerate(names):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if name not in maps:
                ax.set_visible(False)
                continue
            title_text, cmap, (lo, hi), scale = MAP_DISPLAY[name]
            if label in difference_rows:
                cmap, (lo, hi) = "coolwarm", (-DIFFERENCE_RANGE[name], DIFFERENCE_RANGE[name])
            image = axial_display(to_ras_axes(np.asarray(maps[name]) * scale, affine), k)
            if name == "color":
                ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
            else:
                shown = ax.imshow(image, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
            if r == 0:
                ax.set_title(title_text, fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
            marker = "black" if label in difference_rows else "yellow"
            ax.text(0.02, 0.5, "R", color=marker, transform=ax.transAxes, fontsize=7, va="center")
            ax.text(0.98, 0.5, "L", color=marker, transform=ax.transAxes, fontsize=7, va="center", ha="right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
