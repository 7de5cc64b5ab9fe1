"""The synthesis pipeline: a 3-direction DWI -> a synthetic DTI (axis check, registration to the
reference b=0, the model grid, the generator kind, assembly), and writing it with its maps.

May import: core, io, fit, registration, generators, realism.
"""
