"""Building a blinded noise-review study from original and synthetic DTIs (the seed paper's reader
study: which of two maps is noisier?).

Each subject's original and synthetic DTI are aligned and fitted alike (evaluation.comparison.
subject_maps: the original's grid and brain mask), and each requested map of both is written into the
study folder as an uncompressed NIfTI under an opaque name (StudyFolder.image: random hex). Uncompressed
and of one data type per map, the two files of a case have the same size: a compressed noisier image
would be the larger file, and a size is visible to anyone who loads it. Colour FA is RGB24; FA, MD,
AD, RD float32 (MD / AD / RD in mm^2/s) with one fixed display window per map kind (DISPLAY_WINDOWS:
per-image auto-scaling would tell the images apart). The two files of a case are written in a random
order and every image is given one shared modification time, so neither the file system nor anything
derived from it tells which came from where.

The study records how it is shown (ORIENTATIONS, INTERPOLATIONS: nearest neighbour by default, since
linear interpolation smooths the very noise readers judge), its training cases per reader, and the
address its links were printed for (`review serve` defaults to it).
"""

import json
import os
import secrets
import time
from pathlib import Path

from ..core.atomic import atomic_output_dir
from ..core.checksums import sha256_file
from ..core.errors import InputError
from ..core.output_layout import StudyFolder
from ..core.progress import NullReporter
from .store import StudyStore

REVIEW_MAPS = ("color", "fa", "md", "ad", "rd")
MAP_TITLES = {"color": "Colour FA", "fa": "FA", "md": "MD", "ad": "AD", "rd": "RD"}
# MD / AD / RD in mm^2/s; colour FA in RGB24 bytes (NiiVue would otherwise scale each image by its own range)
# MD / AD / RD windows put brain tissue's median near mid-grey (the noise readers judge is in tissue; CSF,
# about 3e-3 mm^2/s, saturates): tissue medians 0.66-0.88e-3 (MD), 0.84-1.21e-3 (AD), 0.59-0.77e-3 mm^2/s
# (RD) on the phantom and three real scans, so grey levels 94-129 of 255 (0-3e-3 put them at 56-103).
DISPLAY_WINDOWS = {"color": [0.0, 255.0], "fa": [0.0, 1.0], "md": [0.0, 1.8e-3], "ad": [0.0, 2.4e-3],
                   "rd": [0.0, 1.5e-3]}
ORIENTATIONS = ("radiological", "neurological")  # radiological: the patient's left on the screen's right
INTERPOLATIONS = ("nearest", "linear")
QUESTION = ("Which image is noisier? Noise is grainy, voxel-to-voxel variation in intensity or colour that does "
            "not follow anatomy; judge it over the slices, not on one.")


def check_choice(option, value, choices):
    if value not in choices:
        raise InputError(option, " or ".join(choices), repr(value))
    return value


def check_maps(maps):
    unknown = [m for m in maps if m not in REVIEW_MAPS]
    if not maps or unknown:
        raise InputError("--maps", f"a comma list of {', '.join(REVIEW_MAPS)}", ", ".join(maps) or "nothing")
    return tuple(maps)


def reader_names(readers):
    """Reader names from a count ("3": reader-1 .. reader-3) or a comma list of names."""
    text = str(readers).strip()
    if text.isdigit():
        if int(text) < 1:
            raise InputError("--readers", "at least one reader", text)
        return [f"reader-{k}" for k in range(1, int(text) + 1)]
    names = [n.strip() for n in text.split(",")]
    if "" in names:  # "ann,,bob" or "ann, ": a slip to point out, not a reader to drop (or to add nameless)
        raise InputError("--readers", "a number or a comma list of names, each with at least one visible character",
                         repr(text))
    if len(set(names)) != len(names):
        raise InputError("--readers", "a number or a comma list of distinct names", repr(text))
    return names


def create_study(original, synthetic, out_dir, maps=REVIEW_MAPS, readers=2, seed=0, name=None,
                 reporter=NullReporter(), training=0, orientation="radiological", interpolation="nearest",
                 address=("127.0.0.1", 8765), rng=None):
    """Write a study folder (study.sqlite + images/) from `original` and `synthetic` as `dtisynth
    evaluate` takes them (one DTI and one synthesize folder, or a cohort folder and a folder of synthesize
    folders). `training`: cases each reader answers first, never analysed; `address`: (host, port) the
    reader links are for; `rng`: a random.Random for the order the two files of a case are written in
    (default: the operating system's randomness). Returns {reader name: secret token}: the tokens are
    stored only as hashes."""
    from ..evaluation.comparison import find_subjects, subject_maps
    from ..io.nifti import write_nifti, write_nifti_rgb24

    maps = check_maps(list(maps))
    names = reader_names(readers)
    check_choice("--orientation", orientation, ORIENTATIONS)
    check_choice("--interpolation", interpolation, INTERPOLATIONS)
    if int(training) < 0:
        raise InputError("--training", "a number of training cases >= 0", repr(training))
    subjects = find_subjects(original, synthetic)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise InputError(out_dir, "a new or empty folder for the study", "a folder with files")
    tokens = {}
    with atomic_output_dir(out_dir) as staging:
        store = StudyStore.create(staging, name or out_dir.name, seed)
        layout = StudyFolder(staging)
        layout.images.mkdir()
        cases = []
        for i, (subject, original_path, synthetic_path) in enumerate(subjects):
            reporter.progress("review", i / len(subjects), f"{subject}: fitting both DTIs")
            compared = subject_maps(original_path, synthetic_path)
            affine = compared.original.affine
            for map_name in maps:
                files = {}
                # a random order: creation order (inode numbers, directory order) must not tell the sides
                for source in (rng or secrets.SystemRandom()).sample(("synthetic", "original"), 2):
                    path = layout.image(f"{secrets.token_hex(8)}.nii")
                    volume = compared.maps[source][map_name]
                    if map_name == "color":
                        write_nifti_rgb24(path, volume, affine)
                    else:
                        write_nifti(path, volume.astype("float32"), affine)
                    files[source] = path
                cases.append((subject, map_name, files["synthetic"].name, files["original"].name,
                              sha256_file(files["synthetic"]), sha256_file(files["original"])))
        shared = time.time()
        for image in layout.images.iterdir():
            os.utime(image, (shared, shared))
        for case in cases:
            store.add_case(*case)
        store.set_info({"maps": json.dumps(list(maps)), "display": json.dumps(DISPLAY_WINDOWS),
                        "sources": json.dumps({"original": str(original), "synthetic": str(synthetic)}),
                        "training": str(int(training)), "orientation": orientation, "interpolation": interpolation,
                        "question": QUESTION, "host": str(address[0]), "port": str(int(address[1]))})
        for reader in names:
            tokens[reader] = store.add_reader(reader)
    reporter.progress("review", 1.0, f"{len(cases)} cases, {len(names)} readers")
    return tokens
