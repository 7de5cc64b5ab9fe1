"""The fit job: load a DWI, mask, fit tensors, compute maps, write them atomically (FitOutput)."""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .. import __version__
from ..core.atomic import atomic_output_dir, write_text_atomic
from ..core.dwi import select_shell
from ..core.errors import InputError
from ..core.output_layout import FitOutput
from ..core.progress import NullReporter
from ..fit.tensor_fit import fit_tensors
from ..fit.tensor_maps import MAP_NAMES, compute_maps
from ..io.files import load_dwi, load_mask, save_tensor, save_volume

MAP_DESCRIPTIONS = {
    "tensor": "diffusion tensor, 6 volumes Dxx, Dyy, Dzz, Dxy, Dxz, Dyz (MRtrix3 order), mm^2/s, RAS world frame",
    "fa": "fractional anisotropy (unitless)", "md": "mean diffusivity, mm^2/s", "ad": "axial diffusivity lambda1, mm^2/s",
    "rd": "radial diffusivity (lambda2 + lambda3) / 2, mm^2/s",
    "color": "colour FA |V1| x FA, RGB = right-left, anterior-posterior, superior-inferior",
    "v1": "principal eigenvector, unit, RAS world frame (NRRD: LPS), sign arbitrary",
    "evals": "eigenvalues lambda1 >= lambda2 >= lambda3, mm^2/s", "s0": "fitted b=0 signal", "mask": "voxels fitted",
}


def parse_maps(text):
    names = [n.strip().lower() for n in text.split(",") if n.strip()] if isinstance(text, str) else list(text)
    unknown = sorted(set(names) - set(MAP_NAMES))
    if unknown or not names:
        raise InputError("--maps", f"a comma list from {','.join(MAP_NAMES)}", f"{text!r}")
    return names


def write_fit_outputs(out_dir, fitted, maps, affine, fmt, provenance):
    """Write tensor, mask, maps and fit.json (what each file holds) into `out_dir` atomically; files
    are compressed on two threads (ISA-L's gzip releases the GIL)."""
    files = {}
    with atomic_output_dir(out_dir) as staging, ThreadPoolExecutor(2) as pool:
        layout = FitOutput(staging, fmt)
        writes = [("tensor", pool.submit(save_tensor, layout.tensor, fitted.tensor, affine)),
                  ("mask", pool.submit(save_volume, layout.mask, fitted.mask.astype(np.uint8), affine))]
        writes += [(name, pool.submit(save_volume, layout.map(name), volume, affine, rgb=(name == "color")))
                   for name, volume in maps.items()]
        for name, write in writes:
            for path in write.result():
                files[path.name] = MAP_DESCRIPTIONS[name]
        write_text_atomic(layout.description, json.dumps(dict(provenance, files=files), indent=2))
    return [Path(out_dir) / name for name in [*files, layout.description.name]]


def fit(request, reporter=NullReporter()):
    """Fit tensors to a DWI file and write maps (requests.FitRequest); returns the list of written paths."""
    dwi_path, out_dir, mask_path = request.dwi, request.out, request.mask
    method, eigen_policy = request.method, request.eigenvalues
    maps = parse_maps(request.maps)
    reporter.progress("load", 0.0, f"reading {dwi_path}")
    dwi = select_shell(load_dwi(dwi_path, request.bval, request.bvec), request.shell)
    reporter.progress("load", 1.0, f"{dwi.data.shape[3]} volumes, b = {sorted(set(np.round(dwi.bvals).tolist()))}")
    if mask_path:
        mask = load_mask(mask_path, dwi)
    else:
        # imported here: scipy.ndimage adds 0.3 s to the start of every fit given a mask
        from ..fit.brain_mask import brain_mask

        reporter.progress("mask", 0.0, "brain mask from the mean b=0")
        mask = brain_mask(dwi.mean_b0())
    reporter.progress("mask", 1.0, f"{int(mask.sum())} voxels")
    fitted = fit_tensors(dwi, mask, method, progress=lambda f: reporter.progress("fit", f, method))
    reporter.progress("maps", 0.0, ",".join(maps))
    volumes = compute_maps(fitted.tensor, fitted.mask, maps, eigen_policy)
    if "s0" in maps:
        volumes["s0"] = fitted.s0
    reporter.progress("maps", 1.0)
    reporter.progress("write", 0.0, str(out_dir))
    provenance = {"dtisynth_version": __version__, "input": str(dwi_path), "method": method,
                  "eigenvalue_policy": eigen_policy, "b_values": sorted(set(np.round(dwi.bvals).tolist())),
                  "mask": str(mask_path) if mask_path else "brain_mask(mean b=0)",
                  "gradient_frame": "RAS world (scanner) frame; FSL bvecs converted with the FSL x-flip rule"}
    paths = write_fit_outputs(out_dir, fitted, volumes, dwi.affine, request.format, provenance)
    reporter.progress("write", 1.0, f"{len(paths)} files")
    return paths
