"""Generators: model packages (manifest + safetensors weights, verified, never unpickled), the
intensity mapping, the networks, the registry of generator kinds and each kind (how to build its
networks, how their outputs become the DTI's directions, its training step), and the inference runner.

Adding a kind is one module defining `KIND = GeneratorKind(...)` plus one line in registry.KINDS.
torch is imported at load only by networks.py and pix2pix_trainer.py, elsewhere inside functions:
reading or verifying a package never loads it.

Kinds use the tensor model (fit); training validates with evaluation's image metrics.

May import: core, fit, evaluation, training.
"""
