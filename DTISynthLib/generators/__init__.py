"""Generators, for inference: model packages (manifest + safetensors weights, verified, never
unpickled), the intensity mapping, the networks, the registry of generator kinds and each kind (how to
build its networks, how their outputs become the DTI's directions), and the inference runner. Each
kind's training step is in training/ (GeneratorKind.trainer).

Adding a kind is one module here defining `KIND = GeneratorKind(...)`, one line in registry.KINDS, and
its trainer module in training/. torch is imported at load only by networks.py; the kinds and the
runner import it inside functions, because the runner loads torch on a background thread while the DWI
registers, and reading or verifying a package never loads it.

May import: core, fit.
"""
