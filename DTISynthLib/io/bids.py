"""BIDS datasets in, BIDS derivatives out: the layout rules DTISynth needs, without a BIDS library.

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
`E_model-tensor_param-v1confidence_dwimap.nii.gz`, and `E_desc-synthesis_dwi.json` (the synthesis
report), in `sub-<label>/[ses-<label>/]dwi/` of the derivatives folder.
"""

import re
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
             "v1_confidence": "model-tensor_param-v1confidence_dwimap"}


@dataclass(frozen=True)
class Session:
    """One subject's session (session "" when the dataset has none): its 3-direction input series and
    its acquired DTI, if any."""

    subject: str
    session: str
    inputs: tuple = ()  # of Path
    acquired: Path = None
    others: tuple = field(default=())  # series of 1, 2 or 4-5 directions: reported, not used
    b0: Path = None  # a series of b=0 volumes only

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
    return int((bvals > B0_THRESHOLD).sum())


def find_sessions(bids_dir, participants=None, sessions=None):
    """[Session] of a BIDS dataset, by subject then session; `participants` / `sessions`: labels to keep
    (with or without the sub- / ses- prefix; None: all). Refuses a folder that is not a BIDS dataset
    (no dataset_description.json) and a label that is not there."""
    root = Path(bids_dir)
    if not (root / "dataset_description.json").is_file():
        raise InputError(root, "a BIDS dataset (a folder with dataset_description.json)", "none there")
    wanted = {p.removeprefix("sub-") for p in participants} if participants else None
    wanted_sessions = {s.removeprefix("ses-") for s in sessions} if sessions else None
    subjects = sorted(p.name.removeprefix("sub-") for p in root.glob("sub-*") if p.is_dir())
    if wanted and wanted - set(subjects):
        raise InputError("--participant-label", f"participants of {root} ({', '.join(subjects)})",
                         ", ".join(sorted(wanted - set(subjects))))
    found = []
    for subject in subjects:
        if wanted and subject not in wanted:
            continue
        folders = sorted(p for p in (root / f"sub-{subject}").glob("ses-*") if p.is_dir()) or [root / f"sub-{subject}"]
        for folder in folders:
            session = folder.name.removeprefix("ses-") if folder.name.startswith("ses-") else ""
            if wanted_sessions and session not in wanted_sessions:
                continue
            inputs, acquired, others, b0 = [], [], [], []
            for path in sorted((folder / "dwi").glob("*_dwi.nii*")):
                labels = entities(path)
                if labels.get("sub") != subject or labels.get("ses", "") != session:
                    raise InputError(path, f"a name starting sub-{subject}" + (f"_ses-{session}" if session else ""),
                                     path.name)
                count = weighted_volumes(fsl_sidecar(path, ".bval"))
                (inputs if count == 3 else acquired if count >= 6 else b0 if count == 0 else others).append(path)
            if inputs or acquired or others or b0:
                found.append(Session(subject, session, tuple(inputs), acquired[0] if acquired else None,
                                     tuple(others), b0[0] if b0 else None))
    return found


def derivative_name(input_path, part, extension=".nii.gz"):
    """The derivative file name of `part` (a MAP_NAMES key, "synthetic" or "report") for an input series."""
    stem = series_stem(input_path)
    if part == "synthetic":
        return f"{stem}_desc-synthetic_dwi{extension}"
    if part == "report":
        return f"{stem}_desc-synthesis_dwi.json"
    return f"{stem}_{MAP_NAMES[part]}{extension}"
