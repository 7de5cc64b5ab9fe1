"""Option types and options shared by the jobs' parsers."""

import argparse


def parse_grid(text, dims=3):
    """'128x128x76' -> (128, 128, 76); with dims=2, '128x128' -> (128, 128). Each size at least 8."""
    try:
        grid = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        grid = ()
    if len(grid) != dims or min(grid) < 8:
        example = "x".join(["128", "128", "76"][:dims])
        raise argparse.ArgumentTypeError(f"expected a grid like {example} (each at least 8), not {text!r}")
    return grid


def parse_slice_grid(text):
    return parse_grid(text, dims=2)


def add_jsonl_option(parser):
    parser.add_argument("--jsonl", action="store_true", help="JSON-lines progress events on stdout")
