"""Synthesis: a conventional 3-direction DWI -> a synthetic 6-direction DTI (b=0 + 6 directions).

Pipeline (the seed paper's, with its weak points addressed):
1. Check the input: b=0 plus three well-conditioned diffusion-weighted volumes, matched to the
   scanner's x, y, z axes (in any order; each angle reported, a warning above 10 degrees; kinds that
   learned x, y, z images refuse above 30), at the models' b-value (refused unless forced).
2. Register the DWI rigidly (6 degrees of freedom, Mattes mutual information) to the reference b=0
   (`--b0`, default the DWI's own b=0, which needs no registration); refuse a registration whose
   quality figure (correlation of the registered b=0 images) is below REGISTRATION_MIN_CORRELATION,
   or images that do not overlap.
3. Resample onto the model grid: the reference's axial slices (its voxel axes reordered when it was
   sliced in another plane, and back at the end: lossless), in-plane voxel size and matrix from the
   model manifest, centred on the native grid (skipped when they already agree).
4. The package's generator kind (generators.registry) turns the model-grid signals into the DTI's
   directions, its networks run slice-wise in batches in eval mode (dropout off, batch norm with its
   running statistics): the same input and models give identical output on the same machine.
5. Resample back to the native grid; by default keep what the DWI measured (assembly.py: the
   tensor's diagonal, so MD, from the x, y, z volumes; only the rest from the generators); assemble
   b=0 (the reference) + the directions with the manifest's gradient table (writing.py then writes
   NIfTI + bval / bvec, Slicer NRRD DWI, tensors and maps).
Frames: all gradient vectors are RAS world vectors (as everywhere in memory).
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from ..core.dwi import DWI
from ..core.errors import InputError
from ..core.gradient_schemes import AXES_3_RAS, check_three_directions, nearest_volumes, triple_angles
from ..core.model_grid import (
    ModelGrid,
    axial_axis_order,
    axial_slices,
    reorder_axes,
    slice_plane,
)
from ..core.progress import NullReporter
from ..fit.brain_mask import brain_mask
from ..generators.intensity import brain_floor
from ..generators.registry import GridSignals, describe_kind_maps, kind_of
from ..realism.input_check import dwi_input_features, input_features
from ..registration.rigid import register_rigid, resample_rigid
from .assembly import ASSEMBLIES, physics_consistent
from .input_check import input_check_report

ANGLE_WARNING_DEGREES = 10.0
ANGLE_LIMIT_DEGREES = 30.0
B_TOLERANCE = 0.05  # relative
REGISTRATION_MIN_CORRELATION = 0.6
# Below this a warning says the --b0 may be another subject's. Measured (register_rigid, b=0 to b=0):
# phantom DWI to its own subject's DTI 0.988-0.996, to another subject's 0.857-0.873; real scans of
# one subject with opposite phase encoding 0.756-0.766, of different subjects and scanners 0.22-0.76.
# So on real data no figure separates the two: a warning with the figure, not a refusal.
REGISTRATION_SAME_SUBJECT_CORRELATION = 0.93
MIN_OVERLAP = 0.5  # fraction of the DWI's field of view inside the reference's


def assign_axes(dwi, any_frame=True):
    """Indices (3,) of the DWI's weighted volumes matched one-to-one to x, y, z (the least total angle,
    core.gradient_schemes.nearest_volumes, as `dtisynth pairs` matches them) and their angles (degrees)
    to the axes.

    Refuses fewer than three weighted volumes and three directions that are not well conditioned
    (core.gradient_schemes.check_three_directions: nearly coplanar). Kinds that work in the measured
    directions' own frame (any_frame: the tensor kind, the diagonal baseline; the physics assembly keeps
    g_i^T D g_i = ADC_i for any three directions) take them at any angle to the axes; the others (the
    per-direction pix2pix networks learned x, y, z images) refuse a direction farther than
    ANGLE_LIMIT_DEGREES from its axis.
    """
    weighted = int((~dwi.is_b0).sum())
    if weighted < 3:
        raise InputError(dwi.source, "three diffusion-weighted volumes (x, y, z)", f"{weighted}")
    order, angles = nearest_volumes(dwi, AXES_3_RAS)
    check_three_directions(dwi.source, dwi.gradients[order])
    worst = int(np.argmax(angles))
    if not any_frame and angles[worst] > ANGLE_LIMIT_DEGREES:
        raise InputError(dwi.source, f"a direction within {ANGLE_LIMIT_DEGREES:g} degrees of the scanner's "
                         f"{'xyz'[worst]} axis (these models learned x, y, z images)",
                         f"the nearest at {angles[worst]:.1f} degrees ({dwi.gradients[order[worst]].round(3).tolist()})")
    return [int(i) for i in order], [float(a) for a in angles]


def check_directions_accepted(source, gradients, affine, manifest):
    """{"non_orthogonality_degrees", "tilt_degrees"} of the measured triple (core.gradient_schemes.triple_angles:
    gradients (3, 3) RAS rows as the generators see them, on the reference grid `affine`); an InputError
    naming the angle and the limit where the package's manifest `accepted_directions` (limits measured with
    benchmarks/bench_directions.py: beyond them the synthetic maps miss the package's targets) is exceeded.
    Packages without it take any well-conditioned triple."""
    non_orthogonality, tilt = triple_angles(gradients, affine)
    angles = {"non_orthogonality_degrees": round(non_orthogonality, 2), "tilt_degrees": round(tilt, 2)}
    limits = manifest.data.get("accepted_directions") or {}
    vectors = np.round(np.asarray(gradients, dtype=float), 3).tolist()
    for key, value, what in (("max_non_orthogonality_degrees", non_orthogonality,
                              "measured directions within {limit:g} degrees of orthogonal to each other"),
                             ("max_tilt_degrees", tilt, "measured directions within {limit:g} degrees of the image axes")):
        limit = limits.get(key)
        if limit is not None and round(value, 1) > limit:  # as reported: a triple at the limit is taken
            raise InputError(source, what.format(limit=limit) + f" (beyond it these models' maps miss their quality "
                             f"targets: {limits.get('measured', 'benchmarks/bench_directions.py')})",
                             f"{value:.1f} degrees ({key[4:].replace('_', ' ')}; vectors {vectors})")
    return angles


def signals_at_b(weighted, b0, bvals, b):
    """Diffusion-weighted signals (..., n) at b-values `bvals` (n,) converted to b-value `b` (s/mm^2),
    voxel by voxel: S0 (S / S0)^(b / b_volume), exact for mono-exponential decay along each direction;
    zero where S0 is not positive."""
    s0 = np.asarray(b0, dtype=np.float64)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        attenuation = np.where(s0 > 0, weighted / s0, 0.0)
    return (s0 * np.clip(attenuation, 0.0, None) ** (b / np.asarray(bvals, dtype=np.float64))).astype(np.float32)


def _overlap_fraction(moving_affine, moving_shape, fixed_affine, fixed_shape):
    """Fraction of the moving image's voxel centres (sampled) that fall inside the fixed grid."""
    grid = np.stack(np.meshgrid(*[np.linspace(0, n - 1, 9) for n in moving_shape[:3]], indexing="ij"), -1).reshape(-1, 3)
    world = grid @ moving_affine[:3, :3].T + moving_affine[:3, 3]
    ijk = np.linalg.solve(fixed_affine[:3, :3], (world - fixed_affine[:3, 3]).T).T
    inside = np.all((ijk >= -0.5) & (ijk <= np.asarray(fixed_shape[:3]) - 0.5), axis=1)
    return float(inside.mean())


@dataclass
class SynthesisResult:
    """The synthetic DTI (b=0 + six directions, RAS gradients), the report, the brain mask of its
    b=0 (None: write_synthesis computes it) and the kind's own maps on the DTI's grid ({name: (x, y, z)},
    e.g. tensor-unet's "v1_confidence"; generators.registry.KIND_MAPS describes them)."""

    dti: DWI
    report: dict
    mask: np.ndarray = None
    maps: dict = field(default_factory=dict)


def synthesize_dwi(dwi, generators, manifest, b0=None, force_b=False, reporter=NullReporter(), assembly=None,
                   output_b=None, input_check=None):
    """Synthesize a 6-direction DTI from a checked DWI (see the module docstring).

    generators: an object with predict(key, inputs (N, C, H, W), slice_indices) -> outputs in network
    units (generators.runner.TorchGenerators, or a stand-in in tests), for the kind of `manifest`.
    b0: optional (volume, affine, source). assembly: "physics" (assembly.physics_consistent, the measured
    diagonal kept) or "network" (the generators' outputs as they are: the seed paper's way for pix2pix);
    None: the manifest's "assembly", else "physics".

    b-values: a package whose manifest has `b_range` [low, high] (kinds whose inputs are ADCs) takes any
    input b in that range; others take their `b_value` (5 %). Outside, the input is refused unless
    `force_b` (then its attenuations are converted to the package's b). output_b: the synthetic DTI's
    b (s/mm^2); default the input's for a b_range package, the package's b_value otherwise. The
    directions are converted to it per voxel, S0 (S / S0)^(output_b / b), exact for the
    physics-assembled (tensor-consistent) DTI. input_check: the package's out-of-distribution check
    (synthesis.input_check.package_input_check), applied to the DWI as the generators see it; report
    "input_check" and a warning when the DWI is unlike the models' training inputs.
    """
    reference_affine = dwi.affine if b0 is None else b0[1]  # the reference sets the output grid
    order = axial_axis_order(reference_affine)
    if order != (0, 1, 2):
        reporter.progress("load", 1.0, f"{slice_plane(reference_affine)} slices: synthesized through the axial ones "
                                       f"(voxel axes reordered {order}, and back)")
        if b0 is None:
            dwi = axial_slices(dwi)
        else:
            b0 = (*reorder_axes(b0[0], b0[1], order), b0[2])
    result = _synthesize_axial(dwi, generators, manifest, b0, force_b, reporter, assembly, output_b, input_check)
    if order != (0, 1, 2):
        back = tuple(int(axis) for axis in np.argsort(order))
        data = reorder_axes(result.dti.data, result.dti.affine, back)[0]
        result.dti = replace(result.dti, data=data, affine=np.array(reference_affine, dtype=float))
        if result.mask is not None:
            result.mask = reorder_axes(result.mask, result.dti.affine, back)[0]
        result.maps = {name: reorder_axes(volume, result.dti.affine, back)[0] for name, volume in result.maps.items()}
    result.report["slices"] = {"native_plane": slice_plane(reference_affine), "synthesized_as": "axial",
                               "axis_order": list(order)}
    return result


def _synthesize_axial(dwi, generators, manifest, b0, force_b, reporter, assembly, output_b, input_check):
    """synthesize_dwi for a reference (b0, else the DWI) in axial slices."""
    assembly = assembly or manifest.assembly or "physics"
    if assembly not in ASSEMBLIES:
        raise InputError("--assembly", f"one of {ASSEMBLIES}", repr(assembly))
    kind = kind_of(manifest)
    progress = reporter.progress
    order, angles = assign_axes(dwi, kind.any_frame)
    b0_volumes = [int(i) for i in np.flatnonzero(dwi.is_b0)]
    ignored = [i for i in range(dwi.data.shape[3]) if i not in order and i not in b0_volumes]
    report = {"input": dwi.source, "axis_volumes": order, "axis_angle_degrees": [round(a, 2) for a in angles],
              "b0_volumes": b0_volumes, "ignored_volumes": ignored,
              "warnings": [f"{'xyz'[i]} direction {a:.1f} degrees from the scanner axis"
                           for i, a in enumerate(angles) if a > ANGLE_WARNING_DEGREES]}
    if ignored:  # a DTI or HARDI scan given as the input: say what was not used
        report["warnings"].append(
            f"used volumes {order} (nearest x, y, z; counted from 0) and the b=0 volume(s) {b0_volumes} of "
            f"{dwi.data.shape[3]}; "
            f"{len(ignored)} diffusion-weighted volume(s) ignored: {ignored}")
    b_model, b_input = manifest.b_value, float(np.mean(dwi.bvals[order]))
    dwi_b0 = dwi.mean_b0()
    weighted, measured_bvals = dwi.data[..., order], dwi.bvals[order]
    b_range = manifest.b_range  # kinds that take ADCs: any b they were trained on
    accepted = b_range[0] <= b_input <= b_range[1] if b_range is not None else \
        abs(b_input - b_model) <= B_TOLERANCE * b_model
    if not accepted:
        if not force_b:
            expected = f"b within {b_range[0]:g}-{b_range[1]:g} s/mm^2, the models' trained range" if b_range \
                else f"b = {b_model:g} s/mm^2 like the models"
            raise InputError(dwi.source, f"{expected} (or --force-b)", f"b = {b_input:g}")
        report["warnings"].append(f"b-value {b_input:g} differs from the models' {b_model:g} (forced): attenuations "
                                  f"converted to b = {b_model:g}, assuming mono-exponential decay")
        weighted, measured_bvals = signals_at_b(weighted, dwi_b0, measured_bvals, b_model), np.full(3, b_model)
    if b0 is None:
        reference, ref_affine, matrix = dwi_b0, dwi.affine, np.eye(4)
        report["registration"] = {"performed": False, "reason": "the DWI's own b=0 is the reference"}
    else:
        reference, ref_affine, source = b0
        overlap = _overlap_fraction(dwi.affine, dwi.data.shape, ref_affine, reference.shape)
        if overlap < MIN_OVERLAP:
            raise InputError(source, f"a b=0 overlapping the DWI (at least {MIN_OVERLAP:.0%} of its field of view)",
                             f"{overlap:.0%} overlap")
        # The check scores the DWI on its own grid, and the brain mask is the reference's: the registration
        # changes neither, so both run beside it (ITK registers on one thread).
        beside = ThreadPoolExecutor(1)
        if input_check is not None:
            dwi_check = beside.submit(lambda: input_check_report(input_check, dwi_input_features(dwi), dwi.source))
        reference_mask = beside.submit(brain_mask, reference)
        beside.shutdown(wait=False)
        progress("register", 0.0, "rigid, normalised correlation")
        result = register_rigid(reference, ref_affine, dwi_b0, dwi.affine)
        matrix = result.matrix
        report["registration"] = {"performed": True, "matrix_ras": matrix.round(8).tolist(),
                                  "correlation": round(result.correlation, 4), "chosen": result.chosen,
                                  "candidates_correlation": result.candidates}
        if result.correlation < REGISTRATION_MIN_CORRELATION:
            raise InputError(source, f"a b=0 the DWI registers to (correlation >= {REGISTRATION_MIN_CORRELATION})",
                             f"correlation {result.correlation:.2f} after registration")
        if result.correlation < REGISTRATION_SAME_SUBJECT_CORRELATION:
            report["warnings"].append(
                f"--b0 {source}: correlation {result.correlation:.3f} after registration, below "
                f"{REGISTRATION_SAME_SUBJECT_CORRELATION}: it may be another subject's b=0 (phantom: same subject "
                "0.99, another 0.86-0.87) or one with other distortions; check it is this subject's")
        progress("register", 1.0, f"correlation {result.correlation:.3f}")
    # the triple as the generators will see it: turned by the registration, on the reference grid
    report["directions"] = check_directions_accepted(dwi.source, dwi.gradients[order] @ matrix[:3, :3], ref_affine,
                                                     manifest)
    grid = ModelGrid.for_native(ref_affine, reference.shape, manifest.grid, manifest.voxel_size_mm)
    reference_is_model_grid = grid.is_native(ref_affine, reference.shape)
    progress("resample", 0.0, "native grid is the model grid" if reference_is_model_grid else "onto the model grid")
    stack = np.concatenate([dwi_b0[..., None], weighted], axis=-1)
    if reference_is_model_grid and b0 is None:
        moved = stack  # the DWI is its own reference and already on the model grid
    else:
        moved = resample_rigid(stack, dwi.affine, grid.affine, grid.shape, matrix)
    ref_on_grid = reference if reference_is_model_grid else \
        resample_rigid(reference, ref_affine, grid.affine, grid.shape, np.eye(4))
    # The brain mask depends on the reference b=0 alone: without --b0 computed here, it fills the wait for
    # the models still loading on their background thread.
    mask = brain_mask(reference) if b0 is None else reference_mask.result()
    if input_check is None:
        report["input_check"] = "none in this model package"
    else:
        # the DWI as the generators see it; when it is its own reference, it is in axial slices already
        report["input_check"], warning = dwi_check.result() if b0 is not None else input_check_report(
            input_check, input_features(dwi_b0, dwi.data[..., order], dwi.bvals[order], mask), dwi.source)
        report["warnings"] += [warning] if warning else []
    # Every slice with brain (the model grid keeps the reference's slices) or with signal (0.5 % of its
    # voxels above the brain floor, so that noise alone does not count) is synthesized; the others are
    # background, not run through the models, left at zero.
    holds_signal = (ref_on_grid > brain_floor(ref_on_grid)).mean(axis=(0, 1)) >= 0.005
    slices = np.flatnonzero(holds_signal | mask.any(axis=(0, 1)))
    report["slices_synthesized"] = int(slices.size)
    progress("resample", 1.0, f"{slices.size} of {grid.shape[2]} slices hold signal")
    # The head turned by the registration's rotation R between the acquisitions: a DWI direction g
    # measured the reference's tissue along R^T g.
    measured_gradients = dwi.gradients[order] @ matrix[:3, :3]
    on_grid = GridSignals(moved, ref_on_grid, slices, float(np.mean(measured_bvals)), measured_gradients,
                          grid.affine)
    synthetic, kind_maps = kind.synthesize(generators.predict, on_grid, manifest, reporter)
    _, directions = manifest.direction_vectors()
    if not reference_is_model_grid:
        synthetic = resample_rigid(synthetic, grid.affine, ref_affine, reference.shape, np.eye(4))
        kind_maps = {name: resample_rigid(volume, grid.affine, ref_affine, reference.shape, np.eye(4))
                     for name, volume in kind_maps.items()}
    if kind_maps:
        report["maps"] = {f"maps/{name}": text for name, text in describe_kind_maps(sorted(kind_maps), manifest).items()}
        if "v1_confidence" in kind_maps:  # what evaluate's calibration compares the observed angles with
            report["v1_confidence_angle_degrees"] = manifest.architecture["v1_confidence"]["angle_degrees"]
    bvals = np.r_[0.0, np.full(len(directions), b_model)]
    gradients = np.vstack([np.zeros(3), directions])
    report["assembly"] = assembly
    if assembly == "physics":
        # the DWI on the reference grid (on the model grid already when the two agree): what it measured
        # there is kept exactly
        if reference_is_model_grid:
            measured = moved
        elif b0 is None:
            measured = stack
        else:
            measured = resample_rigid(stack, dwi.affine, ref_affine, reference.shape, matrix)
        synthesized = np.zeros(reference.shape[2], bool)
        synthesized[slices] = True  # the model grid keeps the reference's slices
        inside = (reference > 0) & (measured[..., 0] > 0) & synthesized[None, None, :]
        synthetic = physics_consistent(synthetic, reference, measured[..., 1:], measured[..., 0], measured_bvals,
                                       measured_gradients, bvals[1:], gradients[1:], inside)
    output_b = float(output_b if output_b is not None else (np.round(b_input, 1) if b_range is not None else b_model))
    if output_b <= 0:
        raise InputError("--output-b", "a positive b-value (s/mm^2)", f"{output_b:g}")
    if output_b != b_model:
        synthetic = signals_at_b(synthetic, reference, bvals[1:], output_b)
        bvals[1:] = output_b
    report["b_value"] = output_b
    data = np.concatenate([reference[..., None].astype(np.float32), np.clip(synthetic, 0, None)], axis=-1)
    return SynthesisResult(DWI(data, ref_affine, bvals, gradients, f"<synthetic DTI from {dwi.source}>"), report, mask,
                           {name: np.where(mask, volume, 0.0).astype(np.float32) for name, volume in kind_maps.items()})
