"""JSON has no NaN or infinity: undefined numbers are written as null."""

import math


def without_nan(value):
    """`value` with every float NaN or infinity inside dicts, lists and tuples replaced by None."""
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nan(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value
