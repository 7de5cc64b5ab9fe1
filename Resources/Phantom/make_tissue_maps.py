"""Regenerate Resources/Phantom/mni_icbm152_2009_tissue_2mm.nii.gz (developers only; needs nilearn).

    .venv/bin/pip install nilearn==0.14.1 && .venv/bin/python Resources/Phantom/make_tissue_maps.py

Source: the MNI ICBM152 2009a nonlinear symmetric grey-matter, white-matter and T1 maps that
nilearn's wheel ships (nilearn/datasets/data/mni_icbm152_{gm,wm,t1}_tal_nlin_sym_09a_converted.nii.gz,
1 mm, uint8). CSF is not shipped: it is derived as the intracranial space (brain filled and closed)
minus GM and WM. The maps are block-averaged to 2 mm and stored as uint8 (0-255 = probability 0-1)
in one 4D file: volume 0 WM, 1 GM, 2 CSF, 3 T1 (0-255), on the MNI RAS grid of the affine.
"""

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

OUT = Path(__file__).with_name("mni_icbm152_2009_tissue_2mm.nii.gz")


def block_mean(volume, affine):
    pad = [(0, (-n) % 2) for n in volume.shape]
    volume = np.pad(volume, pad)
    x, y, z = (n // 2 for n in volume.shape)
    mean = volume.reshape(x, 2, y, 2, z, 2).mean(axis=(1, 3, 5))
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, :3] * 2
    new_affine[:3, 3] = affine[:3, 3] + affine[:3, :3] @ [0.5, 0.5, 0.5]
    return mean, new_affine


def main():
    import nilearn

    data = Path(nilearn.__file__).parent / "datasets" / "data"
    maps = {}
    for name in ("gm", "wm", "t1"):
        img = nib.load(str(data / f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz"))
        maps[name] = np.asarray(img.dataobj, dtype=np.float64) / 255.0
        affine = img.affine
    brain = (maps["t1"] > 0) | (maps["gm"] + maps["wm"] > 0.05)
    intracranial = ndimage.binary_fill_holes(ndimage.binary_closing(brain, iterations=3))
    csf = np.clip(intracranial - maps["gm"] - maps["wm"], 0.0, 1.0)
    volumes = []
    for volume in (maps["wm"], maps["gm"], csf, maps["t1"]):
        mean, new_affine = block_mean(volume, affine)
        volumes.append(np.clip(np.round(mean * 255.0), 0, 255).astype(np.uint8))
    img = nib.Nifti1Image(np.stack(volumes, axis=-1), new_affine)
    img.set_sform(new_affine, code=4)  # MNI152
    img.set_qform(new_affine, code=4)
    img.header["descrip"] = b"ICBM152 2009a sym WM,GM,CSF,T1 2mm"
    nib.save(img, str(OUT))
    print(OUT, img.shape, OUT.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
