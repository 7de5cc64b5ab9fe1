"""Tensor fitting (OLS / WLS / IWLS as MRtrix3), tensor maps (FA, MD, AD, RD, colour FA, V1,
eigenvalues) and the brain mask: small functions over numpy arrays.

May import: core.
"""
