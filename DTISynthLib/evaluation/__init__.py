"""Comparing synthetic with acquired DTI as the seed paper did: atlas ROIs, ROI statistics, paired
t-tests, Bland-Altman, PSNR / SSIM, the realism index of paper 2's autoencoder, figures and the HTML
report.

May import: core, io, fit, registration, simulation, realism.
"""
