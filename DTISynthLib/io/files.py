"""Load and save DWI, tensor and scalar images in any supported format, chosen by file name.

Formats: NIfTI (.nii, .nii.gz) with FSL bval / bvec; Slicer NRRD (.nrrd, .nhdr); DICOM folders
through dcm2niix. Everything is converted to the in-memory DWI (RAS world gradients) on load.
"""

from pathlib import Path

import numpy as np

from ..core.dwi import B0_THRESHOLD, DWI, check_b0_signal, check_dwi, check_same_grid
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
    """The reference b=0 of `synthesize --b0` as (volume (x, y, z) float32 in the file's signal units,
    voxel -> RAS affine (mm), source). A 3D volume (or a 4D one of one volume) is taken as it is. A 4D
    image (a DTI, a DWI, a series of b=0 volumes) gives the mean of its b=0 volumes (b <= 50 s/mm^2),
    as a DWI's own b=0 is taken (DWI.mean_b0), found by its b-values: the FSL .bval beside a NIfTI
    (no .bvec needed), a NRRD's gradient table. A 4D image without them, or without a b=0 volume, is
    refused: its first volume may be diffusion-weighted. The b=0 must be finite and mostly positive
    (check_b0_signal, the DWI's own rule)."""
    fmt = file_format(path)
    if fmt == "nifti":
        data, affine = nifti.read_nifti(path)
        bval = nifti.fsl_sidecar(path, ".bval")
        bvals = None
        if data.ndim == 4 and data.shape[3] > 1:
            refuse_special_file(bval)
            if bval.exists():
                bvals = nifti.read_fsl_bvals(bval, data.shape[3])
        where = f"no {bval.name} beside it"
    elif fmt == "nrrd":
        data, affine, bvals = nrrd.read_nrrd_volume_or_dwi(path)
        where = "no gradient table (DWMRI_b-value, DWMRI_gradient_NNNN keys)"
    else:
        raise InputError(path, "a NIfTI or NRRD b=0 volume", "a folder")
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    elif data.ndim == 4:
        n = data.shape[3]
        if bvals is None:
            raise InputError(path, "a 3D b=0 volume, or a 4D image whose b-values mark its b=0 volumes (FSL .bval "
                             "beside a NIfTI, a NRRD's gradient table)", f"{n} volumes and {where}")
        if not np.isfinite(bvals).all() or (bvals < 0).any():
            raise InputError(path, "finite, non-negative b-values", f"{bvals.tolist()}")
        is_b0 = bvals <= B0_THRESHOLD
        if not is_b0.any():
            raise InputError(path, f"a b=0 volume (b <= {B0_THRESHOLD:g} s/mm^2) among its {n} volumes",
                             f"b-values {sorted(set(np.round(bvals, 1).tolist()))}")
        data = DWI(data, affine, bvals, np.zeros((n, 3)), str(path)).mean_b0()
    if data.ndim != 3:
        raise InputError(path, "a 3D b=0 volume", f"{data.ndim}D data of shape {data.shape}")
    if not np.isfinite(data).all():
        raise InputError(path, "a finite b=0 volume", f"{int((~np.isfinite(data)).sum())} NaN or inf voxels")
    check_b0_signal(path, data)
    return data.astype(np.float32), affine, str(path)
