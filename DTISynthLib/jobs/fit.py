"""`dtisynth fit`: load a DWI, mask, fit tensors, compute maps, write them atomically (FitOutput)."""

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
from ..fit.tensor_fit import METHODS, fit_tensors
from ..fit.tensor_maps import EIGEN_POLICIES, MAP_NAMES, compute_maps
from ..io.files import FORMATS, load_dwi, load_mask, save_tensor, save_volume
from .options import add_jsonl_option

NAME = "fit"
HELP = "fit diffusion tensors and write FA / MD / AD / RD / colour maps"
DEFAULT_MAPS = MAP_NAMES
MAP_DESCRIPTIONS = {
    "tensor": "diffusion tensor, 6 volumes Dxx, Dyy, Dzz, Dxy, Dxz, Dyz (MRtrix3 order), mm^2/s, RAS world frame",
    "fa": "fractional anisotropy (unitless)", "md": "mean diffusivity, mm^2/s", "ad": "axial diffusivity lambda1, mm^2/s",
    "rd": "radial diffusivity (lambda2 + lambda3) / 2, mm^2/s",
    "color": "colour FA |V1| x FA, RGB = right-left, anterior-posterior, superior-inferior",
    "v1": "principal eigenvector, unit, RAS world frame (NRRD: LPS), sign arbitrary",
    "evals": "eigenvalues lambda1 >= lambda2 >= lambda3, mm^2/s", "s0": "fitted b=0 signal", "mask": "voxels fitted",
}


def add_arguments(parser):
    parser.add_argument("dwi", help="DWI: .nii/.nii.gz (+ FSL bval/bvec), .nrrd/.nhdr (Slicer DWI) or a DICOM folder")
    parser.add_argument("--bval", help="FSL b-values file (default: beside the NIfTI, same name)")
    parser.add_argument("--bvec", help="FSL b-vectors file (default: beside the NIfTI, same name)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--mask", help="brain mask on the DWI grid (default: computed from the mean b=0)")
    parser.add_argument("--method", choices=METHODS, default="iwls",
                        help="ols, wls (OLS-predicted weights, as dipy) or iwls (MRtrix3's default; default)")
    parser.add_argument("--maps", default=",".join(MAP_NAMES), help=f"comma list from {','.join(MAP_NAMES)} (default: all)")
    parser.add_argument("--format", choices=FORMATS, default="nifti", help="output format (default nifti)")
    parser.add_argument("--eigenvalues", choices=EIGEN_POLICIES, default="keep",
                        help="negative eigenvalues: keep (as MRtrix3; default) or clip to 0 (as dipy)")
    parser.add_argument("--shell", type=float, help="b-value of the shell to fit in multi-shell data (s/mm^2)")
    add_jsonl_option(parser)


def run(args, reporter):
    outputs = run_fit(args.dwi, args.out, args.bval, args.bvec, args.mask, args.method, args.maps, args.format,
                      args.eigenvalues, args.shell, reporter)
    reporter.result(outputs, f"wrote {len(outputs)} files to {args.out}")


def parse_maps(text):
    names = [n.strip().lower() for n in text.split(",") if n.strip()] if isinstance(text, str) else list(text)
    unknown = sorted(set(names) - set(MAP_NAMES))
    if unknown or not names:
        raise InputError("--maps", f"a comma list from {','.join(MAP_NAMES)}", f"{text!r}")
    return names


def write_fit_outputs(out_dir, fit, maps, affine, fmt, provenance):
    """Write tensor, mask, maps and fit.json (what each file holds) into `out_dir` atomically; files
    are compressed on two threads (ISA-L's gzip releases the GIL)."""
    files = {}
    with atomic_output_dir(out_dir) as staging, ThreadPoolExecutor(2) as pool:
        layout = FitOutput(staging, fmt)
        writes = [("tensor", pool.submit(save_tensor, layout.tensor, fit.tensor, affine)),
                  ("mask", pool.submit(save_volume, layout.mask, fit.mask.astype(np.uint8), affine))]
        writes += [(name, pool.submit(save_volume, layout.map(name), volume, affine, rgb=(name == "color")))
                   for name, volume in maps.items()]
        for name, write in writes:
            for path in write.result():
                files[path.name] = MAP_DESCRIPTIONS[name]
        write_text_atomic(layout.description, json.dumps(dict(provenance, files=files), indent=2))
    return [Path(out_dir) / name for name in [*files, layout.description.name]]


def run_fit(dwi_path, out_dir, bval=None, bvec=None, mask_path=None, method="iwls", maps=DEFAULT_MAPS,
            fmt="nifti", eigen_policy="keep", shell=None, reporter=NullReporter()):
    """Fit tensors to a DWI file and write maps; returns the list of written paths."""
    maps = parse_maps(maps)
    reporter.progress("load", 0.0, f"reading {dwi_path}")
    dwi = select_shell(load_dwi(dwi_path, bval, bvec), shell)
    reporter.progress("load", 1.0, f"{dwi.data.shape[3]} volumes, b = {sorted(set(np.round(dwi.bvals).tolist()))}")
    if mask_path:
        mask = load_mask(mask_path, dwi)
    else:
        # imported here: scipy.ndimage adds 0.3 s to the start of every fit given a mask
        from ..fit.brain_mask import brain_mask

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
