"""JSON has no NaN or infinity: undefined numbers are written as null."""

import math

import numpy as np


def without_nan(value):
    """`value` with numpy scalars as Python numbers and every float NaN or infinity inside dicts, lists
    and tuples replaced by None."""
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nan(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    return None if isinstance(value, float) and not math.isfinite(value) else value
