"""Option types and options shared by the jobs' parsers. A value a type refuses is a usage error
naming the option, what it expects and what was given (exit code 2; an error event under --jsonl)."""

import argparse
import math


def _number(text, convert, expected, accept):
    try:
        value = convert(text)
    except (TypeError, ValueError):
        value = None
    if value is None or not math.isfinite(value) or not accept(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, not {text!r}")
    return value


def positive_float(text):
    """A finite number > 0 (SNR, b-value in s/mm^2, learning rate)."""
    return _number(text, float, "a finite number > 0", lambda v: v > 0)


def non_negative_float(text):
    return _number(text, float, "a finite number >= 0", lambda v: v >= 0)


def positive_int(text):
    """An integer >= 1 (counts: subjects, epochs, batch size, jobs)."""
    return _number(text, int, "an integer >= 1", lambda v: v >= 1)


def non_negative_int(text):
    return _number(text, int, "an integer >= 0", lambda v: v >= 0)


def fraction(text):
    """A share in [0, 1): 0 means none."""
    return _number(text, float, "a fraction from 0 up to (not including) 1", lambda v: 0 <= v < 1)


def port(text):
    """A TCP port, 1-65535."""
    return _number(text, int, "a port number from 1 to 65535", lambda v: 1 <= v <= 65535)


MAX_GRID = 1024  # voxels per axis: 1024^3 float32 is already 4 GiB per volume


def parse_grid(text, dims=3):
    """'128x128x76' -> (128, 128, 76); with dims=2, '128x128' -> (128, 128). Each size 8-1024."""
    try:
        grid = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        grid = ()
    if len(grid) != dims or min(grid) < 8 or max(grid) > MAX_GRID:
        example = "x".join(["128", "128", "76"][:dims])
        raise argparse.ArgumentTypeError(f"expected a grid like {example} (each from 8 to {MAX_GRID}), not {text!r}")
    return grid


def parse_slice_grid(text):
    return parse_grid(text, dims=2)


def add_jsonl_option(parser):
    parser.add_argument("--jsonl", action="store_true", help="JSON-lines progress events on stdout")
