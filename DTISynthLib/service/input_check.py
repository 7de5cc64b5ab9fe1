"""Fitting a model package's out-of-distribution check (realism.input_check) to its training
inputs: `train` does it for a new package, `models --fit-input-check` adds it to an existing one.
synthesis.input_check applies it to a synthesis input."""

from dataclasses import replace
from pathlib import Path

from ..core.errors import InputError
from ..core.progress import NullReporter
from ..generators.package import INPUT_CHECK_FILE, read_manifest, write_manifest
from ..io.files import load_dwi
from ..realism.input_check import EPOCHS, FEATURES, dwi_input_features, fit_input_check, save_input_check
from ..training.data import find_pairs, source_and_subject


def training_split(manifest, pairs):
    """(training pairs, validation pairs): the manifest's own split of its training subjects (pairs it
    does not name are left out); without one, every pair, the last tenth by name (at least one) for
    validation, and a single pair for both."""
    record = manifest.training
    parts = {s.get("subject"): s.get("part") for s in record.get("subjects", []) if isinstance(s, dict)}  # tensor-unet
    parts.update({name: "train" for name in record.get("training_subjects", [])})  # pix2pix-per-direction
    parts.update({name: "validation" for name in record.get("validation_subjects", [])})
    if parts:
        return ([p for p in pairs if parts.get(p.subject) == "train"],
                [p for p in pairs if parts.get(p.subject) == "validation"])
    held = max(1, len(pairs) // 10)
    return (pairs[:-held] or pairs, pairs[-held:])


def add_input_check(package, data_dir, epochs=None, reporter=NullReporter(), warning_ratio=None):
    """Fit the check on the 3-direction DWIs of a package's training data (training.data.find_pairs
    layout) and record it in the package (weights file and manifest entry), with `warning_ratio` (default
    realism.input_check.WARNING_RATIO). Returns the entry."""
    package, data_dir = Path(package), Path(data_dir)
    manifest = read_manifest(package)
    training, validation = training_split(manifest, find_pairs(data_dir))
    if not training or not validation:
        raise InputError(data_dir, "the package's training and validation subjects (manifest training.subjects)",
                         f"{len(training)} training and {len(validation)} validation subjects there")
    features = {}
    for k, pair in enumerate(training + validation):
        reporter.progress("input check", k / (len(training) + len(validation)), f"features of {pair.dwi3.name}")
        features[pair.subject] = dwi_input_features(load_dwi(pair.dwi3))
    reporter.progress("input check", 1.0, "training the autoencoder")
    epochs = epochs or EPOCHS
    sources = {}
    for pair in training:  # a source: the data folder's top-level folder holding the pair (e.g. phantom/, real/)
        sources.setdefault(source_and_subject(pair, data_dir)[0], []).append(features[pair.subject])
    check = fit_input_check(list(sources.values()), [features[p.subject] for p in validation], epochs=epochs)
    if warning_ratio is not None:
        check = replace(check, warning_ratio=float(warning_ratio))
    entry = {"file": INPUT_CHECK_FILE, "sha256": save_input_check(package / INPUT_CHECK_FILE, check),
             "reference_error": check.reference_error, "warning_ratio": check.warning_ratio, "features": FEATURES,
             "training_subjects": [p.subject for p in training], "validation_subjects": [p.subject for p in validation],
             "sources": sorted(sources),
             "epochs": epochs, "restarts": check.model.restarts,
             "dead_units": check.model.dead_units}
    write_manifest(package, dict(manifest.data, input_check=entry))
    return entry
