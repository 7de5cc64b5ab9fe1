"""BIDS datasets in, BIDS derivatives out: the layout rules DTISynth needs, without a BIDS library
(pybids adds 130 MB and drops misnamed files without a word; bidsschematools matches names only).
Whether a dataset is valid BIDS is the official validator's call (validator_errors).

Raw data: `sub-<label>/[ses-<label>/]dwi/sub-<label>[_ses-<label>][_<key>-<value>...]_dwi.nii[.gz]`
with its `.bval` / `.bvec` beside it (same stem). A series with exactly three diffusion-weighted
volumes (and a b=0) is an input to synthesize; one with six or more is the session's acquired DTI
(the b=0 to register to, and the DTI to evaluate against); one of b=0 volumes only is the b=0 to
register to when the session has no acquired DTI. FSL bvecs: image frame, x flipped for a
positive-determinant affine (io.nifti reads them).

Derivatives (names after the diffusion-derivatives proposal, BEP016), per input series with entities
E: `E_desc-synthetic_dwi.nii.gz` (+ .bval / .bvec: the synthetic b=0 + 6 directions),
`E_model-tensor_param-<fa|md|ad|rd|tensor>_dwimap.nii.gz` (tensor: Dxx, Dyy, Dzz, Dxy, Dxz, Dyz in
mm^2/s, RAS, MRtrix3 order), `E_model-tensor_param-fa_desc-dec_dwimap.nii.gz` (colour FA), optional
`E_model-tensor_param-v1confidence_dwimap.nii.gz`, and `E_desc-synthetic_dwi.json` (the synthetic
series' sidecar: Description, SkullStripped, Sources, then the synthesis report), in
`sub-<label>/[ses-<label>/]dwi/` of the derivatives folder.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.dwi import B0_THRESHOLD
from ..core.errors import InputError
from .nifti import fsl_sidecar, nifti_stem

ENTITY = re.compile(r"^([a-zA-Z0-9]+)-([a-zA-Z0-9]+)$")
# synthesis output (SynthesisOutput's maps) -> BEP016 name part
MAP_NAMES = {"fa": "model-tensor_param-fa_dwimap", "md": "model-tensor_param-md_dwimap",
             "ad": "model-tensor_param-ad_dwimap", "rd": "model-tensor_param-rd_dwimap",
             "tensor": "model-tensor_param-tensor_dwimap", "color": "model-tensor_param-fa_desc-dec_dwimap",
             "v1_confidence": "model-tensor_param-v1confidence_dwimap",
             "md_uncertainty": "model-tensor_param-mduncertainty_dwimap"}


@dataclass(frozen=True)
class Session:
    """One subject's session (session "" when the dataset has none): its 3-direction input series and
    its acquired DTI, if any. `problem`: why the session cannot be synthesized as it is (a misnamed
    file, an unreadable .bval, files beside session folders), an InputError's message; the cohort lists
    it as failed and goes on with the others."""

    subject: str
    session: str
    inputs: tuple = ()  # of Path
    acquired: Path = None
    others: tuple = field(default=())  # series of 1, 2 or 4-5 directions: reported, not used
    b0: Path = None  # a series of b=0 volumes only
    problem: str = ""

    @property
    def reference(self):
        """The b=0 the inputs register to: the acquired DTI's, else a b=0 series', else None (their own)."""
        return self.acquired or self.b0

    @property
    def key(self):
        """'sub-01' or 'sub-01_ses-2'."""
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")

    @property
    def folder(self):
        """The session's dwi folder, relative to the dataset (and to the derivatives)."""
        return Path(f"sub-{self.subject}") / (f"ses-{self.session}" if self.session else "") / "dwi"


def series_stem(path):
    """'sub-01_ses-2_run-1_dwi.nii.gz' -> 'sub-01_ses-2_run-1' (the entities, without the suffix)."""
    return nifti_stem(path).removesuffix("_dwi")


def series_files(path):
    """A DWI series' NIfTI and its FSL .bval / .bvec (io.nifti reads them from beside it)."""
    return [Path(path), fsl_sidecar(path, ".bval"), fsl_sidecar(path, ".bvec")]


def entities(path):
    """{key: value} of a BIDS file name's entities, in order; refuses a malformed name."""
    found = {}
    for part in series_stem(path).split("_"):
        match = ENTITY.match(part)
        if not match:
            raise InputError(path, "a BIDS name of key-value entities (sub-<label>[_ses-<label>]..._dwi)",
                             f"the part {part!r}")
        found[match.group(1)] = match.group(2)
    return found


def weighted_volumes(bval_path):
    """Diffusion-weighted volumes in an FSL .bval file (b above core.dwi.B0_THRESHOLD)."""
    try:
        bvals = np.loadtxt(bval_path, ndmin=1)
    except (OSError, ValueError) as exc:
        raise InputError(bval_path, "an FSL .bval file of numbers", f"unreadable ({exc})") from None
    if bvals.ndim != 1 and 1 not in bvals.shape:
        raise InputError(bval_path, "an FSL .bval file of one row of numbers", f"{bvals.shape[0]} rows")
    return int((bvals > B0_THRESHOLD).sum())


def dataset_description(bids_dir):
    """The dataset's dataset_description.json as a dict; refuses a folder without one (not a BIDS
    dataset) and one that is not a JSON object."""
    path = Path(bids_dir) / "dataset_description.json"
    if not path.is_file():
        raise InputError(bids_dir, "a BIDS dataset (a folder with dataset_description.json)", "none there")
    try:
        description = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, "a JSON object (BIDS dataset_description.json)", f"unreadable content ({exc})") from None
    if not isinstance(description, dict):
        raise InputError(path, "a JSON object (BIDS dataset_description.json)", f"a JSON {type(description).__name__}")
    return description


def _labels(option, prefix, wanted, present, root, what):
    """The wanted labels (without `prefix`; None: all), refused when any is not in the dataset."""
    if not wanted:
        return None
    wanted = {label.removeprefix(prefix) for label in wanted}
    if wanted - present:
        listed = ", ".join(sorted(present)) or f"none: {root} has no {prefix}* folders"
        raise InputError(option, f"{what} of {root} ({listed})", ", ".join(sorted(wanted - present)))
    return wanted


def _series_of(folder, subject, session):
    """(inputs, acquired, others, b0) of one dwi folder by each series' count of weighted volumes; an
    InputError for the first misnamed or unreadable series."""
    inputs, acquired, others, b0 = [], [], [], []
    for path in sorted(folder.glob("*_dwi.nii*")):
        labels = entities(path)
        if labels.get("sub") != subject or labels.get("ses", "") != session:
            raise InputError(path, f"a name starting sub-{subject}" + (f"_ses-{session}" if session else ""),
                             path.name)
        count = weighted_volumes(fsl_sidecar(path, ".bval"))
        (inputs if count == 3 else acquired if count >= 6 else b0 if count == 0 else others).append(path)
    return inputs, acquired, others, b0


def find_sessions(bids_dir, participants=None, sessions=None):
    """[Session] of a BIDS dataset, by subject then session; `participants` / `sessions`: labels to keep
    (with or without the sub- / ses- prefix; None: all). Refuses a folder that is not a BIDS dataset
    (no dataset_description.json, or not a JSON object) and a label that is not there. A session whose
    files are misnamed or unreadable, or a subject's DWI files beside its ses-* folders, is a Session
    with a `problem` (reported as failed), not a refusal of the whole dataset. Reads file names and
    .bval files only."""
    root = Path(bids_dir)
    dataset_description(root)
    subjects = sorted(p.name.removeprefix("sub-") for p in root.glob("sub-*") if p.is_dir())
    wanted = _labels("--participant-label", "sub-", participants, set(subjects), root, "participants")
    subjects = [s for s in subjects if not wanted or s in wanted]
    folders = {s: sorted(p for p in (root / f"sub-{s}").glob("ses-*") if p.is_dir()) for s in subjects}
    present = {p.name.removeprefix("ses-") for subject_folders in folders.values() for p in subject_folders}
    wanted_sessions = _labels("--session-label", "ses-", sessions, present, root, "sessions")
    found = []
    for subject in subjects:
        loose = root / f"sub-{subject}" / "dwi"
        if folders[subject] and not wanted_sessions and list(loose.glob("*_dwi.nii*")):
            found.append(Session(subject, "", problem=str(InputError(
                loose, "the DWI series of a subject with sessions inside its ses-* folders (as BIDS keeps them)",
                f"{len(list(loose.glob('*_dwi.nii*')))} series beside "
                f"{', '.join(p.name for p in folders[subject])}"))))
        for folder in folders[subject] or [root / f"sub-{subject}"]:
            session = folder.name.removeprefix("ses-") if folder.name.startswith("ses-") else ""
            if wanted_sessions and session not in wanted_sessions:
                continue
            try:
                inputs, acquired, others, b0 = _series_of(folder / "dwi", subject, session)
            except InputError as exc:
                found.append(Session(subject, session, problem=str(exc)))
                continue
            if inputs or acquired or others or b0:
                found.append(Session(subject, session, tuple(inputs), acquired[0] if acquired else None,
                                     tuple(others), b0[0] if b0 else None))
    return found


def derivative_name(input_path, part, extension=".nii.gz"):
    """The derivative file name of `part` (a MAP_NAMES key, "synthetic" or "report") for an input series."""
    stem = series_stem(input_path)
    if part == "synthetic":
        return f"{stem}_desc-synthetic_dwi{extension}"
    if part == "report":  # the synthetic series' sidecar: BIDS keys, then the synthesis report
        return f"{stem}_desc-synthetic_dwi.json"
    return f"{stem}_{MAP_NAMES[part]}{extension}"


VALIDATOR_TIMEOUT = 600  # seconds: the validator reads 3,200 files in about 10 s


def validator_errors(folder, timeout=VALIDATOR_TIMEOUT):
    """The official BIDS validator's errors (bids-validator-deno: the schema-based validator, its schema
    bundled, so offline) on a dataset folder: {code: [locations in the dataset]}, {} when it finds none,
    None when the validator is not installed (pip install 'dtisynth[cohort]'). Warnings are not
    returned. A validator that fails or runs past `timeout` is one error, VALIDATOR_FAILED, with its reason."""
    if importlib.util.find_spec("bids_validator_deno") is None:
        return None
    command = [sys.executable, "-c", "import sys; from bids_validator_deno import cli; sys.exit(cli())", str(folder),
               "--format", "json", "--ignoreWarnings"]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                             env=dict(os.environ, NO_COLOR="1"))
        issues = json.loads(run.stdout)["issues"]["issues"]
    except subprocess.TimeoutExpired:
        return {"VALIDATOR_FAILED": [f"no answer within {timeout} s"]}
    except (ValueError, KeyError, TypeError):  # exit 1: a crash, its stack trace on stderr, nothing on stdout
        return {"VALIDATOR_FAILED": [(run.stderr.strip().splitlines() or [f"exit code {run.returncode}"])[-1]]}
    errors = {}
    for issue in issues:
        if issue.get("severity") == "error":
            errors.setdefault(issue.get("code", "UNKNOWN"), []).append(
                issue.get("location") or ", ".join(issue.get("affects", [])) or "the dataset")
    return errors


def describe_validator_errors(errors, shown=2):
    """One line per code: 'CODE (n): location, location, ...'."""
    return [f"{code} ({len(where)}): {', '.join(sorted(where)[:shown])}" + (", ..." if len(where) > shown else "")
            for code, where in sorted(errors.items())]
