"""Reading and writing images: NIfTI with FSL bval / bvec, Slicer NRRD (DWI, DTI, scalar), DICOM folders
through dcm2niix, and the dispatch by file name (files.py). Everything becomes the core DWI (RAS world
gradients) on load.

May import: core.
"""
