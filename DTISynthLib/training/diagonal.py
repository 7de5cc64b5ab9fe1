"""Training of the "diagonal" kind (generators/diagonal.py): there is nothing to learn."""

from ..core.errors import InputError
from ..generators.diagonal import NAME


def train(run):
    raise InputError("--kind", f"a kind with networks to train (the {NAME} kind learns nothing: use its package, "
                     "Resources/Models/diagonal)", repr(NAME))
