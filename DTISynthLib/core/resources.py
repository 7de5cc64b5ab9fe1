"""Where the shipped data lives: DTISynthLib/_resources in an installed wheel (setup.py copies
Resources/ there), else Resources/ beside DTISynthLib, in a checkout and in a Slicer install
(qt-scripted-modules/ holds both)."""

from pathlib import Path

_PACKAGED = Path(__file__).resolve().parents[1] / "_resources"
RESOURCES = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[2] / "Resources"
