"""Errors raised on bad user input.

Every message names the file, what was expected and what was found, so a user can fix the input
without reading the code.
"""

import errno
import os
import stat


class InputError(ValueError):
    """Bad user input: the file, the expectation and what was found are in the message."""

    def __init__(self, path, expected, found):
        self.path = str(path)
        self.expected = expected
        self.found = found
        super().__init__(f"{self.path}: expected {expected}; found {found}")


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(path, mode):
    """What a path that is not a regular file is, in words (mode: its own, lstat's)."""
    if stat.S_ISLNK(mode):
        target = os.readlink(path)
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return f"a symbolic link loop (to {target})"
            if exc.errno == errno.ENOENT:
                return f"a symbolic link to {target}, which does not exist"
        return f"a symbolic link to {target}"
    return next((kind for test, kind in _KINDS if test(mode)), "a special file")


def refuse_special_file(path):
    """InputError for a path that exists but is neither a regular file nor a folder (a FIFO, a device, a
    socket): opening one would block for ever or read without end. Checked before anything opens it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing: the reader's own "no such file" says so
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InputError(path, "a regular file", _kind(path, mode))


def refuse_unless_regular_file(path):
    """InputError unless `path` itself is a regular file: a symbolic link (to /dev/zero, to a folder, in a
    loop; even to a regular file), a folder, FIFO, device or socket is refused without being followed or
    opened. For the files of untrusted input that must lie in its own folder (a model package's): a link
    would make a reader read, hash or copy whatever it points to. Missing: returns (the reader says so)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        raise InputError(path, "a regular file", _kind(path, mode))
