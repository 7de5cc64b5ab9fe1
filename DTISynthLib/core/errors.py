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
