"""DICOM folders, converted with dcm2niix (Chris Rorden's converter) into NIfTI + FSL bval / bvec."""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..core.errors import InputError
from .nifti import read_nifti_dwi


def read_dicom_dwi(folder, dcm2niix=None):
    """Convert a DICOM folder holding one DWI series and load it (gradients as dcm2niix writes them)."""
    folder = Path(folder)
    # pip installs dcm2niix beside the interpreter, which is not on PATH in an unactivated venv or Slicer.
    exe = dcm2niix or shutil.which("dcm2niix") or shutil.which("dcm2niix", path=str(Path(sys.executable).parent))
    if exe is None:
        raise InputError(folder, "dcm2niix on the PATH to read DICOM (pip install dcm2niix)", "no dcm2niix")
    with tempfile.TemporaryDirectory(prefix="dtisynth-dcm2niix-") as tmp:
        run = subprocess.run([exe, "-z", "n", "-b", "n", "-f", "%s_%d", "-o", tmp, str(folder)],
                             capture_output=True, text=True)
        series = sorted(p for p in Path(tmp).glob("*.nii") if p.with_suffix(".bvec").exists())
        if run.returncode != 0 and not series:
            raise InputError(folder, "a DICOM folder dcm2niix can convert", f"dcm2niix failed: {dcm2niix_reason(run)}")
        if len(series) != 1:
            raise InputError(folder, "exactly one diffusion series (with b-values and vectors)",
                             f"{len(series)} diffusion series: {[p.name for p in series]}")
        dwi = read_nifti_dwi(series[0])
        dwi.data = dwi.data.copy()  # detach from the temporary file before it is deleted
    dwi.source = str(folder)
    return dwi


def dcm2niix_reason(run):
    """What dcm2niix said about a failed conversion: its error and warning lines (it writes some to
    standard output, some to standard error), else its last lines, with the exit code."""
    lines = [line.strip() for line in (run.stderr + "\n" + run.stdout).splitlines() if line.strip()]
    said = [line for line in lines if line.lower().startswith(("error", "warning"))] or lines[-3:]
    return f"{' / '.join(said)[-500:] or 'nothing'} (exit code {run.returncode})"
