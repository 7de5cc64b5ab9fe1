"""Where the module's jobs keep their files (the exported patient data and the results, until loaded),
and removing what a crashed Slicer left there. Standard library only: the module calls it at setup,
before DTISynth's packages may be installed."""

import shutil
import time
from pathlib import Path

JOB_PREFIX = "dtisynth-slicer-"  # a job's folder (job_runner.SynthesisJob)
STALE_AFTER = 24 * 3600.0  # seconds: a job folder older than this was left by a Slicer that crashed


def remove_stale_job_folders(root, now=None):
    """Remove the job folders (JOB_PREFIX) in `root` older than STALE_AFTER: a job's folder is removed when
    it ends, is cancelled or fails, so an old one was left by a Slicer that crashed, with a patient's
    exported DWI in it. Returns the folders removed."""
    now = time.time() if now is None else now
    removed = []
    root = Path(root)
    if not root.is_dir():
        return removed
    for folder in root.glob(JOB_PREFIX + "*"):
        if folder.is_dir() and not folder.is_symlink() and now - folder.stat().st_mtime > STALE_AFTER:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
