"""Load and save DWI, tensor and scalar images in any supported format, chosen by file name.

Formats: NIfTI (.nii, .nii.gz) with FSL bval / bvec; Slicer NRRD (.nrrd, .nhdr); DICOM folders
through dcm2niix. Everything is converted to the in-memory DWI (RAS world gradients) on load.
"""

from pathlib import Path

import numpy as np

from ..core.dwi import check_dwi, check_same_grid
from ..core.errors import InputError, refuse_special_file
from . import nifti, nrrd
from .dicom import read_dicom_dwi

FORMATS = ("nifti", "nrrd")


def file_format(path):
    """"nifti", "nrrd" or "dicom" (a folder) by name; a FIFO, device or socket is refused before anything
    opens it."""
    refuse_special_file(path)
    name = Path(path).name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith((".nrrd", ".nhdr")):
        return "nrrd"
    if Path(path).is_dir():
        return "dicom"
    raise InputError(path, "a .nii, .nii.gz, .nrrd or .nhdr file or a DICOM folder", f"the name {Path(path).name!r}")


def load_dwi(path, bval=None, bvec=None):
    """Load and check a DWI from NIfTI (+ bval / bvec), NRRD or a DICOM folder."""
    fmt = file_format(path)
    if fmt != "nifti" and (bval or bvec):
        raise InputError(path, "--bval / --bvec only with a NIfTI DWI", f"a {fmt} input, which carries its own gradients")
    if fmt == "nifti":
        dwi = nifti.read_nifti_dwi(path, bval, bvec)
    elif fmt == "nrrd":
        dwi = nrrd.read_nrrd_dwi(path)
    else:
        dwi = read_dicom_dwi(path)
    return check_dwi(dwi)


def save_dwi(path, dwi, compress_nrrd=True):
    """Write a DWI as NIfTI + bval / bvec (.nii.gz compressed) or as Slicer NRRD (gzip unless
    compress_nrrd is False), by file name. Returns written paths."""
    if file_format(path) == "nifti":
        return nifti.write_nifti_dwi(path, dwi)
    return nrrd.write_nrrd_dwi(path, dwi, compress_nrrd)


def load_volume(path):
    """Load a 3D scalar volume (NIfTI or NRRD) -> (float32 array, affine)."""
    if file_format(path) == "nifti":
        data, affine = nifti.read_nifti(path)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise InputError(path, "a 3D volume", f"{data.ndim}D data of shape {data.shape}")
        return data, affine
    if file_format(path) == "nrrd":
        return nrrd.read_nrrd_scalar(path)
    raise InputError(path, "a NIfTI or NRRD volume", "a folder")


def load_mask(path, dwi):
    """Load a mask on the DWI's grid: nonzero voxels are inside."""
    data, affine = load_volume(path)
    check_same_grid(dwi.data.shape, dwi.affine, data.shape, affine, path, "a mask")
    mask = data != 0
    if not mask.any():
        raise InputError(path, "a mask with voxels inside (nonzero)", "every voxel zero")
    if not (mask & (dwi.mean_b0() > 0)).any():
        raise InputError(path, "a mask covering voxels where the DWI's b=0 has signal", "no such voxel inside")
    return mask


def save_volume(path, volume, affine, rgb=False):
    """Write a scalar (x, y, z) or vector (x, y, z, 3) map as NIfTI or NRRD (RGB colour if `rgb`)."""
    if file_format(path) == "nifti":
        volume = np.asarray(volume)
        nifti.write_nifti(path, volume if volume.dtype == np.uint8 else volume.astype(np.float32), affine)
    else:
        nrrd.write_nrrd_scalar(path, volume, affine, rgb=rgb)
    return [Path(path)]


def save_tensor(path, tensor6, affine):
    """Write tensors (x, y, z, 6) [mm^2/s, RAS]: NIfTI as 6 volumes in MRtrix3 order, or DTI NRRD."""
    if file_format(path) == "nifti":
        nifti.write_nifti(path, np.asarray(tensor6, dtype=np.float32), affine)
        return [Path(path)]
    return nrrd.write_nrrd_tensor(path, tensor6, affine)


def load_tensor(path):
    """Load tensors written by save_tensor -> (float32 (x, y, z, 6) RAS, affine)."""
    if file_format(path) == "nifti":
        data, affine = nifti.read_nifti(path)
        if data.ndim != 4 or data.shape[3] != 6:
            raise InputError(path, "a 4D tensor image with 6 volumes", f"data of shape {data.shape}")
        return data, affine
    return nrrd.read_nrrd_tensor(path)


def load_reference_b0(path):
    """A separate b=0 volume (3D, or the first volume of a 4D file) as (volume, affine, source)."""
    if file_format(path) == "nifti":
        data, affine = nifti.read_nifti(path)
        if data.ndim == 4:
            data = data[..., 0]
    else:
        data, affine = load_volume(path)
    if data.ndim != 3:
        raise InputError(path, "a 3D b=0 volume", f"{data.ndim}D data of shape {data.shape}")
    if not np.isfinite(data).all() or not np.any(data > 0):
        raise InputError(path, "a finite b=0 volume with signal", "NaN, inf or no positive voxel")
    return data.astype(np.float32), affine, str(path)
