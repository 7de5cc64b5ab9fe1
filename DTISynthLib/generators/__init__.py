"""Generators: model packages (manifest + safetensors weights, verified, never unpickled), the
intensity mapping, the networks, the registry of generator kinds and each kind (how to build its
networks, how their outputs become the DTI's directions, its training step), and the inference runner.

Adding a kind is one module defining `KIND = GeneratorKind(...)` plus one line in registry.KINDS.
Only networks.py, pix2pix_trainer.py and the kinds' functions import torch; reading or verifying a
package does not.

May import: core, io, evaluation, training.
"""
