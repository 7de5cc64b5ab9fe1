"""Blinded reader studies (the seed paper's noise review): the study store (SQLite), building a study
from original and synthetic DTIs, and the analysis. Qt-free and torch-free; the browser and Slicer
front ends call the store.

May import: core, io, evaluation.
"""
