"""Writing a synthesis: the synthetic DTI (NIfTI + FSL bval / bvec, Slicer NRRD DWI), its tensors and
maps, and the report, all or nothing (core.output_layout.SynthesisOutput names the files).
"""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..core.atomic import atomic_output_dir, write_text_atomic
from ..core.output_layout import SynthesisOutput
from ..core.progress import NullReporter
from ..fit.brain_mask import brain_mask
from ..fit.tensor_fit import fit_tensors
from ..fit.tensor_maps import compute_maps
from ..io.files import save_dwi, save_tensor, save_volume
from .reliability import reliability_lines, white_matter_confident_share


def write_synthesis(out_dir, result, maps=("fa", "md", "ad", "rd", "color", "v1", "evals", "s0"), reporter=NullReporter()):
    """Write the synthetic DTI (NIfTI + bval / bvec, Slicer NRRD), its tensors and maps, and the report.

    Files are compressed on two threads (ISA-L's gzip releases the GIL), the DTI's while the mask and tensors
    are computed; all land in a staging folder that replaces `out_dir` only when everything is written.
    """
    progress = reporter.progress
    dti = result.dti
    with atomic_output_dir(out_dir) as staging, ThreadPoolExecutor(2) as pool:
        layout = SynthesisOutput(staging)
        writes = [pool.submit(save_dwi, layout.dti_nifti, dti),
                  pool.submit(save_dwi, layout.dti_nrrd, dti, compress_nrrd=False)]
        progress("fit", 0.0, "tensors of the synthetic DTI")
        mask = result.mask if result.mask is not None else brain_mask(dti.data[..., 0])
        fit = fit_tensors(dti, mask, "ols")
        volumes = compute_maps(fit.tensor, fit.mask, [m for m in maps if m != "s0"])
        if "s0" in maps:
            volumes["s0"] = fit.s0
        progress("fit", 1.0)
        layout.maps.folder.mkdir()
        writes.append(pool.submit(save_tensor, layout.maps.tensor, fit.tensor, dti.affine))
        writes.append(pool.submit(save_volume, layout.maps.mask, mask.astype(np.uint8), dti.affine))
        writes += [pool.submit(save_volume, layout.maps.map(name), volume, dti.affine)
                   for name, volume in {**volumes, **result.maps}.items()]
        report = dict(result.report)
        share = white_matter_confident_share(volumes["fa"], result.maps["v1_confidence"], fit.mask) \
            if "v1_confidence" in result.maps and "fa" in volumes else None
        if share is not None:
            report["white_matter_confident_share"] = round(share, 4)
        report["reliability"] = reliability_lines(report, share)
        write_text_atomic(layout.report, json.dumps(report, indent=2, sort_keys=True) + "\n")
        paths = [path for write in writes for path in write.result()] + [layout.report]
        names = [p.relative_to(staging) for p in paths]
    progress("write", 1.0, f"{len(names)} files")
    return [Path(out_dir) / n for n in names]
