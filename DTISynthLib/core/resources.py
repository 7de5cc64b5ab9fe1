"""Where the shipped data lives: DTISynthLib/_resources in an installed wheel (setup.py copies
Resources/ there), else Resources/ beside DTISynthLib, in a checkout and in a Slicer install
(qt-scripted-modules/ holds both).

What ships, one list for the wheel (setup.py) and the Slicer extension (DTISynth/CMakeLists.txt, checked
against it by Testing/Python/test_layout.py): SHIPPED_FILES, the files the library reads or hands to
users, plus every shipped model package's manifest and the files it names
(generators.package.package_files); the wheel adds NIIVUE_BUNDLE, which npm installs.
"""

from pathlib import Path

_PACKAGED = Path(__file__).resolve().parents[1] / "_resources"
RESOURCES = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[2] / "Resources"
MODELS = "Models"  # one folder per shipped model package
SHIPPED_FILES = (
    "README.md",
    "Atlases/README.md",
    "Atlases/jhu_icbm_dti_81_labels.tsv",  # the JHU labels' table for a user atlas (evaluation.atlas)
    "Phantom/README.md",
    "Phantom/mni_icbm152_2009_tissue_2mm.nii.gz",  # the brain phantom's tissue maps
    "Review/review.html",  # the reader page (review.server)
)
NIIVUE_BUNDLE = "Review/node_modules/@niivue/niivue/dist/niivue.umd.js"  # npm ci --prefix Resources/Review
