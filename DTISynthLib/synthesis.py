"""Synthesis: a conventional 3-direction DWI -> a synthetic 6-direction DTI (b=0 + 6 directions).

Pipeline (the seed paper's, with its weak points addressed):
1. Check the input: b=0 plus three diffusion-weighted volumes near the scanner's x, y, z axes (in any
   order; each angle reported, a warning above 10 degrees, refusal above 30), at the models' b-value
   (refused unless forced).
2. Register the DWI rigidly (6 degrees of freedom, Mattes mutual information) to the reference b=0
   (`--b0`, default the DWI's own b=0, which needs no registration); refuse a registration whose
   quality figure (correlation of the registered b=0 images) is below REGISTRATION_MIN_CORRELATION,
   or images that do not overlap.
3. Resample onto the model grid: the native slices, in-plane voxel size and matrix from the model
   manifest, centred on the native grid (skipped when they already agree).
4. Run the six generators slice-wise in batches, in eval mode (dropout off, batch norm with its running
   statistics): the same input and models give identical output on the same machine.
5. Resample back to the native grid and assemble b=0 (the reference) + six directions with the
   manifest's gradient table; write NIfTI + bval / bvec and Slicer NRRD DWI; fit tensors and maps.
Frames: all gradient vectors are RAS world vectors (as everywhere in memory).
"""

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_output_dir, write_text_atomic
from .brain_mask import brain_mask
from .dwi import DWI
from .dwi_files import load_volume, save_dwi, save_tensor, save_volume
from .errors import InputError
from .fit_job import MAP_FILE_NAMES
from .gradient_schemes import AXES_3_RAS
from .registration import register_rigid, resample_rigid
from .tensor_fit import fit_tensors
from .tensor_maps import compute_maps
from .training_data import Intensity, brain_floor

ANGLE_WARNING_DEGREES = 10.0
ANGLE_LIMIT_DEGREES = 30.0
B_TOLERANCE = 0.05  # relative
REGISTRATION_MIN_CORRELATION = 0.6
MIN_OVERLAP = 0.5  # fraction of the DWI's field of view inside the reference's


def assign_axes(dwi):
    """Indices (3,) of the DWI's weighted volumes along x, y, z and their angles (degrees) to the axes.

    Refuses fewer than three weighted volumes, a volume farther than ANGLE_LIMIT_DEGREES from every
    axis, two volumes on one axis, and coplanar directions.
    """
    weighted = np.flatnonzero(~dwi.is_b0)
    if weighted.size < 3:
        raise InputError(dwi.source, "three diffusion-weighted volumes (x, y, z)", f"{weighted.size}")
    g = dwi.gradients[weighted]
    if abs(np.linalg.det(g[:3] if weighted.size == 3 else np.linalg.svd(g)[2])) < 0.1:
        raise InputError(dwi.source, "three non-coplanar diffusion directions", f"vectors {g.round(3).tolist()}")
    cosines = np.abs(g @ AXES_3_RAS.T)  # (n, 3)
    order, angles = [], []
    for axis in range(3):
        best = int(np.argmax(cosines[:, axis]))
        angle = float(np.degrees(np.arccos(min(1.0, cosines[best, axis]))))
        if angle > ANGLE_LIMIT_DEGREES:
            raise InputError(dwi.source, f"a direction within {ANGLE_LIMIT_DEGREES:g} degrees of the scanner's "
                             f"{'xyz'[axis]} axis", f"the nearest at {angle:.1f} degrees ({g[best].round(3).tolist()})")
        order.append(int(weighted[best]))
        angles.append(angle)
    if len(set(order)) < 3:
        raise InputError(dwi.source, "one volume per axis", f"volumes {order} nearest to x, y, z")
    return order, angles


@dataclass
class ModelGrid:
    """The grid the generators see: native slices, model in-plane matrix and voxel size (RAS affine)."""

    affine: np.ndarray
    shape: tuple

    @staticmethod
    def for_native(native_affine, native_shape, model_grid, model_voxel):
        voxel = np.linalg.norm(native_affine[:3, :3], axis=0)
        if tuple(native_shape[:2]) == tuple(model_grid) and np.allclose(voxel[:2], model_voxel[:2], atol=1e-3):
            return ModelGrid(np.asarray(native_affine, float), tuple(native_shape[:3]))
        directions = native_affine[:3, :3] / voxel
        new_voxel = np.array([model_voxel[0], model_voxel[1], voxel[2]])
        centre = native_affine[:3, :3] @ ((np.asarray(native_shape[:3]) - 1) / 2) + native_affine[:3, 3]
        affine = np.eye(4)
        affine[:3, :3] = directions * new_voxel
        shape = (int(model_grid[0]), int(model_grid[1]), int(native_shape[2]))
        affine[:3, 3] = centre - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2)
        return ModelGrid(affine, shape)

    def is_native(self, native_affine, native_shape):
        return tuple(native_shape[:3]) == self.shape and np.allclose(native_affine, self.affine, atol=1e-6)


PRECISIONS = ("fp32", "bf16", "auto")


def bf16_is_native(device):
    """Whether `device` (a torch.device) computes bfloat16 in hardware (AMX / AVX512-BF16 CPUs, CUDA
    GPUs from Ampere on); elsewhere bf16 is emulated and slower than fp32."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and \
        bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class TorchGenerators:
    """The generators of a verified model package: predict(direction, inputs, slice_indices).

    The manifest is read at once (a bad one fails before any work); torch and the weights load on a
    background thread, overlapping the DWI's loading and registration (which release the GIL), and
    predict() waits for them.

    precision: "fp32" (full precision throughout) or "bf16" (autocast and channels_last; the output
    layer and tanh stay in fp32, so outputs are not quantised to bf16's 8-bit mantissa; differences
    from fp32 are stated in the README), or "auto" (default): bf16 where the hardware computes it
    natively, fp32 elsewhere. Either way eval mode makes outputs deterministic on one machine.
    """

    def __init__(self, models_dir, device="auto", batch_size=16, precision="auto"):
        from .model_package import read_manifest

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.manifest = read_manifest(models_dir)
        self.batch_size = batch_size
        pool = ThreadPoolExecutor(1, thread_name_prefix="dtisynth-load-models")
        self._loading = pool.submit(self._load, models_dir, device, precision)
        pool.shutdown(wait=False)

    @staticmethod
    def _load(models_dir, device, precision):
        import torch

        from .model_package import load_generators

        device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                              ("cpu" if device == "auto" else device))
        generators, _ = load_generators(models_dir, device=device)
        if precision == "auto":
            precision = "bf16" if bf16_is_native(device) else "fp32"
        if precision == "bf16":
            for model in generators.values():
                model.to(memory_format=torch.channels_last)
                head = set(model.last.modules())
                # Autocast would cast these weights to bf16 on every call; stored so, the results are
                # identical and the fp32 copies (half a GB for six paper-size models) are gone.
                for module in model.modules():
                    if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and module not in head:
                        module.to(torch.bfloat16)
                model.last = _Float32(model.last)
        return generators, device, precision

    @property
    def generators(self):
        return self._loading.result()[0]

    @property
    def device(self):
        return self._loading.result()[1]

    @property
    def precision(self):
        """The precision in use ("fp32" or "bf16"; "auto" resolved)."""
        return self._loading.result()[2]

    def predict(self, direction, inputs, slice_indices):
        import torch

        model = self.generators[direction]
        bf16 = self.precision == "bf16"
        outputs = []
        memory_format = torch.channels_last if bf16 else torch.contiguous_format
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            for start in range(0, len(inputs), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(inputs[start:start + self.batch_size])).to(
                    self.device, memory_format=memory_format)
                outputs.append(model(x)[:, 0].float().cpu().numpy())
        return np.concatenate(outputs)


def _Float32(module):
    """Wrap a module so that it runs in fp32 inside an autocast region (its input cast up)."""
    import torch

    class Float32(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.module = module

        def forward(self, x):
            with torch.autocast(x.device.type, enabled=False):
                return self.module(x.float())

    return Float32()


def keep_freed_heap_memory():
    """For a one-job process: make glibc's malloc serve blocks up to 256 MB from the heap and keep
    freed memory instead of returning it. Otherwise each batch's activations are fresh mmap pages,
    faulted in anew: about 20 % of CPU inference time with paper-size models. Returns whether it took
    effect (False outside glibc). Process-wide, so only the command line calls it."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, 256 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))


def _overlap_fraction(moving_affine, moving_shape, fixed_affine, fixed_shape):
    """Fraction of the moving image's voxel centres (sampled) that fall inside the fixed grid."""
    grid = np.stack(np.meshgrid(*[np.linspace(0, n - 1, 9) for n in moving_shape[:3]], indexing="ij"), -1).reshape(-1, 3)
    world = grid @ moving_affine[:3, :3].T + moving_affine[:3, 3]
    ijk = np.linalg.solve(fixed_affine[:3, :3], (world - fixed_affine[:3, 3]).T).T
    inside = np.all((ijk >= -0.5) & (ijk <= np.asarray(fixed_shape[:3]) - 0.5), axis=1)
    return float(inside.mean())


@dataclass
class SynthesisResult:
    """The synthetic DTI (b=0 + six directions, RAS gradients), the report, and the brain mask of its
    b=0 (None: write_synthesis computes it)."""

    dti: DWI
    report: dict
    mask: np.ndarray = None


def synthesize_dwi(dwi, generators, manifest, b0=None, force_b=False, reporter=None):
    """Synthesize a 6-direction DTI from a checked DWI (see the module docstring).

    generators: an object with predict(direction, inputs (N, 3, H, W), slice_indices) -> (N, H, W) in
    network units (TorchGenerators, or a stand-in in tests). b0: optional (volume, affine, source).
    """
    progress = reporter.progress if reporter else (lambda *a, **k: None)
    order, angles = assign_axes(dwi)
    report = {"input": dwi.source, "axis_volumes": order, "axis_angle_degrees": [round(a, 2) for a in angles],
              "warnings": [f"{'xyz'[i]} direction {a:.1f} degrees from the scanner axis"
                           for i, a in enumerate(angles) if a > ANGLE_WARNING_DEGREES]}
    b_model, b_input = float(manifest["b_value"]), float(np.mean(dwi.bvals[order]))
    if abs(b_input - b_model) > B_TOLERANCE * b_model:
        if not force_b:
            raise InputError(dwi.source, f"b = {b_model:g} s/mm^2 like the models (or --force-b)", f"b = {b_input:g}")
        report["warnings"].append(f"b-value {b_input:g} differs from the models' {b_model:g} (forced)")
    dwi_b0 = dwi.mean_b0()
    weighted = dwi.data[..., order]
    if b0 is None:
        reference, ref_affine, matrix = dwi_b0, dwi.affine, np.eye(4)
        report["registration"] = {"performed": False, "reason": "the DWI's own b=0 is the reference"}
    else:
        reference, ref_affine, source = b0
        overlap = _overlap_fraction(dwi.affine, dwi.data.shape, ref_affine, reference.shape)
        if overlap < MIN_OVERLAP:
            raise InputError(source, f"a b=0 overlapping the DWI (at least {MIN_OVERLAP:.0%} of its field of view)",
                             f"{overlap:.0%} overlap")
        progress("register", 0.0, "rigid, Mattes mutual information")
        result = register_rigid(reference, ref_affine, dwi_b0, dwi.affine)
        matrix = result.matrix
        report["registration"] = {"performed": True, "matrix_ras": matrix.round(8).tolist(),
                                  "correlation": round(result.correlation, 4), "mattes_mi": round(result.metric, 4)}
        if result.correlation < REGISTRATION_MIN_CORRELATION:
            raise InputError(source, f"a b=0 the DWI registers to (correlation >= {REGISTRATION_MIN_CORRELATION})",
                             f"correlation {result.correlation:.2f} after registration")
        progress("register", 1.0, f"correlation {result.correlation:.3f}")
    grid = ModelGrid.for_native(ref_affine, reference.shape, manifest["grid"], manifest["voxel_size_mm"])
    reference_is_model_grid = grid.is_native(ref_affine, reference.shape)
    progress("resample", 0.0, "native grid is the model grid" if reference_is_model_grid else "onto the model grid")
    stack = np.concatenate([dwi_b0[..., None], weighted], axis=-1)
    if reference_is_model_grid and b0 is None:
        moved = stack  # the DWI is its own reference and already on the model grid
    else:
        moved = resample_rigid(stack, dwi.affine, grid.affine, grid.shape, matrix)
    ref_on_grid = reference if reference_is_model_grid else \
        resample_rigid(reference, ref_affine, grid.affine, grid.shape, np.eye(4))
    intensity = Intensity(**manifest["intensity"])
    inputs = np.transpose(intensity.to_network(moved[..., 1:], moved[..., :1]), (2, 3, 1, 0))  # (z, 3, y, x)
    # Slices without signal in the reference b=0 (under 0.5 % of their voxels above the brain floor,
    # so that noise alone does not count) are background: not run through the models, left at zero.
    slices = np.flatnonzero((ref_on_grid > brain_floor(ref_on_grid)).mean(axis=(0, 1)) >= 0.005)
    report["slices_synthesized"] = int(slices.size)
    progress("resample", 1.0, f"{slices.size} of {inputs.shape[0]} slices hold signal")
    # The brain mask depends on the reference b=0 alone: computed here, it fills the wait for the
    # models still loading on their background thread.
    mask = brain_mask(reference)
    entries = sorted(manifest["directions"], key=lambda d: d["index"])
    synthetic = np.zeros(grid.shape + (len(entries),), dtype=np.float32)
    for k, entry in enumerate(entries):
        progress("synthesize", k / len(entries), f"direction {entry['index']}")
        units = generators.predict(entry["index"], inputs[slices], slices)  # (n, y, x)
        synthetic[:, :, slices, k] = intensity.from_network(np.transpose(units, (2, 1, 0)), ref_on_grid[:, :, slices])
    progress("synthesize", 1.0, f"{len(entries)} directions")
    if not reference_is_model_grid:
        synthetic = resample_rigid(synthetic, grid.affine, ref_affine, reference.shape, np.eye(4))
    bvals = np.r_[0.0, np.full(len(entries), b_model)]
    gradients = np.vstack([np.zeros(3), [e["gradient_ras"] for e in entries]])
    data = np.concatenate([reference[..., None].astype(np.float32), np.clip(synthetic, 0, None)], axis=-1)
    return SynthesisResult(DWI(data, ref_affine, bvals, gradients, f"<synthetic DTI from {dwi.source}>"), report, mask)


def write_synthesis(out_dir, result, maps=("fa", "md", "ad", "rd", "color", "v1", "evals", "s0"), reporter=None):
    """Write the synthetic DTI (NIfTI + bval / bvec, Slicer NRRD), its tensors and maps, and the report.

    Files are compressed on two threads (zlib releases the GIL), the DTI's while the mask and tensors
    are computed; all land in a staging folder that replaces `out_dir` only when everything is written.
    """
    progress = reporter.progress if reporter else (lambda *a, **k: None)
    dti = result.dti
    with atomic_output_dir(out_dir) as staging, ThreadPoolExecutor(2) as pool:
        writes = [pool.submit(save_dwi, staging / "synthetic_dti.nii.gz", dti),
                  pool.submit(save_dwi, staging / "synthetic_dti.nrrd", dti, compress_nrrd=False)]
        progress("fit", 0.0, "tensors of the synthetic DTI")
        mask = result.mask if result.mask is not None else brain_mask(dti.data[..., 0])
        fit = fit_tensors(dti, mask, "ols")
        volumes = compute_maps(fit.tensor, fit.mask, [m for m in maps if m != "s0"])
        if "s0" in maps:
            volumes["s0"] = fit.s0
        progress("fit", 1.0)
        (staging / "maps").mkdir()
        writes.append(pool.submit(save_tensor, staging / "maps" / "tensor.nii.gz", fit.tensor, dti.affine))
        writes.append(pool.submit(save_volume, staging / "maps" / "mask.nii.gz", mask.astype(np.uint8), dti.affine))
        writes += [pool.submit(save_volume, staging / "maps" / f"{MAP_FILE_NAMES[name]}.nii.gz", volume, dti.affine)
                   for name, volume in volumes.items()]
        write_text_atomic(staging / "synthesis.json", json.dumps(result.report, indent=2, sort_keys=True) + "\n")
        paths = [path for write in writes for path in write.result()]
        names = [p.relative_to(staging) for p in paths] + [Path("synthesis.json")]
    progress("write", 1.0, f"{len(names)} files")
    return [Path(out_dir) / n for n in names]


def load_reference_b0(path):
    """A separate b=0 volume (3D, or the first volume of a 4D file) as (volume, affine, source)."""
    from .dwi_files import file_format
    from .io_nifti import read_nifti

    if file_format(path) == "nifti":
        data, affine = read_nifti(path)
        if data.ndim == 4:
            data = data[..., 0]
    else:
        data, affine = load_volume(path)
    if data.ndim != 3:
        raise InputError(path, "a 3D b=0 volume", f"{data.ndim}D data of shape {data.shape}")
    if not np.isfinite(data).all() or not np.any(data > 0):
        raise InputError(path, "a finite b=0 volume with signal", "NaN, inf or no positive voxel")
    return data.astype(np.float32), affine, str(path)


def run_synthesis(dwi_path, out_dir, b0_path=None, models_dir=None, device="auto", force_b=False, bval=None,
                  bvec=None, reporter=None, precision="auto"):
    """The `dtisynth synthesize` job; returns the written paths and the report."""
    from .dwi_files import load_dwi
    from .model_package import DEFAULT_MODELS

    progress = reporter.progress if reporter else (lambda *a, **k: None)
    progress("load", 0.0, f"reading {dwi_path}")
    dwi = load_dwi(dwi_path, bval, bvec)
    b0 = load_reference_b0(b0_path) if b0_path else None
    # Models load on a background thread while the DWI registers (started only now: a concurrent
    # torch import slows gzip reading threefold through the GIL).
    models_dir = models_dir or DEFAULT_MODELS
    generators = TorchGenerators(models_dir, device, precision=precision)
    progress("load", 1.0, f"input read; models {models_dir} loading in the background")
    result = synthesize_dwi(dwi, generators, generators.manifest, b0, force_b, reporter)
    result.report.update(models=str(models_dir), device=str(generators.device), precision=generators.precision,
                         deterministic="eval mode: dropout off, batch-norm running statistics")
    return write_synthesis(out_dir, result, reporter=reporter), result.report
