"""DTISynth: synthesize diffusion tensor images from 3-direction DWI, fit tensors, compare maps.

The science core: small functions over numpy arrays. Nothing here imports Slicer, Qt or torch at
import time.
"""

__version__ = "0.1.0"
