"""Atomic outputs: a run either leaves all its files in place or none of them.

Files are written into a hidden staging folder beside the destination, then moved into place with
os.replace (atomic within one file system) only when every file was written. A failure leaves the
destination as it was before the run.
"""

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

from .errors import InputError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _missing_folders(folder):
    """The folders mkdir(parents=True) would create for `folder`, deepest first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists() or path.is_symlink():
            break
        missing.append(path)
    return missing


def make_output_dir(out_dir):
    """Create `out_dir` (and its parents) for writing; return the folders created, deepest first.

    A name that is an existing file, or a place the user may not write in (read-only file system, no
    permission), is an InputError naming the folder and what the system said.
    """
    out_dir = Path(out_dir)
    created = _missing_folders(out_dir)
    nearest = created[-1].parent if created else out_dir  # the deepest path that exists
    if nearest.exists() and not nearest.is_dir():
        raise InputError(out_dir, "an output folder (a new name or an existing folder)",
                         f"{nearest} is an existing file" if nearest != out_dir else "an existing file")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=".dtisynth-write-test-", dir=out_dir)
        os.rmdir(probe)
    except OSError as exc:
        remove_empty_folders(created)
        raise InputError(out_dir, "an output folder you may write in", _os_reason(exc)) from None
    return created


def remove_empty_folders(folders):
    """Remove the folders (deepest first) that are empty: what a failed run created, nothing else."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _os_reason(exc):
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EROFS:
        return f"a read-only file system ({reason})"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to write there ({reason})"
    if exc.errno in DISK_FULL:
        return f"no space left to write the outputs ({reason}); nothing was written"
    return reason


@contextlib.contextmanager
def atomic_output_dir(out_dir):
    """Yield a staging folder; on success move its files into `out_dir`, on error discard them and any
    folder the run created. A full disk while writing is an InputError naming `out_dir`."""
    out_dir = Path(out_dir)
    created = make_output_dir(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".dtisynth-staging-", dir=out_dir))
    done = False
    try:
        try:
            yield staging
            for path in sorted(staging.rglob("*")):
                if path.is_file():
                    target = out_dir / path.relative_to(staging)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, target)
            done = True
        except OSError as exc:
            if exc.errno not in DISK_FULL:
                raise
            raise InputError(out_dir, "space on its file system for the outputs", _os_reason(exc)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not done:
            remove_empty_folders(created)


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


def write_output_file(path, text):
    """Write one output file the user named: its folder is made as make_output_dir does, the file
    written atomically; a name that is a folder, or a full disk, is an InputError naming `path`."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "an output file name", "an existing folder")
    created = make_output_dir(path.parent)
    try:
        write_text_atomic(path, text)
    except OSError as exc:
        remove_empty_folders(created)
        raise InputError(path, "an output file it can write", _os_reason(exc)) from None
