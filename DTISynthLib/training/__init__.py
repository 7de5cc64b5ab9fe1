"""What every generator kind trains with: paired training data (registered, sliced, split by
subject), the training configuration and request, processes and devices (torchrun), and optimiser
checkpoints in safetensors. A kind's own training step lives in its kind module (generators/).

May import: core, io, fit, registration.
"""
