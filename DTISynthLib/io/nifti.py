"""NIfTI (.nii / .nii.gz) with FSL bval / bvec files.

bvec frame: FSL's convention (frames.fsl_bvecs_to_ras); in memory gradients are RAS world vectors.
The affine is the sform when its code is set, else the qform (nibabel's get_best_affine).
.nii.gz files are read and written through ISA-L's gzip (python-isal): the same gzip format, 10 times
faster to write at level 1 than zlib and twice as fast to read, streamed without a second copy.
"""

import contextlib
from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip

GZIP_LEVEL = 1  # ISA-L level 1 compresses as well as zlib level 1 (the nibabel default) here

from ..core.dwi import DWI
from ..core.errors import InputError, refuse_special_file
from ..core.frames import check_affine, fsl_bvecs_to_ras, ras_to_fsl_bvecs


def nifti_stem(path):
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def fsl_sidecar(path, suffix):
    """The file beside a NIfTI with its stem and `suffix` (".bval", ".bvec", ".json")."""
    return Path(path).with_name(nifti_stem(path) + suffix)


def check_data_size(path, img):
    """Refuse, from the header alone, an image whose data the file cannot hold: before anything is
    allocated (a 1 KB file claiming 1.5 GB). Uncompressed: the file's size; gzip: the uncompressed size
    its trailer records (modulo 2^32, so exact below 4 GiB; single-member files)."""
    header = img.header
    expected = int(header["vox_offset"]) + int(np.prod(header.get_data_shape(), dtype=np.int64)) * \
        header.get_data_dtype().itemsize
    if str(path).endswith(".gz"):
        with open(path, "rb") as handle:
            flags = handle.read(4)[3:4]
            handle.seek(-4, 2)
            available = int.from_bytes(handle.read(4), "little")
        # A gzip header with extra fields (BGZF: many members, the last one empty) says nothing of the
        # whole: those are left to the reader.
        extra_fields = bool(flags) and flags[0] & 0x04
        if not extra_fields and expected < 2**32 and expected > available:
            raise InputError(path, f"the {expected} bytes its header describes", f"{available} bytes uncompressed "
                             "(a damaged or truncated file)")
    elif expected > (size := Path(path).stat().st_size):
        raise InputError(path, f"the {expected} bytes its header describes", f"{size} bytes (a damaged or truncated file)")


def read_nifti(path):
    """Load a NIfTI image: (float32 array, 4x4 affine); RGB24 (write_nifti_rgb24) as (x, y, z, 3) in
    [0, 1]. Corrupt or truncated files raise InputError."""
    path = Path(path)
    refuse_special_file(path)
    try:
        with _opened_image(path) as img:
            data = _read_data(path, img)
    except FileNotFoundError:
        raise InputError(path, "an existing NIfTI file", "no such file") from None
    except InputError:
        raise
    except Exception as exc:  # nibabel and gzip raise many types for damaged files
        raise InputError(path, "a readable NIfTI file", f"a damaged or truncated file ({exc})") from None
    check_affine(path, img.affine)
    return data, img.affine.astype(np.float64)


def read_nifti_bytes(data, name):
    """read_nifti of an uncompressed single-file NIfTI-1 held in memory (`data`, bytes), such as a review
    image the study server sent; `name` says where it came from in errors."""
    try:
        img = nib.Nifti1Image.from_bytes(bytes(data))
        values = _voxel_values(name, img)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(name, "an uncompressed NIfTI-1 image", f"unreadable bytes ({exc})") from None
    check_affine(name, img.affine)
    return values, img.affine.astype(np.float64)


@contextlib.contextmanager
def _opened_image(path):
    """The nibabel image of `path`, its data readable inside the block (a .gz one streams through ISA-L)."""
    if not path.name.endswith(".gz"):
        yield nib.load(str(path))
        return
    with igzip.open(path, "rb") as handle:
        sizeof_hdr = handle.read(4)  # 540 (either byte order) for NIfTI-2, 348 for NIfTI-1
        image_class = nib.Nifti2Image if 540 in (int.from_bytes(sizeof_hdr, "little"), int.from_bytes(sizeof_hdr, "big")) \
            else nib.Nifti1Image
        handle.seek(0)
        holder = nib.FileHolder(filename=str(path), fileobj=handle)
        yield image_class.from_file_map({"header": holder, "image": holder})


def _read_data(path, img):
    check_data_size(path, img)
    return _voxel_values(path, img)


def _voxel_values(path, img):
    """The voxels of `img` as float32 (RGB24 as (..., 3) in [0, 1]); complex data refused."""
    if np.issubdtype(img.get_data_dtype(), np.complexfloating):
        raise InputError(path, "real-valued (magnitude) voxels", f"{img.get_data_dtype()} complex data: "
                         "its imaginary part would be lost (take the magnitude first)")
    if img.get_data_dtype().names == ("R", "G", "B"):
        packed = np.asarray(img.dataobj)
        return np.stack([packed[c] for c in "RGB"], axis=-1).astype(np.float32) / 255
    return np.asarray(img.dataobj, dtype=np.float32)


def read_fsl_bvals(bval_path, n_volumes=None):
    """Read an FSL bval text file -> (n,) float64 b-values (s/mm^2, as written: not yet scaled by
    |g|^2); with n_volumes, refuse another count."""
    try:
        bvals = np.loadtxt(bval_path, dtype=np.float64, ndmin=1).reshape(-1)
    except (OSError, ValueError) as exc:
        raise InputError(bval_path, "a text file of b-values", f"unreadable content ({exc})") from None
    if n_volumes is not None and bvals.shape[0] != n_volumes:
        raise InputError(bval_path, f"{n_volumes} b-values, one per volume of the image", f"{bvals.shape[0]} b-values")
    return bvals


def read_fsl_gradients(bval_path, bvec_path, n_volumes, affine):
    """Read FSL bval / bvec text files -> (bvals (n,), RAS unit gradients (n, 3))."""
    bvals = read_fsl_bvals(bval_path)
    try:
        bvecs = np.loadtxt(bvec_path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise InputError(bvec_path, "a text file of 3 rows of vector components", f"unreadable content ({exc})") from None
    if bvecs.shape[0] != 3 and bvecs.shape[1] == 3:
        bvecs = bvecs.T  # some tools write one vector per line
    if bvecs.shape[0] != 3:
        raise InputError(bvec_path, "3 rows (x, y, z components)", f"an array of shape {bvecs.shape}")
    if bvals.shape[0] != n_volumes:
        raise InputError(bval_path, f"{n_volumes} b-values, one per volume of the image", f"{bvals.shape[0]} b-values")
    if bvecs.shape[1] != n_volumes:
        raise InputError(bvec_path, f"{n_volumes} vectors, one per volume of the image", f"{bvecs.shape[1]} vectors")
    return bvals, fsl_bvecs_to_ras(bvecs, affine)


def read_nifti_dwi(path, bval=None, bvec=None):
    """Load NIfTI DWI with FSL gradients; bval / bvec default to files beside it with the same stem."""
    path = Path(path)
    bval = Path(bval) if bval else fsl_sidecar(path, ".bval")
    bvec = Path(bvec) if bvec else fsl_sidecar(path, ".bvec")
    data, affine = read_nifti(path)
    if data.ndim != 4:
        raise InputError(path, "a 4D image (x, y, z, volumes)", f"{data.ndim}D data of shape {data.shape}")
    for side in (bval, bvec):
        refuse_special_file(side)
        if not side.exists():
            raise InputError(side, "an FSL gradient file beside the NIfTI DWI (or pass --bval / --bvec)", "no such file")
    bvals, gradients = read_fsl_gradients(bval, bvec, data.shape[3], affine)
    return DWI(data, affine, bvals, gradients, str(path))


def write_nifti(path, data, affine):
    """Write an array as NIfTI with `affine` as both sform and qform (code 1, scanner)."""
    img = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=np.float64))
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    if not str(path).endswith(".gz"):
        nib.save(img, str(path))
        return
    # mtime 0: the same image gives the same bytes (as nibabel writes them)
    with igzip.IGzipFile(str(path), "wb", compresslevel=GZIP_LEVEL, mtime=0) as handle:
        holder = nib.FileHolder(filename=str(path), fileobj=handle)
        img.to_file_map({"header": holder, "image": holder})


def write_nifti_rgb24(path, rgb, affine):
    """Write an (x, y, z, 3) colour map with values in [0, 1] as NIfTI RGB24 (datatype 128: one RGB voxel,
    what viewers such as NiiVue show as colour)."""
    rgb = np.round(np.clip(np.nan_to_num(np.asarray(rgb, dtype=np.float64)), 0, 1) * 255).astype(np.uint8)
    packed = np.empty(rgb.shape[:3], dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    packed["R"], packed["G"], packed["B"] = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    write_nifti(path, packed, affine)


def exact_text(value):
    """Shortest decimal text that reads back as exactly the same float64 (1000, not 1000.0000000)."""
    short = f"{value:.15g}"
    return short if float(short) == value else repr(float(value))


def write_nifti_dwi(path, dwi):
    """Write DWI as NIfTI + FSL .bval / .bvec beside it (same stem). Returns the three paths."""
    path = Path(path)
    write_nifti(path, dwi.data.astype(np.float32), dwi.affine)
    bval, bvec = fsl_sidecar(path, ".bval"), fsl_sidecar(path, ".bvec")
    bval.write_text(" ".join(exact_text(v) for v in dwi.bvals) + "\n")
    bvec.write_text("".join(" ".join(exact_text(v) for v in row) + "\n"
                            for row in ras_to_fsl_bvecs(dwi.gradients, dwi.affine)))
    return [path, bval, bvec]
