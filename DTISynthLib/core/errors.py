"""Errors raised on bad user input.

Every message names the file, what was expected and what was found, so a user can fix the input
without reading the code.
"""


class InputError(ValueError):
    """Bad user input: the file, the expectation and what was found are in the message."""

    def __init__(self, path, expected, found):
        self.path = str(path)
        self.expected = expected
        self.found = found
        super().__init__(f"{self.path}: expected {expected}; found {found}")


def refuse_special_file(path):
    """InputError for a path that exists but is neither a regular file nor a folder (a FIFO, a device, a
    socket): opening one would block for ever or read without end. Checked before anything opens it."""
    import os
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing: the reader's own "no such file" says so
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kinds = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    raise InputError(path, "a regular file", next((kind for test, kind in kinds if test(mode)), "a special file"))
