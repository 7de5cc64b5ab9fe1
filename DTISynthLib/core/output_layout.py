"""The names of every file and folder DTISynth's jobs write, in one place.

Each class takes the job's output folder (or a staging folder standing in for it) and names what
lies inside; readers of results (evaluation, the MRML adapter, the Slicer job runner, the demo) use
the same classes, so a name changes here and nowhere else.
"""

from pathlib import Path

EXTENSIONS = {"nifti": ".nii.gz", "nrrd": ".nrrd"}
# map name (tensor_maps.MAP_NAMES, "s0" and the kinds' maps of generators.registry.KIND_MAPS) -> file stem
MAP_FILE_STEMS = {"fa": "fa", "md": "md", "ad": "ad", "rd": "rd", "color": "color_fa", "v1": "v1",
                  "evals": "eigenvalues", "s0": "s0", "v1_confidence": "v1_confidence",
                  "md_uncertainty": "md_uncertainty"}


class FitOutput:
    """`dtisynth fit --out DIR`: tensor, mask and maps in one format, and fit.json describing them."""

    def __init__(self, folder, fmt="nifti"):
        self.folder, self.extension = Path(folder), EXTENSIONS[fmt]

    @property
    def tensor(self):
        return self.folder / f"tensor{self.extension}"

    @property
    def mask(self):
        return self.folder / f"mask{self.extension}"

    def map(self, name):
        """The file of map `name` (fa, md, ad, rd, color, v1, evals, s0)."""
        return self.folder / f"{MAP_FILE_STEMS[name]}{self.extension}"

    @property
    def description(self):
        return self.folder / "fit.json"


class SynthesisOutput:
    """`dtisynth synthesize --out DIR`: the synthetic DTI (NIfTI + FSL bval / bvec, Slicer NRRD), its
    maps (a FitOutput in NIfTI) and synthesis.json."""

    def __init__(self, folder):
        self.folder = Path(folder)

    @property
    def dti_nifti(self):
        return self.folder / "synthetic_dti.nii.gz"

    @property
    def dti_nrrd(self):
        return self.folder / "synthetic_dti.nrrd"

    @property
    def maps(self):
        return FitOutput(self.folder / "maps")

    @property
    def report(self):
        return self.folder / "synthesis.json"

    def find_dti(self):
        """The synthetic DTI in this folder (NIfTI first, then NRRD), or None."""
        candidates = sorted(self.folder.glob("synthetic_dti.nii*")) + sorted(self.folder.glob("synthetic_dti.nrrd"))
        return candidates[0] if candidates else None


class EvaluationOutput:
    """`dtisynth evaluate --out DIR`: tables, evaluation.json, figures, ROI label maps, report.html."""

    def __init__(self, folder):
        self.folder = Path(folder)

    @property
    def roi_comparison(self):
        """Per ROI and map, original and synthetic across subjects with the paired t-test (the seed
        paper's Table 2 layout, hence the file's name)."""
        return self.folder / "table2.csv"

    @property
    def roi_statistics(self):
        return self.folder / "roi_statistics.csv"

    @property
    def bland_altman(self):
        return self.folder / "bland_altman.csv"

    @property
    def similarity(self):
        return self.folder / "similarity.csv"

    @property
    def realism_index(self):
        return self.folder / "realism_index.csv"

    @property
    def v1_calibration(self):
        return self.folder / "v1_calibration.csv"

    @property
    def v1_calibration_figure(self):
        return self.figures / "v1_calibration.png"

    @property
    def summary(self):
        return self.folder / "evaluation.json"

    @property
    def report(self):
        return self.folder / "report.html"

    @property
    def figures(self):
        return self.folder / "figures"

    @property
    def bland_altman_figure(self):
        return self.figures / "bland_altman.png"

    def montage(self, subject):
        return self.figures / f"montage_{subject}.png"

    @property
    def rois(self):
        return self.folder / "rois"

    def roi_labels(self, subject):
        """Subject's ROI label map (label k = the k-th ROI of rois.tsv) on the original's grid."""
        return self.rois / f"{subject}_rois.nii.gz"

    @property
    def roi_table(self):
        return self.rois / "rois.tsv"


class DemoOutput:
    """`dtisynth demo --out DIR`: the simulated subjects, their synthetic DTIs, sub-001's acquired maps,
    the montage, the ROI table and the cohort evaluation."""

    def __init__(self, folder):
        self.folder = Path(folder)

    @property
    def input(self):
        return self.folder / "input"

    def synthetic(self, subject=None):
        return self.folder / "synthetic" if subject is None else SynthesisOutput(self.folder / "synthetic" / subject)

    @property
    def acquired(self):
        return FitOutput(self.folder / "acquired")

    @property
    def brain_mask(self):
        return self.input / "brain_mask.nii.gz"

    @property
    def montage(self):
        return self.folder / "montage.png"

    @property
    def roi_values(self):
        return self.folder / "roi_values.tsv"

    @property
    def evaluation(self):
        return EvaluationOutput(self.folder / "evaluation")


class StudyFolder:
    """A reader study (`dtisynth review create --out DIR`): the database and the images, under opaque
    names, that readers load. Nothing in it names an image synthetic or original."""

    def __init__(self, folder):
        self.folder = Path(folder)

    @property
    def database(self):
        return self.folder / "study.sqlite"

    @property
    def images(self):
        return self.folder / "images"

    def image(self, opaque_name):
        return self.images / opaque_name


class ReviewAnalysisOutput:
    """`dtisynth review analyze STUDY --out DIR`: the tables, analysis.json, the figure, report.html."""

    def __init__(self, folder):
        self.folder = Path(folder)

    @property
    def noisier(self):
        return self.folder / "noisier.csv"

    @property
    def readers(self):
        return self.folder / "readers.csv"

    @property
    def agreement(self):
        return self.folder / "agreement.csv"

    @property
    def by_confidence(self):
        return self.folder / "by_confidence.csv"

    @property
    def comments(self):
        return self.folder / "comments.csv"

    @property
    def sides(self):
        return self.folder / "sides.csv"

    @property
    def summary(self):
        return self.folder / "analysis.json"

    @property
    def report(self):
        return self.folder / "report.html"

    @property
    def figure(self):
        return self.folder / "noisier.png"


class CohortOutput:
    """`dtisynth bids BIDS_DIR OUT_DIR`: BIDS derivatives (io.bids names each session's files in its
    folder), their description, the table of sessions, each session's record (written last: the session
    is done) and the group level's evaluation with the table of the sessions it holds."""

    RECORD_SUFFIX = "_dtisynth.json"

    def __init__(self, folder):
        self.folder = Path(folder)

    @property
    def description(self):
        return self.folder / "dataset_description.json"

    @property
    def lock(self):
        """Held (flock) by the run writing the folder; names its process."""
        return self.folder / ".dtisynth.lock"

    @property
    def sessions(self):
        return self.folder / "dtisynth_sessions.tsv"

    def record(self, session_folder, key):
        """The record of a session (its dwi folder relative to the dataset, its sub-/ses- key)."""
        return self.folder / session_folder / f"{key}{self.RECORD_SUFFIX}"

    @property
    def group(self):
        return EvaluationOutput(self.folder / "group")

    @property
    def group_sessions(self):
        return self.folder / "group" / "sessions.tsv"


class SlicerJobFolder:
    """The Slicer job runner's temporary folder: the exported input nodes, the child's synthesis and
    evaluation folders and each command's stderr."""

    def __init__(self, folder):
        self.folder = Path(folder)

    @property
    def dwi(self):
        return self.folder / "dwi.nrrd"

    @property
    def reference_b0(self):
        return self.folder / "b0.nii.gz"

    @property
    def acquired(self):
        return self.folder / "acquired.nrrd"

    @property
    def acquired_b0(self):
        return self.folder / "acquired_b0.nii.gz"

    @property
    def synthesis(self):
        return SynthesisOutput(self.folder / "synthetic")

    @property
    def evaluation(self):
        return EvaluationOutput(self.folder / "evaluation")

    def stderr(self, number):
        return self.folder / f"stderr_{number}.log"


# Paired acquisitions (what `simulate cohort` and `pairs` write and `train` / `evaluate` read):
# <stem>_acq-dwi3_dwi.<ext> (b=0 + x, y, z) beside <stem>_acq-dti6_dwi.<ext> (b=0 + 6 directions).
DWI3 = "dwi3"
DTI6 = "dti6"


def acquisition_name(stem, acquisition, extension=".nii.gz"):
    """File name of one acquisition (DWI3 or DTI6) of a subject or scan."""
    return f"{stem}_acq-{acquisition}_dwi{extension}"


def acquisition_subject(file_name):
    """The stem of an acquisition's file name (`sub-001` of `sub-001_acq-dti6_dwi.nii.gz`), or None."""
    return file_name.split("_acq-")[0] if "_acq-" in file_name else None


PAIRS_REPORT = "pairs.json"


class RealismOutput:
    """`dtisynth realism --real DWI --out DIR`: per-scheme scores, paired tests, realism.json, the figure."""

    def __init__(self, folder):
        self.folder = Path(folder)

    @property
    def schemes(self):
        return self.folder / "scheme_scores.csv"

    @property
    def tests(self):
        return self.folder / "paired_tests.csv"

    @property
    def summary(self):
        return self.folder / "realism.json"

    @property
    def figure(self):
        return self.folder / "scheme_scores.png"
