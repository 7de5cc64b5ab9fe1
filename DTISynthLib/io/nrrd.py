"""Slicer NRRD files: DWI (.nrrd / .nhdr with DWMRI_* keys), DTI (3D-matrix kind) and scalar volumes.

Frames: NRRD `space directions` and `space origin` are in the header's `space` (Slicer writes
left-posterior-superior); gradient vectors and tensors are in the `measurement frame`, which maps
them into that space. Readers convert everything to RAS world vectors; writers emit Slicer's
convention (LPS space, identity measurement frame, gradients in LPS).
A DWI's per-volume b-value is DWMRI_b-value x |g|^2 (Slicer's rule for multi-shell NRRD).
"""

from pathlib import Path

import nrrd
import numpy as np

from ..core.dwi import DWI
from ..core.errors import InputError, refuse_special_file
from ..core.frames import LPS_TO_RAS, check_affine
from ..core.tensor_layout import matrix_to_tensor6, tensor6_to_matrix
from .nifti import exact_text

# "scanner-xyz" and the 3D-*-handed spaces do not say which way the axes point: refused.
_SPACE_TO_RAS = {
    "left-posterior-superior": LPS_TO_RAS, "LPS": LPS_TO_RAS,
    "right-anterior-superior": np.eye(3), "RAS": np.eye(3),
    "left-anterior-superior": np.diag([-1.0, 1.0, 1.0]), "LAS": np.diag([-1.0, 1.0, 1.0]),
}
_NON_SPATIAL_KINDS = {"list", "vector", "3d-matrix", "rgb-color", "covariant-vector", "point"}


def _read(path):
    path = Path(path)
    refuse_special_file(path)
    if not path.exists():
        raise InputError(path, "an existing NRRD file", "no such file")
    try:
        data, header = nrrd.read(str(path), index_order="F")
    except Exception as exc:  # pynrrd raises several types for damaged files
        raise InputError(path, "a readable NRRD file", f"a damaged or truncated file ({exc})") from None
    return data, header


def _geometry(path, header, spatial_axes):
    """4x4 voxel -> RAS affine and the measurement frame in RAS (3x3) from a NRRD header."""
    space = header.get("space")
    if space not in _SPACE_TO_RAS:
        raise InputError(path, "an anatomical space: left-posterior-superior, right-anterior-superior or "
                         "left-anterior-superior", f"space {space!r}")
    to_ras = _SPACE_TO_RAS[space]
    directions = np.asarray(header["space directions"], dtype=np.float64)[spatial_axes]
    origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = to_ras @ directions.T
    affine[:3, 3] = to_ras @ origin
    check_affine(path, affine)
    frame = np.asarray(header.get("measurement frame", np.eye(3)), dtype=np.float64)
    # pynrrd returns the measurement frame as written, one row per frame vector; the frame vectors are
    # the columns of the matrix that maps measurement coordinates into space coordinates.
    return affine, to_ras @ frame.T


def _split_axes(path, header, data, expect_nonspatial):
    kinds = [k.lower() for k in header.get("kinds", ["domain"] * data.ndim)]
    nonspatial = [i for i, k in enumerate(kinds) if k in _NON_SPATIAL_KINDS]
    spatial = [i for i, k in enumerate(kinds) if k not in _NON_SPATIAL_KINDS]
    if len(spatial) != 3 or len(nonspatial) != expect_nonspatial:
        raise InputError(path, f"3 spatial axes and {expect_nonspatial} list/matrix axis",
                         f"kinds {header.get('kinds')} for sizes {list(data.shape)}")
    return spatial, nonspatial


def read_nrrd_dwi(path):
    """Load a Slicer DWI NRRD -> DWI with RAS gradients."""
    return _dwi(path, *_read(path))


def read_nrrd_volume_or_dwi(path):
    """Load a 3D scalar NRRD or a 4D one (x, y, z, volumes; a DWI NRRD by read_nrrd_dwi's rules) ->
    (float32 data, voxel -> RAS affine (mm), per-volume b-values (s/mm^2) from the gradient table, or
    None for a 3D volume or a 4D one without DWMRI_b-value): what a reference b=0 may be
    (files.load_reference_b0)."""
    data, header = _read(path)
    if data.ndim == 3:
        affine, _ = _geometry(path, header, [0, 1, 2])
        return data.astype(np.float32), affine, None
    if data.ndim == 4 and "DWMRI_b-value" in header:
        dwi = _dwi(path, data, header)
        return dwi.data, dwi.affine, dwi.bvals
    if data.ndim != 4:
        raise InputError(path, "a 3D or 4D NRRD", f"{data.ndim}D data of shape {data.shape}")
    spatial, (list_axis,) = _split_axes(path, header, data, 1)
    affine, _ = _geometry(path, header, spatial)
    return np.ascontiguousarray(np.moveaxis(data, list_axis, -1).astype(np.float32)), affine, None


def _dwi(path, data, header):
    if data.ndim != 4:
        raise InputError(path, "a 4D DWI NRRD (3 spatial axes + a list of volumes)", f"{data.ndim}D data of shape {data.shape}")
    spatial, (list_axis,) = _split_axes(path, header, data, 1)
    affine, frame_to_ras = _geometry(path, header, spatial)
    if "DWMRI_b-value" not in header:
        raise InputError(path, "a DWMRI_b-value key (the largest b-value, s/mm^2)",
                         f"only the keys {sorted(k for k in header if k.startswith('DWMRI'))}")
    try:
        bmax = float(header["DWMRI_b-value"])
    except ValueError:
        raise InputError(path, "a number after DWMRI_b-value:= (s/mm^2)", repr(header["DWMRI_b-value"])) from None
    n = data.shape[list_axis]
    raw = []
    for i in range(n):
        key = f"DWMRI_gradient_{i:04d}"
        if key not in header:
            raise InputError(path, f"{n} DWMRI_gradient_NNNN keys, one per volume", f"no {key}")
        try:
            raw.append([float(v) for v in str(header[key]).split()])
        except ValueError:
            raise InputError(path, f"three numbers after {key}:=", repr(header[key])) from None
    raw = np.asarray(raw, dtype=np.float64)
    norms = np.linalg.norm(raw, axis=1)
    bvals = bmax * norms**2
    gradients = (frame_to_ras @ raw.T).T
    lengths = np.linalg.norm(gradients, axis=1)
    gradients = np.divide(gradients, lengths[:, None], out=np.zeros_like(gradients), where=lengths[:, None] > 0)
    volumes = np.moveaxis(data, list_axis, -1).astype(np.float32)
    return DWI(np.ascontiguousarray(volumes), affine, bvals, gradients, str(path))


def _header_geometry(affine):
    """NRRD space fields (LPS space) for a voxel -> RAS affine."""
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)[:3, :]  # LPS_TO_RAS is its own inverse
    return {"space": "left-posterior-superior", "space directions": lps[:, :3].T, "space origin": lps[:, 3]}


def write_nrrd_dwi(path, dwi, compress=True):
    """Write a DWI as Slicer DWI NRRD (list axis first, LPS space, identity measurement frame), gzip
    level 1 or raw (compress=False: float signals shrink only ~10 %, raw writes and loads faster)."""
    bmax = float(dwi.bvals.max())
    scale = np.sqrt(np.clip(dwi.bvals / bmax, 0.0, None)) if bmax > 0 else np.zeros_like(dwi.bvals)
    lps_gradients = (LPS_TO_RAS @ dwi.gradients.T).T * scale[:, None]
    geometry = _header_geometry(dwi.affine)
    header = {
        "type": "float", "dimension": 4, "space": geometry["space"],
        "space directions": np.vstack([np.full(3, np.nan), geometry["space directions"]]),
        "space origin": geometry["space origin"], "kinds": ["list", "domain", "domain", "domain"],
        "endian": "little", "encoding": "gzip" if compress else "raw", "measurement frame": np.eye(3),
        "modality": "DWMRI", "DWMRI_b-value": exact_text(bmax),
    }
    for i, g in enumerate(lps_gradients):
        header[f"DWMRI_gradient_{i:04d}"] = " ".join(exact_text(v) for v in g)
    data = np.moveaxis(dwi.data.astype(np.float32), -1, 0)
    _write(path, data, header)
    return [Path(path)]


def _write(path, data, header):
    path = Path(path)
    detached = path.suffix == ".nhdr"
    custom = {k: "string" for k in header if k.startswith("DWMRI") or k == "modality"}
    nrrd.write(str(path), data, header, detached_header=detached, index_order="F", custom_field_map=custom,
               compression_level=1)  # gzip level 1: several times faster than 9, files ~10 % larger


def write_nrrd_tensor(path, tensor6, affine):
    """Write tensors (x, y, z, 6: Dxx, Dyy, Dzz, Dxy, Dxz, Dyz in RAS, mm^2/s) as a Slicer DTI NRRD."""
    matrices = LPS_TO_RAS @ tensor6_to_matrix(tensor6) @ LPS_TO_RAS
    geometry = _header_geometry(affine)
    header = {
        "type": "float", "dimension": 4, "space": geometry["space"],
        "space directions": np.vstack([np.full(3, np.nan), geometry["space directions"]]),
        "space origin": geometry["space origin"], "kinds": ["3D-matrix", "domain", "domain", "domain"],
        "endian": "little", "encoding": "gzip", "measurement frame": np.eye(3),
    }
    data = np.moveaxis(matrices.reshape(matrices.shape[:3] + (9,)).astype(np.float32), -1, 0)
    _write(path, data, header)
    return [Path(path)]


def read_nrrd_tensor(path):
    """Load a DTI NRRD -> (tensors (x, y, z, 6) in RAS, affine)."""
    data, header = _read(path)
    spatial, (matrix_axis,) = _split_axes(path, header, data, 1)
    if data.shape[matrix_axis] != 9:
        raise InputError(path, "9 tensor components on the 3D-matrix axis", f"{data.shape[matrix_axis]}")
    affine, frame_to_ras = _geometry(path, header, spatial)
    matrices = np.moveaxis(data, matrix_axis, -1).reshape(tuple(data.shape[a] for a in spatial) + (3, 3))
    ras = frame_to_ras @ matrices.astype(np.float64) @ frame_to_ras.T
    return matrix_to_tensor6(ras).astype(np.float32), affine


def write_nrrd_scalar(path, volume, affine, rgb=False):
    """Write a volume as NRRD: scalar (x, y, z), vector (x, y, z, 3), or colour (x, y, z, 3) in [0, 1]
    as 8-bit RGB when `rgb`. Vector components are written in the header space (LPS), like gradients."""
    volume = np.asarray(volume)
    geometry = _header_geometry(affine)
    header = {"dimension": volume.ndim, "space": geometry["space"], "space origin": geometry["space origin"],
              "endian": "little", "encoding": "gzip"}
    if volume.ndim == 4:
        if rgb:
            data = np.clip(np.round(volume * 255.0), 0, 255).astype(np.uint8)
        else:
            data = (LPS_TO_RAS @ volume.reshape(-1, 3).T).T.reshape(volume.shape).astype(np.float32)
        header.update({"type": "uchar" if rgb else "float", "kinds": ["RGB-color" if rgb else "vector"] + ["domain"] * 3,
                       "space directions": np.vstack([np.full(3, np.nan), geometry["space directions"]])})
        data = np.moveaxis(data, -1, 0)
    else:
        data = volume if volume.dtype == np.uint8 else volume.astype(np.float32)
        header.update({"type": "uchar" if data.dtype == np.uint8 else "float", "kinds": ["domain"] * 3,
                       "space directions": geometry["space directions"]})
    _write(path, data, header)
    return [Path(path)]


def read_nrrd_scalar(path):
    """Load a 3D scalar NRRD -> (float32 array (x, y, z), affine)."""
    data, header = _read(path)
    if data.ndim != 3:
        raise InputError(path, "a 3D scalar NRRD", f"{data.ndim}D data of shape {data.shape}")
    affine, _ = _geometry(path, header, [0, 1, 2])
    return data.astype(np.float32), affine
