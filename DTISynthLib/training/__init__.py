"""Training: what every generator kind trains with (paired training data registered, sliced and split
by subject; the configuration and the run; processes and devices under torchrun; optimiser checkpoints
in safetensors) and each kind's training step (pix2pix.py, tensor_unet.py, diagonal.py), named by the
kind's GeneratorKind.trainer in generators/.

May import: core, io, fit, registration, generators.
"""
