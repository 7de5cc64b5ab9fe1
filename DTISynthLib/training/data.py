"""Paired slices for training the generators: 3-direction DWI -> each 6-direction DTI direction.

Data layout (what `dtisynth simulate cohort` and `dtisynth pairs` write, or your own): any folder
tree holding, per subject, `<name>_acq-dwi3_dwi.<ext>` and `<name>_acq-dti6_dwi.<ext>` side by side
(NIfTI + bval / bvec, or NRRD). The DWI is registered rigidly to the DTI b=0 (registration.rigid);
DWI and DTI are resampled onto the model grid (the DTI's axial slices, core.model_grid.axial_slices;
the first pair's in-plane voxel size, the grid's matrix, centred) so that scans of any resolution and
slice plane train one network.

Intensity: the caller's mapping to network units (generators.intensity.Intensity or any object with
to_network(signal, b0)).
Frames: the DWI's x, y, z volumes are ordered by the scanner axes (RAS x, y, z); a left-right flip
of a slice negates the x component of every gradient, so flipped inputs pair with flipped targets
only when the target direction is flipped too (flip_direction).
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.gradient_schemes import AXES_3_RAS, SIEMENS_6_RAS
from ..core.model_grid import ModelGrid, axial_slices
from ..core.output_layout import DTI6, DWI3, acquisition_name
from ..core.progress import NullReporter
from ..io.files import load_dwi
from ..registration.rigid import register_rigid, resample_rigid

_DWI3 = re.compile(r"^(?P<stem>.+)" + re.escape(acquisition_name("", DWI3, ".")) + r"(?P<ext>nii\.gz|nii|nrrd|nhdr)$")


@dataclass
class SubjectPair:
    subject: str
    dwi3: Path
    dti6: Path


def find_pairs(folder):
    """Every <name>_acq-dwi3_dwi / <name>_acq-dti6_dwi pair under `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "a folder of paired DWI / DTI files", "no such folder")
    pairs = []
    for path in sorted(folder.rglob(acquisition_name("*", DWI3, ".*"))):
        match = _DWI3.match(path.name)
        if not match:
            continue
        partner = path.with_name(acquisition_name(match["stem"], DTI6, "." + match["ext"]))
        if partner.exists():
            pairs.append(SubjectPair(match["stem"].split("_")[0] if match["stem"].startswith("sub-") else match["stem"],
                                     path, partner))
    if not pairs:
        raise InputError(folder, "<name>_acq-dwi3_dwi and <name>_acq-dti6_dwi files side by side (see training/data.py)",
                         "no such pairs")
    return pairs


def source_and_subject(pair, root):
    """(source, subject) of a pair found under the data folder `root`: the source is the top-level folder
    holding it (e.g. phantom/, real/; "" for a pair directly in root), the subject its second-level folder
    (real/canon/ holds every series of one subject), or the pair's own name one level down or less.
    Training samples sources, then subjects, evenly; series of one subject must share the folder."""
    folders = Path(pair.dwi3).relative_to(root).parts[:-1]
    return (folders[0] if folders else "", "/".join(folders[:2]) if len(folders) >= 2 else pair.subject)


def check_acquisitions(dwi3, dti6):
    """The DWI must be b=0 + x, y, z and the DTI b=0 + Siemens' 6 directions, at one b-value."""
    for dwi, nominal, name in ((dwi3, AXES_3_RAS, "b=0 + x, y, z"), (dti6, SIEMENS_6_RAS, "b=0 + Siemens' 6 directions")):
        weighted = ~dwi.is_b0
        if weighted.sum() != len(nominal) or dwi.is_b0.sum() < 1:
            raise InputError(dwi.source, f"{name}", f"{int(dwi.is_b0.sum())} b=0 and {int(weighted.sum())} weighted volumes")
        cosines = np.abs((dwi.gradients[weighted] * nominal).sum(axis=1))
        if cosines.min() < np.cos(np.radians(20)):
            raise InputError(dwi.source, f"{name} in that order (within 20 degrees)",
                             f"vectors {dwi.gradients[weighted].round(3).tolist()}")
    if abs(dwi3.bvals.max() - dti6.bvals.max()) > 50:
        raise InputError(dwi3.source, f"the DTI's b-value {dti6.bvals.max():g}", f"b = {dwi3.bvals.max():g}")


def fit_to_grid(volume, grid):
    """Centre-pad with zeros or centre-crop the first two axes of (x, y, ...) to `grid` (H, W)."""
    out = volume
    for axis, size in enumerate(grid):
        current = out.shape[axis]
        if current > size:
            start = (current - size) // 2
            out = np.take(out, np.arange(start, start + size), axis=axis)
        elif current < size:
            before = (size - current) // 2
            pad = [(0, 0)] * out.ndim
            pad[axis] = (before, size - current - before)
            out = np.pad(out, pad)
    return out


def load_subject_slices(pair, intensity, grid, register=True, voxel=None):
    """Network-ready slices of one subject: inputs (Z, 3, H, W) and targets (Z, 6, H, W), float32, on the
    model grid (core.model_grid.ModelGrid: the DTI's axial slices, matrix `grid`, in-plane voxel size `voxel`
    mm; voxel None: the DTI's own voxels, centre-padded or cropped to `grid`).

    Returns (inputs, targets, info) where info records the registration and its quality.
    """
    dwi3, dti6 = axial_slices(load_dwi(pair.dwi3)), axial_slices(load_dwi(pair.dti6))
    check_acquisitions(dwi3, dti6)
    dwi_b0, dti_b0 = dwi3.mean_b0(), dti6.mean_b0()
    weighted3 = dwi3.data[..., ~dwi3.is_b0]
    info = {"subject": pair.subject, "registered": register, "b_value": round(float(dti6.bvals.max()), 1)}
    if register:
        result = register_rigid(dti_b0, dti6.affine, dwi_b0, dwi3.affine)
        matrix = result.matrix
        info.update(correlation=result.correlation, matrix=matrix.round(6).tolist())
    else:
        matrix = np.eye(4)
    model = ModelGrid.for_native(dti6.affine, dti6.data.shape, grid if voxel else None, voxel)
    moved = resample_rigid(np.concatenate([dwi_b0[..., None], weighted3], axis=-1), dwi3.affine, model.affine,
                           model.shape, matrix)
    target_signals = np.concatenate([dti_b0[..., None], dti6.data[..., ~dti6.is_b0]], axis=-1)
    if not model.is_native(dti6.affine, dti6.data.shape):
        info["resampled_to_mm"] = [float(v) for v in voxel[:2]]
        target_signals = resample_rigid(target_signals.astype(np.float32), dti6.affine, model.affine, model.shape,
                                        np.eye(4))
    inputs = intensity.to_network(moved[..., 1:], moved[..., :1])
    targets = intensity.to_network(target_signals[..., 1:], target_signals[..., :1])
    # (x, y, z, c) -> slices (z, c, y, x): image rows run along y, columns along x
    inputs = np.transpose(fit_to_grid(inputs, grid), (2, 3, 1, 0))
    targets = np.transpose(fit_to_grid(targets, grid), (2, 3, 1, 0))
    return np.ascontiguousarray(inputs), np.ascontiguousarray(targets), info


def split_subjects(subjects, validation_fraction=0.1, seed=0, chosen=None):
    """Split subject names (never slices) into (training, validation), reproducibly: the `chosen` names
    when given, else a random `validation_fraction` of them (none when it is 0)."""
    subjects = sorted(subjects)
    if chosen:
        missing = sorted(set(chosen) - set(subjects))
        if missing:
            raise InputError("--validation-subjects", f"names among the data's subjects {subjects}", f"{missing}")
        return [s for s in subjects if s not in chosen], sorted(chosen)
    if validation_fraction <= 0:
        return subjects, []
    if len(subjects) < 2:
        raise InputError("training data", "at least 2 subjects (one for validation)", f"{len(subjects)}")
    order = np.random.default_rng(seed).permutation(len(subjects))
    n_val = max(1, int(round(validation_fraction * len(subjects))))
    validation = sorted(subjects[i] for i in order[:n_val])
    return [s for s in subjects if s not in validation], validation


def flip_direction(gradient):
    """The gradient direction a left-right flipped slice shows: x negated (RAS)."""
    return np.asarray(gradient, dtype=np.float64) * np.array([-1.0, 1.0, 1.0])


def flip_pair_index(direction_index):
    """Index (0-5) of the Siemens direction equal, up to sign, to the flip of direction `direction_index`
    (0-5), or None if no direction of the scheme matches."""
    flipped = flip_direction(SIEMENS_6_RAS[direction_index])
    cosines = np.abs(SIEMENS_6_RAS @ flipped)
    best = int(np.argmax(cosines))
    return best if cosines[best] > 1 - 1e-9 else None


def default_grid(shape, depth):
    """Smallest square grid, a multiple of 2**depth, that holds an (H, W) slice."""
    step = 2**depth
    size = int(np.ceil(max(shape[:2]) / step) * step)
    return (size, size)


def max_depth(shape):
    """The most down-samplings whose default_grid keeps the padded side below twice the larger side S of
    an (H, W) slice: the padded side is 2**depth rounded up from S, under 2 S exactly while 2**depth < 2 S,
    so depth <= ceil(log2 S) (48: 6, a 64 grid; 64: 6; 80: 7, a 128 grid). One more would at least double
    the side: 4 times the pixels (compute and memory) for zeros, and each further one 4 times again."""
    return (int(max(shape[:2])) - 1).bit_length()


def training_grid(shape, depth, grid=None):
    """The slice grid (H, W) that networks of `depth` down-samplings train on, for axial slices of
    `shape` (x, y, ...): `grid` as given (--grid; each side a multiple of 2**depth), else default_grid,
    refusing a depth beyond max_depth (it would pad the slices to twice their side or more)."""
    if grid:
        grid = tuple(grid)
        if grid[0] % 2**depth or grid[1] % 2**depth:
            raise InputError("--grid", f"a grid divisible by 2**depth = {2**depth}", f"{grid[0]} x {grid[1]}")
        return grid
    if depth > max_depth(shape):
        padded = default_grid(shape, depth)
        raise InputError("--depth", f"at most {max_depth(shape)} for {shape[0]} x {shape[1]} slices (the slices are "
                         "padded to a multiple of 2**depth, and 2**depth must stay below twice their larger side; "
                         "or give --grid)", f"{depth}: {padded[0]} x {padded[1]} slices, "
                         f"{padded[0] * padded[1] / (shape[0] * shape[1]):.0f} times the pixels")
    return default_grid(shape, depth)


def load_training_data(data_dir, intensity, depth, grid=None, validation_fraction=0.1, seed=0, register=True,
                       reporter=NullReporter(), validation_subjects=None):
    """Slices of every subject, split by subject: ((x, y) train, (x, y) validation or None, provenance).
    provenance["subject_slices"]: {"train" / "validation": [(subject, slices, b-value)]} in the order the
    slices are concatenated, for kinds that look at neighbouring slices or need each subject's b."""
    pairs = find_pairs(data_dir)
    training, validation = split_subjects([p.subject for p in pairs], validation_fraction, seed, validation_subjects)
    reference = axial_slices(load_dwi(pairs[0].dti6))
    grid = training_grid(reference.data.shape, depth, grid)
    voxel = [float(v) for v in np.linalg.norm(reference.affine[:3, :3], axis=0)]
    slices = {"train": ([], []), "validation": ([], [])}
    registration, subject_slices = {}, {"train": [], "validation": []}
    for i, pair in enumerate(pairs):
        reporter.progress("data", i / len(pairs), f"{pair.subject}: registering DWI to DTI, slicing")
        x, y, info = load_subject_slices(pair, intensity, grid, register, voxel)
        if abs(info["b_value"] - float(reference.bvals.max())) > 50:
            raise InputError(pair.dti6, f"the b-value of the first pair, {reference.bvals.max():g} s/mm^2 (networks "
                             "of signals learn one b)", f"b = {info['b_value']:g}")
        registration[pair.subject] = {k: v for k, v in info.items() if k != "subject"}
        part = "validation" if pair.subject in validation else "train"
        slices[part][0].append(x)
        slices[part][1].append(y)
        subject_slices[part].append((pair.subject, int(x.shape[0]), info["b_value"]))
    reporter.progress("data", 1.0, f"{len(training)} training, {len(validation)} validation subjects")
    train = (np.concatenate(slices["train"][0]), np.concatenate(slices["train"][1]))
    val = (np.concatenate(slices["validation"][0]), np.concatenate(slices["validation"][1])) if validation else None
    provenance = {"data": str(data_dir), "training_subjects": training, "validation_subjects": validation,
                  "training_slices": int(train[0].shape[0]), "registration": registration,
                  "subject_slices": subject_slices,
                  "voxel_size_mm": voxel,
                  "b_value": round(float(reference.bvals.max()), 1)}
    return train, val, grid, provenance


def dti_targets(dti, grid=None, voxel=None):
    """Training targets from a checked DTI of b=0 + >= 6 directions at one b: (b=0 (x, y, z), tensor
    (x, y, z, 6) [Dxx, Dyy, Dzz, Dxy, Dxz, Dyz; mm^2/s; RAS], brain mask, affine) on the model grid
    (core.model_grid.ModelGrid; grid and voxel None: the native grid). The tensor is the exactly
    determined (least-squares) fit of the log attenuations; voxels with a non-positive or non-finite
    signal are outside the mask, and zero."""
    from ..fit.tensor_fit import design_matrix

    weighted = ~dti.is_b0
    s0 = dti.mean_b0().astype(np.float64)
    signals = dti.data[..., weighted].astype(np.float64)
    inside = (s0 > 0) & np.isfinite(s0) & ((signals > 0) & np.isfinite(signals)).all(-1)
    design = design_matrix(dti.bvals[weighted], dti.gradients[weighted])[:, :6]
    log_attenuation = np.log(np.where(inside[..., None], signals, 1.0) / np.where(inside, s0, 1.0)[..., None])
    tensor = np.where(inside[..., None], log_attenuation @ np.linalg.pinv(design).T, 0.0)
    stack = np.concatenate([np.where(inside, s0, 0.0)[..., None], tensor, inside[..., None].astype(np.float64)], -1)
    model = ModelGrid.for_native(dti.affine, dti.data.shape, grid, voxel)
    if not model.is_native(dti.affine, dti.data.shape):
        stack = resample_rigid(stack.astype(np.float32), dti.affine, model.affine, model.shape, np.eye(4))
    mask = stack[..., 7] > 0.5
    return (np.where(mask, stack[..., 0], 0.0), np.where(mask[..., None], stack[..., 1:7], 0.0), mask,
            model.affine)


def load_dti_targets(pairs, depth, grid=None, reporter=NullReporter(), voxel=None):
    """dti_targets of each pair's 6-direction DTI on one model grid: ([(subject, b-value, b=0, tensor,
    mask, affine)], grid (H, W), voxel size (mm)). The grid's voxel size is `voxel` (mm; fine-tuning:
    the parent package's, the scale its network learned) or the first pair's; its matrix `grid`, or
    default_grid of the first pair's for networks of `depth` down-samplings (training_grid)."""
    first = axial_slices(load_dwi(pairs[0].dti6))
    grid = training_grid(first.data.shape, depth, grid)
    voxel = [float(v) for v in (voxel or np.linalg.norm(first.affine[:3, :3], axis=0))]
    subjects = []
    for i, pair in enumerate(pairs):
        reporter.progress("data", i / len(pairs), f"{pair.subject}: tensors on the model grid")
        dti = axial_slices(load_dwi(pair.dti6))
        subjects.append((pair.subject, round(float(dti.bvals.max()), 1), *dti_targets(dti, grid, voxel)))
    reporter.progress("data", 1.0, f"{len(pairs)} subjects")
    return subjects, grid, voxel
