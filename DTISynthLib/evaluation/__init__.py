"""Comparing synthetic with acquired DTI as the seed paper did: atlas ROIs, ROI statistics, paired
t-tests, Bland-Altman, PSNR / SSIM, figures and the HTML report.

May import: core, io, fit, registration, simulation.
"""
