"""Simulated subjects and cohorts: paired 3-direction DWI and 6-direction DTI with ground truth.

Frames: the scanner world frame is RAS (mm). A subject's head sits in it with a pose (rotation about
the R, A, S axes, then translation) and is a smooth non-linear deformation of the MNI phantom
(brain_phantom.py): world -> head (inverse pose) -> MNI (head + displacement). The 3-direction DWI is
acquired "separately": the head has moved by a small rigid `misregistration` (world frame, recorded)
and the noise is independent. Gradients are the scanner's axes (DWI) and Siemens' 6 directions
(DTI), both at b=1000 s/mm^2, stored as RAS vectors and written with FSL's bvec convention.
Tissue properties are tied to anatomy (the MNI lattice), so both acquisitions see the same tissue.
The same seed gives the same bytes.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..core.atomic import atomic_output_dir, write_text_atomic
from ..core.dwi import DWI
from ..core.errors import InputError
from ..core.frames import rotation_matrix
from ..core.gradient_schemes import dti_6, dwi_3
from ..core.output_layout import DTI6, DWI3, acquisition_name
from ..core.progress import NullReporter
from ..fit.tensor_fit import chunk_threads, fit_signals, in_chunks
from ..io.files import save_dwi, save_tensor, save_volume
from .brain_phantom import (
    MAX_FIBRES,
    NUCLEUS_DIFFUSIVITY,
    fibre_compartments,
    label_table_tsv,
    roi_labels,
    sample_tissue,
    tissue_atlas,
)
from .signals import (
    SCHEMES,
    add_rician_noise,
    build_voxel_tissue,
    eigenvalues_for,
    random_choices,
    random_wm_signals,
    reference_pools,
    simulate_signals,
)

PAPER_GRID = (128, 128, 76)
PAPER_VOXEL = (1.72, 1.72, 2.0)  # mm: the seed paper's DTI (220 mm field of view, 76 x 2 mm slices)
FIELD_OF_VIEW = tuple(n * v for n, v in zip(PAPER_GRID, PAPER_VOXEL))
FOV_CENTRE_MNI = (0.0, -17.0, 4.0)  # mm: the brain's centre, so that 152 mm of slices cover it
S0_WM = 300.0  # b=0 signal of white matter: b=1000 DWI stays mostly below 255, as in the seed paper
NUCLEI = tuple(NUCLEUS_DIFFUSIVITY)
SIMULATION_CHUNK = 32768  # grid voxels per chunk: about 40 MB of float64 temporaries each


def scanner_affine(grid=PAPER_GRID):
    """Axial voxel -> RAS affine covering the paper's field of view with `grid` voxels."""
    voxel = np.asarray(FIELD_OF_VIEW) / np.asarray(grid)
    affine = np.diag(np.r_[voxel, 1.0])
    affine[:3, 3] = np.asarray(FOV_CENTRE_MNI) - voxel * (np.asarray(grid) - 1) / 2.0
    return affine


def rigid_matrix(rotation_degrees, translation_mm):
    """4x4 rigid transform: rotate about R, A, S (degrees, x then y then z), then translate (mm)."""
    matrix = np.eye(4)
    matrix[:3, :3] = rotation_matrix(rotation_degrees)
    matrix[:3, 3] = translation_mm
    return matrix


@dataclass
class SubjectParameters:
    """Everything random about one subject, drawn from its seed."""

    subject_id: str
    seed: int
    head_rotation_degrees: tuple
    head_translation_mm: tuple
    misregistration_rotation_degrees: tuple
    misregistration_translation_mm: tuple
    diffusivity_scale: float
    snr: float
    deformation_mm: float

    @property
    def head_pose(self):
        """Head -> world (4x4) during the DTI."""
        return rigid_matrix(self.head_rotation_degrees, self.head_translation_mm)

    @property
    def misregistration(self):
        """World -> world (4x4): where a head point of the DTI is during the DWI."""
        return rigid_matrix(self.misregistration_rotation_degrees, self.misregistration_translation_mm)


def draw_subject(subject_id, seed, snr=30.0, vary=True):
    """Draw a subject's pose, misregistration, diffusivity scale and SNR (all zero / 1 with vary=False)."""
    rng = np.random.default_rng([seed, 1])
    if not vary:
        return SubjectParameters(subject_id, seed, (0.0,) * 3, (0.0,) * 3, (0.0,) * 3, (0.0,) * 3, 1.0, snr, 0.0)
    r = lambda scale: tuple(float(v) for v in np.round(rng.uniform(-scale, scale, 3), 3))  # noqa: E731
    return SubjectParameters(subject_id, seed, r(4.0), r(4.0), r(1.5), r(1.5),
                             float(np.round(rng.normal(1.0, 0.04), 4)),
                             float(np.round(snr * rng.uniform(0.9, 1.1), 3)), 2.5)


def _deformation_field(seed, amplitude_mm):
    """Smooth displacement (3 fields on a coarse 8-point lattice over the MNI box) -> callable."""
    if amplitude_mm == 0:
        return lambda points: points
    maps, affine = tissue_atlas()
    rng = np.random.default_rng([seed, 2])
    control = rng.normal(0.0, amplitude_mm, size=(3, 8, 8, 8))
    box = np.asarray(maps.shape[:3]) - 1

    def deform(points):
        from scipy import ndimage  # here: service.requests imports this module for PAPER_GRID

        ijk = np.linalg.solve(affine[:3, :3], (points - affine[:3, 3]).T)  # atlas voxel coordinates
        lattice = ijk / box[:, None] * 7.0
        shift = np.stack([ndimage.map_coordinates(control[c], lattice, order=3, mode="nearest") for c in range(3)], 1)
        return points + shift

    return deform


def _lattice_index(points_mni):
    """Index of the 2 mm MNI atlas voxel holding each point: the key of its tissue properties."""
    maps, affine = tissue_atlas()
    shape = maps.shape[:3]
    ijk = np.round(np.linalg.solve(affine[:3, :3], (points_mni - affine[:3, 3]).T)).astype(np.int64)
    ijk = np.clip(ijk, 0, (np.asarray(shape) - 1)[:, None])
    return np.ravel_multi_index(tuple(ijk), shape)


def subject_tissue(params, affine, grid, pose, scheme, pools):
    """Sample the phantom on a grid for a head pose.

    Returns (flat indices of the voxels holding tissue, VoxelTissue of those voxels, ROI labels, T1).
    """
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in grid], indexing="ij"), axis=-1).reshape(-1, 3)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    return tissue_at(params, world, pose, scheme, pools, _deformation_field(params.seed, params.deformation_mm))


def tissue_at(params, world, pose, scheme, pools, deform):
    """The phantom's tissue at scanner points `world` (N, 3; RAS mm) for a head pose (head -> world, 4x4).

    deform: the subject's deformation (_deformation_field). Returns (indices into `world` of the points
    holding tissue, VoxelTissue of those points, their ROI labels, their T1). Every output of a point
    depends on that point alone, so the points may come in any chunks.
    """
    head = (world - pose[:3, 3]) @ pose[:3, :3]  # inverse rigid: R^T (p - t)
    mni = deform(head)
    fractions, t1 = sample_tissue(mni)
    inside = np.flatnonzero(fractions.sum(axis=1) > 0.01)
    fractions, mni, t1 = fractions[inside], mni[inside], t1[inside]
    labels = roi_labels(mni, fractions)
    directions, fibre_fractions, dispersion = fibre_compartments(mni)
    directions = directions @ pose[:3, :3].T  # fibres turn with the head (deformation Jacobian ignored)
    keys = _lattice_index(mni)
    choice = lambda slot: random_choices(params.seed, slot, keys)  # noqa: E731
    eigenvalues = {"wm": np.stack([eigenvalues_for(pools, scheme, "wm", choice(k)) for k in range(MAX_FIBRES)], 1),
                   "gm": eigenvalues_for(pools, scheme, "gm", choice(10)),
                   "deep_gm": eigenvalues_for(pools, scheme, "deep_gm", choice(11)),
                   "csf": eigenvalues_for(pools, scheme, "csf", choice(12))}
    eigenvalues = {t: v * params.diffusivity_scale for t, v in eigenvalues.items()}
    nucleus_scale = np.ones(len(labels))
    for label, factor in NUCLEUS_DIFFUSIVITY.items():
        nucleus_scale[labels == label] = factor
    eigenvalues["deep_gm"] = eigenvalues["deep_gm"] * nucleus_scale[:, None]
    tissue = build_voxel_tissue(fractions, directions, fibre_fractions, np.isin(labels, NUCLEI), eigenvalues, S0_WM,
                                dispersion)
    return inside, tissue, labels, t1


def simulate_acquisition(params, name, scheme="sampled", pools=None, grid=PAPER_GRID, noise=True):
    """One of a subject's acquisitions: "dti" (b=0 + Siemens' 6 directions, head at its pose) or "dwi"
    (b=0 + the scanner's axes, head moved by the misregistration), with independent noise.

    Returns (DWI, truth): truth = {"tensor" (x, y, z, 6) float32, "tissue" (x, y, z, 3), "labels" int16,
    "t1"} on the acquisition's grid (see SimulatedSubject). The phantom is sampled in chunks of voxels
    on chunk_threads() threads; every voxel's tissue and clean signal depend on that voxel alone (noise
    and random-wm attenuations are drawn afterwards, in voxel order), so the bytes do not depend on the
    chunks or threads.
    """
    pools = pools or reference_pools()
    grid = tuple(int(n) for n in grid)
    affine = scanner_affine(grid)
    (bvals, gradients), pose, slot = {"dti": (dti_6(), params.head_pose, 4),
                                      "dwi": (dwi_3(), params.misregistration @ params.head_pose, 5)}[name]
    count = int(np.prod(grid))
    deform = _deformation_field(params.seed, params.deformation_mm)
    has_tissue = np.zeros(count, dtype=bool)
    clean = np.zeros((count, len(bvals)))
    weight = np.zeros((count, 3)) if scheme == "random-wm" else None  # each tissue's share of the b=0 signal
    fractions = np.zeros((count, 3), dtype=np.float32)
    labels = np.zeros(count, dtype=np.int16)
    t1 = np.zeros(count, dtype=np.float32)
    truth_rows = np.zeros((count, 6), dtype=np.float32)  # the apparent tensor of the clean signals

    def simulate_rows(rows):
        world = np.stack(np.unravel_index(rows, grid), axis=1) @ affine[:3, :3].T + affine[:3, 3]
        found, tissue, found_labels, found_t1 = tissue_at(params, world, pose, scheme, pools, deform)
        voxels = rows[found]
        has_tissue[voxels] = True
        fractions[voxels], labels[voxels], t1[voxels] = tissue.fractions, found_labels, found_t1
        if weight is None:
            clean[voxels] = simulate_signals(tissue, bvals, gradients, scheme, None)
            truth_rows[voxels] = fit_signals(clean[voxels], bvals, gradients, "ols")[:, :6]
        else:
            weight[voxels] = tissue.fractions * tissue.tissue_s0

    in_chunks(np.arange(count), simulate_rows, chunk=SIMULATION_CHUNK)
    rng = np.random.default_rng([params.seed, slot])
    if weight is not None:
        inside = np.flatnonzero(has_tissue)
        clean[inside] = random_wm_signals(weight[inside], bvals, rng)
        truth_rows[inside] = fit_signals(clean[inside], bvals, gradients, "ols")[:, :6]
    signal = clean.reshape(grid + (len(bvals),))
    if noise:
        signal = add_rician_noise(signal, S0_WM / params.snr, rng)
    dwi = DWI(signal.astype(np.float32), affine, bvals, gradients, f"<simulated {params.subject_id} {name}>")
    truth = {"tensor": truth_rows.reshape(grid + (6,)), "tissue": fractions.reshape(grid + (3,)),
             "labels": labels.reshape(grid), "t1": t1.reshape(grid)}
    return dwi, truth


@dataclass
class SimulatedSubject:
    """One subject: the two acquisitions and the ground truth on the DTI grid.

    truth_tensor (x, y, z, 6): the apparent tensor of the noise-free DTI (mm^2/s, RAS), which a
    perfect 6-direction acquisition gives; tissue (x, y, z, 3): WM, GM, CSF fractions; labels: ROI
    labels (brain_phantom.ROIS); t1: T1-like image (0-1) for registration.
    """

    parameters: SubjectParameters
    scheme: str
    dwi: DWI
    dti: DWI
    truth_tensor: np.ndarray
    tissue: np.ndarray
    labels: np.ndarray
    t1: np.ndarray
    sigma: float


def simulate_subject(params, scheme="sampled", pools=None, grid=PAPER_GRID, noise=True):
    """Simulate one subject's 3-direction DWI and 6-direction DTI (see the module docstring)."""
    pools = pools or reference_pools()
    # Side by side where two cores are free: one acquisition's noise (one thread) overlaps the other's chunks.
    with ThreadPoolExecutor(min(2, chunk_threads())) as pool:
        (dti, truth), (dwi, _) = pool.map(lambda name: simulate_acquisition(params, name, scheme, pools, grid, noise),
                                          ("dti", "dwi"))
    return SimulatedSubject(params, scheme, dwi, dti, truth["tensor"], truth["tissue"], truth["labels"], truth["t1"],
                            S0_WM / params.snr if noise else 0.0)


def eigenvalue_pools(scheme, sample_from=None, shell=None):
    """Eigenvalue pools for a scheme: from a real scan (`sample_from`) or the embedded reference."""
    if sample_from is None:
        return reference_pools()
    if scheme in ("syn", "random-wm"):
        raise InputError(sample_from, "--sample-from only with the sampled or sample-and-mean schemes",
                         f"scheme {scheme}")
    from ..core.dwi import select_shell
    from ..fit.brain_mask import brain_mask
    from ..fit.tensor_fit import fit_tensors
    from ..fit.tensor_maps import compute_maps
    from ..io.files import load_dwi
    from .signals import pools_from_fit

    dwi = select_shell(load_dwi(sample_from), shell)
    mask = brain_mask(dwi.mean_b0())
    maps = compute_maps(fit_tensors(dwi, mask).tensor, mask, ("evals", "fa", "md"))
    return pools_from_fit(maps["evals"], maps["fa"], maps["md"], mask, str(sample_from))


def _json(data):
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _acquisition_sidecar(subject, name):
    dwi = subject.dwi if name == "dwi3" else subject.dti
    scheme = "b=0 + the scanner's x, y, z axes" if name == "dwi3" else "b=0 + Siemens' 6 directions"
    sidecar = {
        "Description": f"simulated {'conventional 3-direction DWI' if name == 'dwi3' else '6-direction DTI'}",
        "DiffusionScheme": scheme, "BValue": float(dwi.bvals.max()),
        "GradientFrame": "bvec: FSL convention along the image axes; the vectors are the scanner (RAS) axes",
        "SimulationScheme": subject.scheme, "NoiseSigma": subject.sigma, "SNR": subject.parameters.snr,
        "SNRDefinition": "b=0 signal of white matter / sigma of each Gaussian channel (Rician magnitude)",
        "VoxelSizeMM": [float(v) for v in np.linalg.norm(dwi.affine[:3, :3], axis=0)],
        "GeneratedBy": f"DTISynth {__version__}",
    }
    if name == "dwi3":
        sidecar["AcquiredSeparately"] = ("head moved by the subject's misregistration (see the truth JSON) "
                                         "and independent noise, relative to the 6-direction DTI")
    return sidecar


def write_subject(staging, subject):
    """Write one subject under `staging` (the BIDS-like layout of write_cohort)."""
    sid = subject.parameters.subject_id
    dwi_dir = staging / sid / "dwi"
    truth_dir = staging / "derivatives" / "truth" / sid
    dwi_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    for name, dwi in ((DWI3, subject.dwi), (DTI6, subject.dti)):
        save_dwi(dwi_dir / acquisition_name(sid, name), dwi)
        write_text_atomic(dwi_dir / acquisition_name(sid, name, ".json"), _json(_acquisition_sidecar(subject, name)))
    affine = subject.dti.affine
    save_tensor(truth_dir / f"{sid}_space-dti6_tensor.nii.gz", subject.truth_tensor, affine)
    save_volume(truth_dir / f"{sid}_space-dti6_tissue.nii.gz", subject.tissue, affine)
    save_volume(truth_dir / f"{sid}_space-dti6_dseg.nii.gz", subject.labels.astype(np.uint8), affine)
    save_volume(truth_dir / f"{sid}_space-dti6_T1like.nii.gz", subject.t1, affine)
    p = subject.parameters
    truth = dict(asdict(p), scheme=subject.scheme, noise_sigma=subject.sigma,
                 head_pose_matrix=p.head_pose.round(10).tolist(),
                 misregistration_matrix=p.misregistration.round(10).tolist(),
                 misregistration_meaning=("4x4 rigid transform in the scanner RAS frame (mm): a head point at "
                                          "x in the 6-direction DTI is at M x in the 3-direction DWI"),
                 tensor=("apparent tensor of the noise-free 6-direction DTI: Dxx, Dyy, Dzz, Dxy, Dxz, Dyz "
                         "(MRtrix3 order), mm^2/s, RAS"),
                 tissue="volume fractions: WM, GM, CSF", dseg="ROI labels, see ../labels.tsv")
    write_text_atomic(truth_dir / f"{sid}_truth.json", _json(truth))


def write_cohort(out_dir, n, scheme="sampled", seed=0, snr=30.0, grid=PAPER_GRID, sample_from=None,
                 vary=True, reporter=NullReporter(), noise=True):
    """Simulate `n` subjects and write them, all or nothing, in a BIDS-like layout under `out_dir`.
    noise=False: noise-free acquisitions (training targets for the tensor-unet kind).

    Layout: sub-XXX/dwi/sub-XXX_acq-{dwi3,dti6}_dwi.{nii.gz,bval,bvec,json}; derivatives/truth/
    sub-XXX/ (tensor, tissue fractions, ROI labels, T1-like image, truth JSON with the recorded
    misregistration); dataset_description.json, participants.tsv, derivatives/truth/labels.tsv.
    """
    if scheme not in SCHEMES:
        raise InputError("--scheme", f"one of {SCHEMES}", repr(scheme))
    if n < 1:
        raise InputError("--n", "at least 1 subject", repr(n))
    pools = eigenvalue_pools(scheme, sample_from)
    rows = ["participant_id\tseed\tsnr\tdiffusivity_scale\thead_rotation_degrees\thead_translation_mm"
            "\tmisregistration_rotation_degrees\tmisregistration_translation_mm"]
    with atomic_output_dir(out_dir) as staging:
        for i in range(n):
            sid = f"sub-{i + 1:03d}"
            subject_seed = int(np.random.default_rng([seed, i]).integers(0, 2**31 - 1))
            reporter.progress("simulate", i / n, f"{sid} ({scheme})")
            params = draw_subject(sid, subject_seed, snr, vary)
            subject = simulate_subject(params, scheme, pools, grid, noise)
            write_subject(staging, subject)
            rows.append("\t".join([sid, str(subject_seed), f"{params.snr:g}", f"{params.diffusivity_scale:g}"] +
                                  [" ".join(f"{v:g}" for v in values) for values in (
                                      params.head_rotation_degrees, params.head_translation_mm,
                                      params.misregistration_rotation_degrees, params.misregistration_translation_mm)]))
        description = {"Name": "DTISynth simulated cohort", "BIDSVersion": "1.9.0", "DatasetType": "raw",
                       "GeneratedBy": [{"Name": "DTISynth", "Version": __version__}],
                       "DTISynth": {"subjects": n, "scheme": scheme, "seed": seed, "snr": snr if noise else None, "grid": list(grid),
                                    "eigenvalue_source": pools.source, "phantom": "MNI ICBM152 2009a tissue maps"}}
        write_text_atomic(staging / "dataset_description.json", _json(description))
        write_text_atomic(staging / "participants.tsv", "\n".join(rows) + "\n")
        write_text_atomic(staging / "derivatives" / "truth" / "labels.tsv", label_table_tsv())
        write_text_atomic(staging / "derivatives" / "truth" / "dataset_description.json",
                          _json({"Name": "DTISynth ground truth", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
                                 "GeneratedBy": [{"Name": "DTISynth", "Version": __version__}]}))
        written = sorted(p.relative_to(staging) for p in staging.rglob("*") if p.is_file())
    reporter.progress("simulate", 1.0, f"{n} subjects")
    return [Path(out_dir) / p for p in written]
