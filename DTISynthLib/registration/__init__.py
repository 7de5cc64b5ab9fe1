"""Registration with SimpleITK: rigid (6 degrees of freedom, Mattes mutual information) for the DWI
and the reference b=0, affine + demons for atlases. Our RAS affines are turned into ITK's LPS space
in itk.py and nowhere else.

May import: core.
"""
