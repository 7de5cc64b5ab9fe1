"""Simulated and derived data: the digital brain phantom (MNI space) and a small numerical phantom,
paper 2's multi-tensor signal schemes, simulated cohorts with ground truth, the embedded phantom
atlas, and paired 3- / 6-direction data from real multi-direction scans.

May import: core, io, fit.
"""
