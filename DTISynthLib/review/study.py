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
derived from it tells which came from where. The two maps of a case carry only what the screen shows
(blinded_pair), and a blinding audit of the written files (blinding_audit) refuses a study whose files
tell the synthetic side apart.

Practice cases are never study cases: the images of a study subject shown in practice would be
recognised in the study (its original is the same file). They come from the organiser's practice
subjects (`--practice-original / --practice-synthetic`, none of them a study subject) or, by default,
from the shipped brain phantom generated at two noise levels (practice_maps): practice in reading noise,
with the same viewer, windows and keys. They are written and blinded like study cases and never analysed.

The study records how it is shown (ORIENTATIONS, INTERPOLATIONS: nearest neighbour by default, since
linear interpolation smooths the very noise readers judge), its practice cases per reader, and the
address its links were printed for (`review serve` defaults to it).
"""

import json
import math
import os
import secrets
import time
from pathlib import Path

import numpy as np

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
# The generated practice pair: the phantom's DTI at a white-matter b=0 SNR of 40 (the calmer image) and 12
# (the noisier one, in the pair's "synthetic" slot): a difference a reader sees once they look for grain.
PRACTICE_SNR = (40.0, 12.0)
PRACTICE_GRID = (128, 128, 76)  # the phantom's full field of view; smaller when the study's images are
QUESTION = ("Which image is noisier? Noise is grainy, voxel-to-voxel variation in intensity or colour that does "
            "not follow anatomy; judge it over the slices, not on one.")


def blinded_pair(synthetic, original, map_name):
    """The two maps of a case (x, y, z) or, colour FA, (x, y, z, 3) in [0, 1], as the reader's files carry
    them: what the screen shows and nothing it does not. Scalar maps are clipped to the map's display
    window (beyond it the screen shows the window's ends: the files' maxima above it named the original
    in 14 of 14 MD / AD presentations). A voxel zero in either map is zero in both (the zero masks
    differed by 64-385 voxels at the brain's edge; "fewer zero voxels" named the synthetic file in 32 of
    34). A colour FA voxel that is black or exactly one primary colour in either map (after the RGB24
    rounding) is black in both: the synthetic maps had 27-91 voxels with V1 exactly on an axis (their
    off-diagonal terms zeroed), the originals none. Returns (synthetic, original), float64."""
    a, b = np.array(synthetic, dtype=np.float64), np.array(original, dtype=np.float64)
    if map_name == "color":
        lit = [np.round(np.clip(np.nan_to_num(v), 0, 1) * 255) > 0 for v in (a, b)]
        drop = (lit[0].sum(-1) <= 1) | (lit[1].sum(-1) <= 1)
    else:
        low, high = DISPLAY_WINDOWS[map_name]
        a, b = np.clip(np.nan_to_num(a), low, high), np.clip(np.nan_to_num(b), low, high)
        drop = (a == 0) | (b == 0)
    a[drop], b[drop] = 0.0, 0.0
    return a, b


# The blinding audit: statistics of each file a reader with the files or the browser's developer tools can
# compute. One the screen does not show (a zero voxel and one at the window's low end are both black) that
# differs between the synthetic and the original file consistently across cases names the synthetic file:
# refused. Minimum, maximum (within the window, after blinded_pair's clipping), distinct values and mean
# follow what the screen shows (the brightest voxel, saturated voxels, the brightness; the noise itself
# makes the noisier image's maximum larger): reported, not refused, or every study of a real noise
# difference would be.
AUDIT_REFUSING = ("zero voxels",)
AUDIT_REPORTED = ("minimum", "maximum", "distinct values", "mean")
AUDIT_ALPHA = 0.05  # family-wise: Bonferroni over the statistics x (maps + pooled) tested


def file_statistics(path, header_bytes):
    """{statistic: value} of one study image (its voxel data as written) and its header bytes and size."""
    from ..io.nifti import read_nifti

    values = np.asarray(read_nifti(path)[0])
    empty = (values == 0).all(-1) if values.ndim == 4 else values == 0  # colour: a black voxel
    with open(path, "rb") as handle:  # the header alone: the voxels were read above
        header = handle.read(header_bytes)
    return {"zero voxels": int(empty.sum()), "minimum": float(values.min()), "maximum": float(values.max()),
            "distinct values": int(np.unique(values).size), "mean": float(values.mean()),
            "header": header, "size": Path(path).stat().st_size}


def blinding_audit(cases, header_bytes=352):
    """Rows (map, statistic, synthetic larger, smaller, equal, p) of a study's cases [(map, synthetic
    file, original file)], per map kind and pooled, and the refusal (None or a message): headers and sizes
    must be identical in every case; for each statistic in AUDIT_REFUSING, the sign test (exact two-sided
    binomial test of "synthetic larger" among the cases where the two differ, against 0.5) must not reject
    at AUDIT_ALPHA, Bonferroni-corrected over every test made."""
    from .analysis import binomial_p

    stats = [(m, file_statistics(s, header_bytes), file_statistics(o, header_bytes)) for m, s, o in cases]
    for m, syn, orig in stats:
        for key in ("header", "size"):
            if syn[key] != orig[key]:
                return [], f"{key} of a {m} case differs between the two files"
    groups = {**{m: [x for x in stats if x[0] == m] for m in dict.fromkeys(x[0] for x in stats)}, "pooled": stats}
    rows = []
    for group, members in groups.items():
        for statistic in AUDIT_REFUSING + AUDIT_REPORTED:
            larger = sum(syn[statistic] > orig[statistic] for _, syn, orig in members)
            smaller = sum(syn[statistic] < orig[statistic] for _, syn, orig in members)
            rows.append({"map": group, "statistic": statistic, "synthetic_larger": larger, "synthetic_smaller": smaller,
                         "equal": len(members) - larger - smaller,
                         "p_sign_test": binomial_p(larger, larger + smaller) if larger + smaller else 1.0})
    tested = [r for r in rows if r["statistic"] in AUDIT_REFUSING]
    threshold = AUDIT_ALPHA / max(len(tested), 1)
    worst = min(tested, key=lambda r: r["p_sign_test"], default=None)
    if worst is not None and worst["p_sign_test"] < threshold:
        return rows, (f"{worst['statistic']} of the {worst['map']} files: synthetic larger in {worst['synthetic_larger']}, "
                      f"smaller in {worst['synthetic_smaller']} of {worst['synthetic_larger'] + worst['synthetic_smaller']} "
                      f"cases that differ (sign test p = {worst['p_sign_test']:.2g} < {threshold:.2g}, "
                      f"{AUDIT_ALPHA:g} Bonferroni-corrected over {len(tested)} tests)")
    return rows, None


def practice_maps(index, seed, grid):
    """Maps {"synthetic": {map: array}, "original": {...}} and affine of generated practice subject `index`:
    the shipped brain phantom (simulation.cohort, a subject of its own drawn from `seed`; `grid` voxels)
    acquired as a 6-direction DTI at b=0 SNR PRACTICE_SNR[0] ("original") and PRACTICE_SNR[1]
    ("synthetic": the noisier), both fitted alike (OLS, one brain mask). MD / AD / RD in mm^2/s."""
    from dataclasses import replace

    from ..evaluation.comparison import MAPS
    from ..fit.brain_mask import brain_mask
    from ..fit.tensor_fit import fit_tensors
    from ..fit.tensor_maps import compute_maps
    from ..simulation.cohort import S0_WM, draw_subject, simulate_subject
    from ..simulation.signals import add_rician_noise

    dti = simulate_subject(draw_subject(f"practice-{index}", seed), grid=grid, noise=False).dti
    rng = np.random.default_rng([seed, index, 7])
    mask = brain_mask(dti.mean_b0())
    maps = {}
    for source, snr in zip(("original", "synthetic"), PRACTICE_SNR):
        noisy = add_rician_noise(dti.data.astype(np.float64), S0_WM / snr, rng).astype(np.float32)
        fit = fit_tensors(replace(dti, data=noisy), mask, "ols")
        maps[source] = compute_maps(fit.tensor, fit.mask, MAPS + ("color",), policy="clip")
    return maps, dti.affine


def check_practice(training, maps, practice_original=None, practice_synthetic=None, study=()):
    """The organiser's practice subjects [(subject, original, synthetic)] (find_subjects), checked before
    anything is written: both folders or neither, none of them a study subject (by name or file: its
    images seen in practice would be recognised in the study), at least `training` cases (subjects x
    maps). None when the practice cases are to be generated."""
    from ..evaluation.comparison import find_subjects

    if (practice_original is None) != (practice_synthetic is None):
        raise InputError("--practice-original / --practice-synthetic", "both practice folders, or neither",
                         "only one")
    if not training or practice_original is None:
        return None
    subjects = find_subjects(practice_original, practice_synthetic)
    names = {name for name, _, _ in study}
    files = {Path(path).resolve() for _, path, _ in study}
    for name, original_path, _ in subjects:
        if name in names or Path(original_path).resolve() in files:
            raise InputError(practice_original, "practice subjects that are not study subjects (a study image "
                             "seen in practice would be recognised)", f"study subject {name}")
    if len(subjects) * len(maps) < training:
        raise InputError("--practice", f"at most the {len(subjects) * len(maps)} practice cases the practice "
                         "folders give (subjects x maps)", str(training))
    return subjects


def practice_subjects(training, maps, seed, grid, given=None):
    """(subject name, maps {"synthetic" / "original": {map: array}}, affine) of each practice subject: the
    organiser's (`given`, check_practice) or ceil(training / maps) generated phantom subjects of `grid`
    voxels (practice_maps), one at a time."""
    from ..evaluation.comparison import subject_maps

    if given is not None:
        for name, original_path, synthetic_path in given:
            compared = subject_maps(original_path, synthetic_path)
            yield f"practice-{name}", compared.maps, compared.original.affine
        return
    for index in range(1, math.ceil(training / len(maps)) + 1):
        generated, affine = practice_maps(index, seed, grid)
        yield f"practice-{index}", generated, affine


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


def write_case(layout, map_name, synthetic, original, affine, rng):
    """Write the two images of a case (blinded_pair, each under an opaque name, in a random order: creation
    order, inode numbers and directory order must not tell the sides); returns (synthetic name, original
    name, synthetic sha256, original sha256)."""
    from ..io.nifti import write_nifti, write_nifti_rgb24

    shown = dict(zip(("synthetic", "original"), blinded_pair(synthetic, original, map_name)))
    files = {}
    for source in rng.sample(("synthetic", "original"), 2):
        path = layout.image(f"{secrets.token_hex(8)}.nii")
        if map_name == "color":
            write_nifti_rgb24(path, shown[source], affine)
        else:
            write_nifti(path, shown[source].astype("float32"), affine)
        files[source] = path
    return (files["synthetic"].name, files["original"].name, sha256_file(files["synthetic"]),
            sha256_file(files["original"]))


def create_study(original, synthetic, out_dir, maps=REVIEW_MAPS, readers=2, seed=0, name=None,
                 reporter=NullReporter(), training=0, orientation="radiological", interpolation="nearest",
                 address=("127.0.0.1", 8765), rng=None, practice_original=None, practice_synthetic=None):
    """Write a study folder (study.sqlite + images/) from `original` and `synthetic` as `dtisynth
    evaluate` takes them (one DTI and one synthesize folder, or a cohort folder and a folder of synthesize
    folders). `training`: practice cases each reader answers first, never analysed, from the practice
    folders or generated (practice_subjects); `address`: (host, port) the reader links are for; `rng`: a
    random.Random for the order the two files of a case are written in (default: the operating system's
    randomness). Returns {reader name: secret token}: the tokens are stored only as hashes."""
    from ..evaluation.comparison import find_subjects, subject_maps

    maps = check_maps(list(maps))
    names = reader_names(readers)
    check_choice("--orientation", orientation, ORIENTATIONS)
    check_choice("--interpolation", interpolation, INTERPOLATIONS)
    if int(training) < 0:
        raise InputError("--practice", "a number of practice cases >= 0", repr(training))
    subjects = find_subjects(original, synthetic)
    given_practice = check_practice(int(training), maps, practice_original, practice_synthetic, subjects)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise InputError(out_dir, "a new or empty folder for the study", "a folder with files")
    order = rng or secrets.SystemRandom()
    tokens = {}
    with atomic_output_dir(out_dir) as staging:
        store = StudyStore.create(staging, name or out_dir.name, seed)
        layout = StudyFolder(staging)
        layout.images.mkdir()
        cases = []
        for i, (subject, original_path, synthetic_path) in enumerate(subjects):
            reporter.progress("review", i / len(subjects), f"{subject}: fitting both DTIs")
            compared = subject_maps(original_path, synthetic_path)
            grid = compared.original.data.shape[:3]
            for map_name in maps:
                cases.append((subject, map_name, *write_case(layout, map_name, compared.maps["synthetic"][map_name],
                                                             compared.maps["original"][map_name],
                                                             compared.original.affine, order)))
        audit, refusal = blinding_audit([(c[1], layout.image(c[2]), layout.image(c[3])) for c in cases])
        if refusal:
            raise InputError(out_dir, "images whose files do not tell the synthetic one apart (blinding audit)",
                             refusal)
        practice = []
        practice_grid = tuple(min(a, b) for a, b in zip(PRACTICE_GRID, grid))
        for subject, pair, affine in practice_subjects(int(training), maps, seed, practice_grid, given_practice):
            reporter.progress("review", 1.0, f"{subject}: practice images")
            practice += [(subject, m, *write_case(layout, m, pair["synthetic"][m], pair["original"][m], affine, order))
                         for m in maps]
        shared = time.time()
        for image in layout.images.iterdir():
            os.utime(image, (shared, shared))
        for case in cases:
            store.add_case(*case)
        for case in practice:
            store.add_case(*case, practice=True)
        store.set_info({"maps": json.dumps(list(maps)), "display": json.dumps(DISPLAY_WINDOWS),
                        "sources": json.dumps({"original": str(original), "synthetic": str(synthetic),
                                               "practice": "generated phantom" if practice_original is None else
                                               {"original": str(practice_original),
                                                "synthetic": str(practice_synthetic)}}),
                        "training": str(int(training)), "orientation": orientation, "interpolation": interpolation,
                        "question": QUESTION, "host": str(address[0]), "port": str(int(address[1])),
                        "blinding_audit": json.dumps(audit)})
        for reader in names:
            tokens[reader] = store.add_reader(reader)
    reporter.progress("review", 1.0, f"{len(cases)} cases, {len(practice)} practice cases, {len(names)} readers")
    return tokens
