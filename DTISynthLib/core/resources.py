"""Where the shipped data lives: Resources/ beside DTISynthLib, in a checkout and in a Slicer install
(qt-scripted-modules/ holds both)."""

from pathlib import Path

RESOURCES = Path(__file__).resolve().parents[2] / "Resources"
