"""Atomic outputs: a run either leaves all its files in place or none of them.

Files are written into a hidden staging folder beside the destination, then moved into place with
os.replace (atomic within one file system) only when every file was written. A failure leaves the
destination as it was before the run.
"""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_output_dir(out_dir):
    """Yield a staging folder; on success move its files into `out_dir`, on error discard them."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".dtisynth-staging-", dir=out_dir))
    try:
        yield staging
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                target = out_dir / path.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def set_default_permissions(path):
    """Give a file made through a private temporary file the permissions a plain open() would."""
    os.chmod(path, 0o666 & ~_umask())


def write_text_atomic(path, text):
    """Write `text` to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        set_default_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
