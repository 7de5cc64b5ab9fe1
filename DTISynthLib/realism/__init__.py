"""How real diffusion data looks to a model (paper 2): a single-voxel denoising autoencoder trained
on one kind of data whose reconstruction error on other data scores how alike the two are.

May import: core, fit, simulation.
"""
