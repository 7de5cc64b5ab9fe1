"""The `dtisynth fit` job: load a DWI, mask, fit tensors, compute maps, write them atomically."""

import json
from pathlib import Path

import numpy as np

from . import __version__
from .atomic import atomic_output_dir, write_text_atomic
from .brain_mask import brain_mask
from .dwi import select_shell
from .dwi_files import load_dwi, load_mask, save_tensor, save_volume
from .progress import ProgressReporter
from .tensor_fit import fit_tensors
from .tensor_maps import MAP_NAMES, compute_maps

DEFAULT_MAPS = MAP_NAMES
MAP_FILE_NAMES = {"fa": "fa", "md": "md", "ad": "ad", "rd": "rd", "color": "color_fa", "v1": "v1",
                  "evals": "eigenvalues", "s0": "s0"}
MAP_DESCRIPTIONS = {
    "tensor": "diffusion tensor, 6 volumes Dxx, Dyy, Dzz, Dxy, Dxz, Dyz (MRtrix3 order), mm^2/s, RAS world frame",
    "fa": "fractional anisotropy (unitless)", "md": "mean diffusivity, mm^2/s", "ad": "axial diffusivity lambda1, mm^2/s",
    "rd": "radial diffusivity (lambda2 + lambda3) / 2, mm^2/s",
    "color": "colour FA |V1| x FA, RGB = right-left, anterior-posterior, superior-inferior",
    "v1": "principal eigenvector, unit, RAS world frame (NRRD: LPS), sign arbitrary",
    "evals": "eigenvalues lambda1 >= lambda2 >= lambda3, mm^2/s", "s0": "fitted b=0 signal", "mask": "voxels fitted",
}


def extension(fmt):
    return {"nifti": ".nii.gz", "nrrd": ".nrrd"}[fmt]


def parse_maps(text):
    names = [n.strip().lower() for n in text.split(",") if n.strip()] if isinstance(text, str) else list(text)
    unknown = sorted(set(names) - set(MAP_NAMES))
    if unknown:
        raise ValueError(f"unknown map(s) {unknown}; choose from {','.join(MAP_NAMES)}")
    return names


def write_fit_outputs(out_dir, fit, maps, affine, fmt, provenance):
    """Write tensor, mask, maps and fit.json (what each file holds) into `out_dir` atomically."""
    ext = extension(fmt)
    files = {}
    with atomic_output_dir(out_dir) as staging:
        for path in save_tensor(staging / f"tensor{ext}", fit.tensor, affine):
            files[path.name] = MAP_DESCRIPTIONS["tensor"]
        for path in save_volume(staging / f"mask{ext}", fit.mask.astype(np.uint8), affine):
            files[path.name] = MAP_DESCRIPTIONS["mask"]
        for name, volume in maps.items():
            for path in save_volume(staging / f"{MAP_FILE_NAMES[name]}{ext}", volume, affine, rgb=(name == "color")):
                files[path.name] = MAP_DESCRIPTIONS[name]
        write_text_atomic(staging / "fit.json", json.dumps(dict(provenance, files=files), indent=2))
    return [Path(out_dir) / name for name in [*files, "fit.json"]]


def run_fit(dwi_path, out_dir, bval=None, bvec=None, mask_path=None, method="iwls", maps=DEFAULT_MAPS,
            fmt="nifti", eigen_policy="keep", shell=None, reporter=None):
    """Fit tensors to a DWI file and write maps; returns the list of written paths."""
    reporter = reporter or ProgressReporter(enabled=False)
    maps = parse_maps(maps)
    reporter.progress("load", 0.0, f"reading {dwi_path}")
    dwi = select_shell(load_dwi(dwi_path, bval, bvec), shell)
    reporter.progress("load", 1.0, f"{dwi.data.shape[3]} volumes, b = {sorted(set(np.round(dwi.bvals).tolist()))}")
    if mask_path:
        mask = load_mask(mask_path, dwi)
    else:
        reporter.progress("mask", 0.0, "brain mask from the mean b=0")
        mask = brain_mask(dwi.mean_b0())
    reporter.progress("mask", 1.0, f"{int(mask.sum())} voxels")
    fit = fit_tensors(dwi, mask, method, progress=lambda f: reporter.progress("fit", f, method))
    reporter.progress("maps", 0.0, ",".join(maps))
    volumes = compute_maps(fit.tensor, fit.mask, maps, eigen_policy)
    if "s0" in maps:
        volumes["s0"] = fit.s0
    reporter.progress("maps", 1.0)
    reporter.progress("write", 0.0, str(out_dir))
    provenance = {"dtisynth_version": __version__, "input": str(dwi_path), "method": method,
                  "eigenvalue_policy": eigen_policy, "b_values": sorted(set(np.round(dwi.bvals).tolist())),
                  "mask": str(mask_path) if mask_path else "brain_mask(mean b=0)",
                  "gradient_frame": "RAS world (scanner) frame; FSL bvecs converted with the FSL x-flip rule"}
    paths = write_fit_outputs(out_dir, fit, volumes, dwi.affine, fmt, provenance)
    reporter.progress("write", 1.0, f"{len(paths)} files")
    return paths
