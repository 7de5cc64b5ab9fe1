"""Blinded reader studies (the seed paper's noise review): the study store (SQLite), building a study
from original and synthetic DTIs (with practice cases generated from the phantom), its server and the
reader's client, and the analysis. Qt-free and torch-free; the browser page and the Slicer review reach
a study only through its server.

May import: core, io, evaluation, fit, simulation.
"""
