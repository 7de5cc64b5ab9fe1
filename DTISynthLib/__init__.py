"""DTISynth: synthesize diffusion tensor images from 3-direction DWI, fit tensors, compare maps.

Sub-packages, from the bottom layer up: core, io, fit, registration, simulation, evaluation,
training, generators, synthesis, review, service, slicer, jobs (each __init__ says what it may import; README:
Layout). Small functions over numpy arrays; nothing here imports Slicer, Qt or torch at import time.
"""

__version__ = "0.1.0"
