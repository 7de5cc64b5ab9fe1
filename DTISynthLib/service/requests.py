"""One request dataclass per job: its options, each option's command-line name and help, and its
checks, written once. The command line builds its parsers from these (add_arguments), reads a request
back from parsed arguments (from_arguments), and the Slicer job runner turns a request into the command
line of a child process (command_line): no option name is written twice.

A request checks itself when made (`check_values`): a value outside an option's choices, or one its
value type refuses (a count below 1, a fraction of 1 or more), is an InputError naming the option,
what it expects and what was given; from the command line, argparse refuses the same values first as a
usage error. Paths are kept as given (str or Path); the job reads them and names them in its errors.
Torch-free: the Slicer process imports this module.
"""

import argparse
import math
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from ..core.errors import InputError
from ..core.gradient_schemes import DEFAULT_B
from ..fit.tensor_fit import METHODS
from ..fit.tensor_maps import EIGEN_POLICIES, MAP_NAMES
from ..generators.intensity import INTENSITY_MODES
from ..generators.registry import DEFAULT_KIND, KINDS
from ..generators.runner import DEVICES, PRECISIONS
from ..io.files import FORMATS
from ..review.study import INTERPOLATIONS, ORIENTATIONS
from ..simulation.cohort import PAPER_GRID
from ..simulation.pairs import MODES
from ..simulation.signals import SCHEMES
from ..synthesis.assembly import ASSEMBLIES
from ..training.config import AMP_MODES


# ---------------------------------------------------------------- value types (argparse types, and checks)
def _number(text, convert, expected, accept):
    try:
        value = convert(text)
    except (TypeError, ValueError):
        value = None
    if value is None or not math.isfinite(value) or not accept(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, not {text!r}")
    return value


def positive_float(text):
    """A finite number > 0 (SNR, b-value in s/mm^2, learning rate)."""
    return _number(text, float, "a finite number > 0", lambda v: v > 0)


def non_negative_float(text):
    return _number(text, float, "a finite number >= 0", lambda v: v >= 0)


def positive_int(text):
    """An integer >= 1 (counts: subjects, epochs, batch size, jobs)."""
    return _number(text, int, "an integer >= 1", lambda v: v >= 1)


def non_negative_int(text):
    return _number(text, int, "an integer >= 0", lambda v: v >= 0)


def available_cores():
    """The CPU cores this process may run on (its affinity, which a batch system may restrict)."""
    import os

    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)


def worker_count(text):
    """A number of local worker processes: 0 up to this machine's cores (each worker holds the models:
    more processes than cores only share the same cores and multiply the memory)."""
    cores = len(available_cores())
    return _number(text, int, f"an integer from 0 to {cores} (this machine's cores)", lambda v: 0 <= v <= cores)


# Dask's communication schemes (distributed.comm); an address without one is tcp
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
SCHEDULER_TIMEOUT = 10  # seconds for an existing Dask scheduler to answer


def scheduler_address(text):
    """A Dask scheduler address: [scheme://]host:port with one of Dask's schemes."""
    scheme, _, rest = text.rpartition("://")
    host, _, port_text = rest.rpartition(":")
    if (scheme or "tcp") not in SCHEDULER_SCHEMES or not host or not port_text.isdigit() \
            or not 1 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a Dask scheduler address like tcp://host:8786 (schemes: "
                                         f"{', '.join(SCHEDULER_SCHEMES)}), not {text!r}")
    return text


def fraction(text):
    """A share in [0, 1): 0 means none."""
    return _number(text, float, "a fraction from 0 up to (not including) 1", lambda v: 0 <= v < 1)


def port(text):
    """A TCP port, 1-65535."""
    return _number(text, int, "a port number from 1 to 65535", lambda v: 1 <= v <= 65535)


MAX_GRID = 1024  # voxels per axis: 1024^3 float32 is already 4 GiB per volume


def parse_grid(text, dims=3):
    """'128x128x76' -> (128, 128, 76); with dims=2, '128x128' -> (128, 128). Each size 8-1024."""
    try:
        grid = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        grid = ()
    if len(grid) != dims or min(grid) < 8 or max(grid) > MAX_GRID:
        example = "x".join(["128", "128", "76"][:dims])
        raise argparse.ArgumentTypeError(f"expected a grid like {example} (each from 8 to {MAX_GRID}), not {text!r}")
    return grid


def parse_slice_grid(text):
    return parse_grid(text, dims=2)


def comma_list(text):
    """'a,b' -> ['a', 'b'] (empty items dropped)."""
    return [item for item in text.split(",") if item]


def parse_directions(text):
    """'all' or a comma list of 1-6 -> sorted indices (an option type: a bad value is a usage error)."""
    if text == "all":
        return list(range(1, 7))
    try:
        values = sorted({int(v) for v in text.split(",")})
    except ValueError:
        values = []
    if not values or min(values) < 1 or max(values) > 6:
        raise argparse.ArgumentTypeError(f"expected 'all' or a comma list of numbers 1-6, not {text!r}")
    return values


def parse_schemes(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or set(names) - set(SCHEMES):
        raise argparse.ArgumentTypeError(f"expected a comma list from {','.join(SCHEMES)}, not {text!r}")
    return names


# Value types whose parsed value is a list or tuple: written back as text by joining.
_JOINED = {comma_list: ",", parse_directions: ",", parse_schemes: ",", parse_slice_grid: "x", parse_grid: "x"}


# ---------------------------------------------------------------- options
def option(flag=None, default=MISSING, help=None, **argparse_keywords):
    """A request field with its command-line option. flag: "--dwi" (None: a positional argument, named
    as the field); no default: required; argparse_keywords: type, choices, action, metavar."""
    metadata = {"flag": flag, "argparse": dict(argparse_keywords, help=help)}
    return field(default=default, metadata=metadata)


def _options(request_class):
    return [f for f in fields(request_class) if "flag" in f.metadata]


def _label(f):
    return f.metadata["flag"] or f.name


def add_arguments(parser, request_class):
    """Add a request's options to an argparse parser."""
    for f in _options(request_class):
        keywords = dict(f.metadata["argparse"])
        if f.metadata["flag"] is None:
            parser.add_argument(f.name, **keywords)
            continue
        if f.default is MISSING:
            keywords["required"] = True
        else:
            keywords["default"] = f.default
        parser.add_argument(f.metadata["flag"], dest=f.name, **keywords)


def from_arguments(request_class, arguments):
    """The request from argparse's parsed arguments."""
    return request_class(**{f.name: getattr(arguments, f.name) for f in _options(request_class)})


def _text(f, value):
    joiner = _JOINED.get(f.metadata["argparse"].get("type"))
    return joiner.join(str(v) for v in value) if joiner else str(value)


def command_line(request):
    """The `dtisynth` arguments that make this request: [job, positional..., --option value, ...];
    options left at their default are not written."""
    arguments = [request.JOB, *request.SUBCOMMAND]
    for f in _options(type(request)):
        value = getattr(request, f.name)
        action = f.metadata["argparse"].get("action")
        if f.metadata["flag"] is None:
            arguments.append(_text(f, value))
        elif f.default is not MISSING and value == f.default or value is None:
            continue
        elif action == "store_true":
            arguments.append(f.metadata["flag"])
        elif action == "append":
            for item in value:
                arguments += [f.metadata["flag"], _text(f, item)]
        elif f.metadata["argparse"].get("nargs") in ("+", "*"):
            arguments += [f.metadata["flag"], *(str(item) for item in value)]
        else:
            arguments += [f.metadata["flag"], _text(f, value)]
    return arguments


def check_values(request):
    """Refuse a value outside an option's choices or refused by its value type (InputError naming the
    option). Values already parsed (lists, tuples) are checked as their text."""
    for f in _options(type(request)):
        value, keywords = getattr(request, f.name), f.metadata["argparse"]
        if value is None or (f.default is not MISSING and value == f.default):
            continue
        if "choices" in keywords and value not in keywords["choices"]:
            raise InputError(_label(f), f"one of {', '.join(map(str, keywords['choices']))}", repr(value))
        convert = keywords.get("type")
        if convert is not None and convert is not str:
            try:
                convert(_text(f, value) if not isinstance(value, str) else value)
            except argparse.ArgumentTypeError as exc:
                expected = str(exc).removeprefix("expected ").split(", not ")[0]
                raise InputError(_label(f), expected, repr(value)) from None


class Request:
    """What every request has: its checks on construction, and its command line. JOB: the `dtisynth`
    command; SUBCOMMAND: its sub-command, if any (review create)."""

    JOB = None
    SUBCOMMAND = ()

    def __post_init__(self):
        check_values(self)

    def command_line(self):
        return command_line(self)


# ---------------------------------------------------------------- the jobs' requests
@dataclass(frozen=True, kw_only=True)
class FitRequest(Request):
    """`dtisynth fit`: tensors and maps of a DWI."""

    JOB = "fit"
    dwi: Path = option(None, help="DWI: .nii/.nii.gz (+ FSL bval/bvec), .nrrd/.nhdr (Slicer DWI) or a DICOM folder")
    bval: Path = option("--bval", None, help="FSL b-values file (default: beside the NIfTI, same name)")
    bvec: Path = option("--bvec", None, help="FSL b-vectors file (default: beside the NIfTI, same name)")
    out: Path = option("--out", help="output folder")
    mask: Path = option("--mask", None, help="brain mask on the DWI grid (default: computed from the mean b=0)")
    method: str = option("--method", "iwls", choices=METHODS,
                         help="ols, wls (OLS-predicted weights, as dipy) or iwls (MRtrix3's default; default)")
    maps: str = option("--maps", ",".join(MAP_NAMES), help=f"comma list from {','.join(MAP_NAMES)} (default: all)")
    format: str = option("--format", "nifti", choices=FORMATS, help="output format (default nifti)")
    eigenvalues: str = option("--eigenvalues", "keep", choices=EIGEN_POLICIES,
                              help="negative eigenvalues: keep (as MRtrix3; default) or clip to 0 (as dipy)")
    shell: float = option("--shell", None, type=float, help="b-value of the shell to fit in multi-shell data (s/mm^2)")


@dataclass(frozen=True, kw_only=True)
class SynthesisRequest(Request):
    """`dtisynth synthesize`: a synthetic 6-direction DTI (and maps) from a 3-direction DWI."""

    JOB = "synthesize"
    dwi: Path = option("--dwi", help="3-direction DWI with b=0 (NIfTI + bval/bvec, NRRD or DICOM folder)")
    bval: Path = option("--bval", None)
    bvec: Path = option("--bvec", None)
    b0: Path = option("--b0", None, help="reference b=0 to register the DWI to (default: the DWI's own b=0)")
    models: Path = option("--models", None, help="model folder (default: the shipped tensor-unet set)")
    out: Path = option("--out", help="output folder")
    device: str = option("--device", "auto", choices=DEVICES, help="auto (default: a CUDA GPU if any), cpu or cuda")
    force_b: bool = option("--force-b", False, action="store_true", help="accept a b-value other than the models'")
    precision: str = option("--precision", "auto", choices=PRECISIONS,
                            help="auto (default: bf16 where the hardware computes it natively, else fp32), fp32, or "
                                 "bf16 (autocast + channels_last with an fp32 output layer)")
    output_b: float = option("--output-b", None, type=positive_float,
                             help="b-value of the synthetic DTI in s/mm^2 (default: the input's for packages that "
                                  "take a range of b, such as the diagonal baseline; the package's b otherwise)")
    assembly: str = option("--assembly", None, choices=ASSEMBLIES,
                           help="physics (the tensor's diagonal, so MD, as the x, y, z DWI measured it; only the rest "
                                "generated) or network (the generators' outputs as they are: the seed paper's way for "
                                "pix2pix, the denoised tensor for tensor-unet). Default: the package's own (manifest "
                                "'assembly'), else physics")


@dataclass(frozen=True, kw_only=True)
class EvaluationRequest(Request):
    """`dtisynth evaluate`: synthetic against acquired DTI (atlas ROIs, statistics, report)."""

    JOB = "evaluate"
    original: Path = option("--original", help="the acquired DTI (b=0 + 6 or more directions), or a cohort folder "
                                               "of <subject>_acq-dti6_dwi files")
    synthetic: Path = option("--synthetic", help="a `dtisynth synthesize` output folder (or its synthetic_dti file); "
                                                 "for a cohort, a folder with one such folder per subject")
    out: Path = option("--out", help="output folder")
    atlas: list = option("--atlas", None, action="append",
                         help="atlas folder (atlas_dseg.nii.gz, atlas_b0 / atlas_FA.nii.gz, labels.tsv); repeat for "
                              "several; 'embedded' is the phantom atlas (the default)")
    rois: list = option("--rois", None, type=comma_list, help="comma-separated ROIs (default: the seed paper's five)")
    jobs: int = option("--jobs", 1, type=positive_int, help="subjects evaluated in parallel (cohort mode)")
    realism_voxels: int = option("--realism-voxels", 250_000, type=positive_int,
                                 help="training voxels of each realism-index autoencoder (paper 2: 250000)")
    realism_epochs: int = option("--realism-epochs", 50, type=non_negative_int,
                                 help="epochs of each realism-index autoencoder (paper 2: 50; 0: no realism index)")


@dataclass(frozen=True, kw_only=True)
class PairsRequest(Request):
    """`dtisynth pairs`: a 3-direction input and a 6-direction target from a multi-direction scan."""

    JOB = "pairs"
    dwi: Path = option(None, help="multi-direction DWI (NIfTI + bval/bvec, NRRD or DICOM folder)")
    bval: Path = option("--bval", None)
    bvec: Path = option("--bvec", None)
    out: Path = option("--out", help="output folder")
    mode: str = option("--mode", "nearest", choices=MODES,
                       help="nearest measured volumes (default) or signals predicted from the full tensor fit")
    b: float = option("--b", DEFAULT_B, type=positive_float, help="b-value of predicted signals (tensor mode)")
    shell: float = option("--shell", None, type=float, help="shell to use in multi-shell data (s/mm^2)")


@dataclass(frozen=True, kw_only=True)
class RealismRequest(Request):
    """`dtisynth realism`: paper 2's simulation schemes ranked by how well each one's autoencoder
    reconstructs a real scan."""

    JOB = "realism"
    real: Path = option("--real", help="a real multi-direction DWI (NIfTI + bval/bvec, NRRD, DICOM)")
    bval: Path = option("--bval", None)
    bvec: Path = option("--bvec", None)
    shell: float = option("--shell", None, type=float, help="shell to use in multi-shell data (s/mm^2)")
    schemes: tuple = option("--schemes", tuple(SCHEMES), type=parse_schemes,
                            help="comma list (default all four: syn,sampled,sample-and-mean,random-wm)")
    out: Path = option("--out", help="output folder")
    train_voxels: int = option("--train-voxels", 250_000, type=positive_int, help="per scheme (paper 2: 250000)")
    validation_voxels: int = option("--validation-voxels", 50_000, type=positive_int,
                                    help="per scheme (paper 2: 50000)")
    epochs: int = option("--epochs", 50, type=positive_int, help="paper 2: 50")
    min_hidden: int = option("--min-hidden", 1, type=positive_int,
                             help="units in each hidden layer at least (paper 2: 1; 6, a tensor's degrees of freedom, "
                                  "keeps the 1/8 bottleneck of 15-32 directions from losing the tensor)")
    seed: int = option("--seed", 0, type=int)


@dataclass(frozen=True, kw_only=True)
class TrainingRequest(Request):
    """`dtisynth train`: paired data -> a model package of the chosen generator kind."""

    JOB = "train"
    data: Path = option("--data", help="folder of <name>_acq-dwi3_dwi / <name>_acq-dti6_dwi pairs (tensor-unet uses "
                                       "only the 6-direction DTIs: noise-free phantom subjects, tensor-mode pairs of "
                                       "real scans)")
    out: Path = option("--out", help="model folder (manifest.json + safetensors weights)")
    kind: str = option("--kind", None, choices=KINDS,  # the registry itself: kinds registered later count
                       help=f"generator kind (default: the --init-from package's, else {DEFAULT_KIND}: the seed "
                            "paper's six pix2pix models)")
    init_from: Path = option("--init-from", None,
                             help="a model package to fine-tune on DATA (adapt a shipped set to your scanner): its "
                                  "kind, architecture and weights are the start; epochs and learning rate default to "
                                  "fine-tuning's (10 epochs, lr 1e-4); the package records it as its parent "
                                  "(tensor-unet packages)")
    add_direction_channels: bool = option("--add-direction-channels", False, action="store_true",
                                          help="with --init-from a tensor-unet package without direction channels (12 "
                                               "inputs): the new network also reads the measured directions (their "
                                               "first-layer weights start at zero: training starts from the parent's "
                                               "outputs) and learns rotated and skewed triples")
    direction: tuple = option("--direction", (1, 2, 3, 4, 5, 6), type=parse_directions,
                              help="all (default) or a comma list of 1-6")
    epochs: int = option("--epochs", None, type=positive_int,
                         help="epochs at constant learning rate (default 100; 10 with --init-from)")
    decay_epochs: int = option("--decay-epochs", 0, type=non_negative_int,
                               help="further epochs of linear decay (default 0)")
    batch_size: int = option("--batch-size", 1, type=positive_int)
    accumulate: int = option("--accumulate", 1, type=positive_int, help="micro-batches per optimiser step")
    workers: int = option("--workers", None, type=non_negative_int,
                          help="tensor-unet: processes drawing the batches while the network trains (default 1 on "
                               "a GPU, 0 on the CPU, where the step takes every core; 0: drawn in the training "
                               "process; at most one per micro-batch stream is used); the same batches, so the same "
                               "weights, with any number")
    lr: float = option("--lr", None, type=positive_float, help="learning rate (default 2e-4; 1e-4 with --init-from)")
    lambda_l1: float = option("--lambda-l1", 100.0, type=non_negative_float)
    ngf: int = option("--ngf", None, type=positive_int, help="generator width (default 64; --init-from: its own)")
    ndf: int = option("--ndf", 64, type=positive_int)
    depth: int = option("--depth", None, type=positive_int,
                        help="down-samplings: 7 (default) for 128 x 128, 8 for 256 x 256; --init-from: its own")
    grid: tuple = option("--grid", None, type=parse_slice_grid, help="slice grid H x W (default: from the data)")
    intensity: str = option("--intensity", None, choices=INTENSITY_MODES,
                            help="paper (raw, clipped at 255; the default of pix2pix-per-direction) or relative "
                                 "(signal / b=0, full precision); tensor-unet always works on signal / b=0 and "
                                 "refuses paper")
    quantise_8bit: bool = option("--quantise-8bit", False, action="store_true",
                                 help="8-bit values, as the paper's PNG files")
    validation_fraction: float = option("--validation-fraction", 0.1, type=fraction)
    validation_subjects: list = option("--validation-subjects", None, type=comma_list,
                                       help="comma list of subject names to hold out for validation (instead of a "
                                            "random --validation-fraction of them)")
    no_register: bool = option("--no-register", False, action="store_true", help="the DWI is already on the DTI grid")
    flip_augment: bool = option("--flip-augment", False, action="store_true",
                                help="left-right flips, pairing each direction with its mirrored partner")
    no_dropout: bool = option("--no-dropout", False, action="store_true")
    seed: int = option("--seed", 0, type=int)
    nondeterministic: bool = option("--nondeterministic", False, action="store_true",
                                    help="allow faster non-deterministic kernels")
    amp: str = option("--amp", "none", choices=AMP_MODES, help="autocast: bf16 (CPU / GPU), fp16 (GPU)")
    channels_last: bool = option("--channels-last", False, action="store_true")
    device: str = option("--device", "auto", choices=DEVICES, help="auto (default: a CUDA GPU if any), cpu or cuda")
    weights_dtype: str = option("--weights-dtype", "float32", choices=("float32", "float16"))
    resume: bool = option("--resume", False, action="store_true",
                          help="continue each direction from its last checkpoint")


@dataclass(frozen=True, kw_only=True)
class DemoRequest(Request):
    """`dtisynth demo`: simulated phantom subjects, their synthetic DTIs, the comparison and evaluation."""

    JOB = "demo"
    out: Path = option("--out", help="output folder")
    models: Path = option("--models", None, help="model folder (default: the shipped tensor-unet set)")
    subjects: int = option("--subjects", 3, type=positive_int, help="phantom subjects (default 3)")
    grid: tuple = option("--grid", PAPER_GRID, type=parse_grid,
                         help="each subject's DTI grid over the seed paper's field of view (default 128x128x76: its "
                              "1.72 x 1.72 x 2 mm voxels)")
    jobs: int = option("--jobs", 2, type=positive_int, help="subjects evaluated in parallel")
    realism_voxels: int = option("--realism-voxels", 250_000, type=positive_int,
                                 help="training voxels of each realism-index autoencoder (paper 2: 250000)")
    realism_epochs: int = option("--realism-epochs", 50, type=non_negative_int,
                                 help="epochs of each realism-index autoencoder (paper 2: 50; 0: no realism index)")


REVIEW_HOST, REVIEW_PORT = "127.0.0.1", 8765


@dataclass(frozen=True, kw_only=True)
class ReviewStudyRequest(Request):
    """`dtisynth review create`: a blinded noise-review study of original and synthetic maps."""

    JOB, SUBCOMMAND = "review", ("create",)
    original: Path = option("--original", help="the acquired DTI, or a cohort folder of <subject>_acq-dti6_dwi files "
                                               "(as evaluate)")
    synthetic: Path = option("--synthetic", help="a `dtisynth synthesize` output folder, or a folder of one per "
                                                 "subject (as evaluate)")
    out: Path = option("--out", help="the study folder (new)")
    maps: str = option("--maps", "color,fa,md,ad,rd", help="maps to review (default color,fa,md,ad,rd)")
    readers: str = option("--readers", "2", help="number of readers, or a comma list of their names (default 2)")
    seed: int = option("--seed", 0, type=int, help="seed of every reader's case order and sides")
    name: str = option("--name", None, help="study name (default: the folder's name)")
    training: int = option("--practice", 0, type=int,
                           help="practice cases each reader answers first, never analysed and never study cases: "
                                "from --practice-original / --practice-synthetic, or the shipped brain phantom at two "
                                "noise levels (default 0)")
    practice_original: Path = option("--practice-original", None,
                                     help="practice subjects' acquired DTI (or cohort folder), none of them a study "
                                          "subject (default: generated practice pairs)")
    practice_synthetic: Path = option("--practice-synthetic", None,
                                      help="their synthesize output folder(s), as --synthetic")
    orientation: str = option("--orientation", "radiological", choices=ORIENTATIONS,
                              help="radiological (default: the patient's left on the right) or neurological")
    interpolation: str = option("--interpolation", "nearest", choices=INTERPOLATIONS,
                                help="nearest (default: linear smooths the noise being judged) or linear")
    host: str = option("--host", REVIEW_HOST, help="host of the printed links, where `serve` will listen (default "
                                                   f"{REVIEW_HOST}; recorded: serve defaults to it)")
    port: int = option("--port", REVIEW_PORT, type=port,
                       help=f"port of the printed links (default {REVIEW_PORT}; recorded: serve defaults to it)")


@dataclass(frozen=True, kw_only=True)
class BidsRequest(Request):
    """`dtisynth bids BIDS_DIR OUT_DIR participant|group`: a BIDS dataset's sessions synthesized into BIDS
    derivatives (a BIDS App), on Dask."""

    JOB = "bids"
    bids_dir: Path = option(None, help="the BIDS dataset (sub-*/[ses-*/]dwi/*_dwi.nii.gz with .bval / .bvec)")
    out_dir: Path = option(None, help="the derivatives folder")
    level: str = option(None, choices=("participant", "group"),
                        help="participant: synthesize each session's 3-direction DWIs; group: evaluate them against "
                             "the sessions' acquired DTIs (OUT_DIR/group/)")
    participant_label: list = option("--participant-label", None, nargs="+",
                                     help="participants to process (labels, with or without sub-; default all)")
    session_label: list = option("--session-label", None, nargs="+",
                                 help="sessions to process (labels, with or without ses-; default all)")
    workers: int = option("--workers", None, type=worker_count,
                          help="worker processes of the local Dask cluster, one thread each, at most this machine's "
                               "cores (default: the number of cores; 0: no Dask, one session after another)")
    scheduler: str = option("--scheduler", None, type=scheduler_address,
                            help="address of an existing Dask scheduler (tcp://host:port, e.g. a dask-jobqueue SLURM "
                                 f"cluster's), reachable within {SCHEDULER_TIMEOUT} s, to run on instead of a local "
                                 "cluster (not with --workers: the scheduler's workers run the sessions)")
    models: Path = option("--models", None, help="model folder (default: the shipped tensor-unet set)")
    device: str = option("--device", "auto", choices=DEVICES, help="auto (default: a CUDA GPU if any), cpu or cuda")
    skip_bids_validation: bool = option("--skip-bids-validation", False, action="store_true",
                                        help="participant level: do not run the official BIDS validator on BIDS_DIR "
                                             "(by default its errors are reported; sessions DTISynth can read run "
                                             "anyway)")
    realism_voxels: int = option("--realism-voxels", 250_000, type=positive_int,
                                 help="group level: training voxels of each realism-index autoencoder "
                                      "(paper 2: 250000)")
    realism_epochs: int = option("--realism-epochs", 50, type=non_negative_int,
                                 help="group level: epochs of each realism-index autoencoder (paper 2: 50; 0: none)")

    def __post_init__(self):
        super().__post_init__()
        if self.scheduler and self.workers is not None:
            raise InputError("--workers", "no --workers with --scheduler (the scheduler's own workers run the "
                             "sessions)", f"--workers {self.workers} with --scheduler {self.scheduler}")
