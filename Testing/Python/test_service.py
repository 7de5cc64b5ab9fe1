"""The service layer's requests: each one's command line parses back to the same request through the
real `dtisynth` parser, bad values are refused naming the option, and the Slicer runner and the jobs
write no option name of their own."""

import ast
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from DTISynthLib import cli
from DTISynthLib.core.errors import InputError
from DTISynthLib.service import requests
from DTISynthLib.service.requests import (
    BidsRequest,
    DemoRequest,
    EvaluationRequest,
    FitRequest,
    PairsRequest,
    RealismRequest,
    ReviewStudyRequest,
    SynthesisRequest,
    TrainingRequest,
    from_arguments,
)

LIB = Path(__file__).resolve().parents[2] / "DTISynthLib"

# every option away from its default (so that command_line must write it), as a user might give them
EXAMPLES = [
    FitRequest(dwi="dwi.nii.gz", bval="dwi.bval", bvec="dwi.bvec", out="fit out", mask="mask.nii.gz", method="ols",
               maps="fa,md", format="nrrd", eigenvalues="clip", shell=1000.0),
    SynthesisRequest(dwi="a b/dwi.nii.gz", bval="x.bval", bvec="x.bvec", b0="b0.nii.gz", models="models", out="o",
                     device="cpu", force_b=True, precision="bf16", output_b=1500.0, assembly="network"),
    EvaluationRequest(original="dti.nii.gz", synthetic="syn", out="ev", atlas=["embedded", "my atlas"],
                      rois=["thalamus", "splenium_corpus_callosum"], jobs=2, realism_voxels=1000, realism_epochs=0),
    PairsRequest(dwi="dwi.nii.gz", bval="b", bvec="v", out="p", mode="tensor", b=1200.0, shell=2000.0),
    RealismRequest(real="r.nii.gz", bval="b", bvec="v", shell=1000.0, schemes=["syn", "random-wm"], out="o",
                   train_voxels=10, validation_voxels=5, epochs=2, min_hidden=6, seed=3),
    TrainingRequest(data="d", out="m", kind="tensor-unet", direction=[1, 3], epochs=2, decay_epochs=1, batch_size=4,
                    accumulate=2, workers=2, lr=1e-3, lambda_l1=10.0, ngf=8, ndf=8, depth=5, grid=(32, 48), intensity="relative",
                    quantise_8bit=True, validation_fraction=0.2, validation_subjects=["s1", "s2"], no_register=True,
                    flip_augment=True, no_dropout=True, seed=7, nondeterministic=True, amp="bf16", channels_last=True,
                    device="cpu", weights_dtype="float16", resume=True, init_from="parent models",
                    add_direction_channels=True),
    DemoRequest(out="demo out", models="m", subjects=2, grid=(64, 64, 24), jobs=1, realism_voxels=100,
                realism_epochs=0),
    ReviewStudyRequest(original="dti.nii.gz", synthetic="syn", out="study", maps="fa,md", readers="ann,bob", seed=3,
                       name="pilot", training=2, orientation="neurological", interpolation="linear",
                       host="0.0.0.0", port=9001, practice_original="practice", practice_synthetic="practice-syn"),
    BidsRequest(bids_dir="ds 1", out_dir="derivatives/dtisynth", level="participant", participant_label=["01", "02"],
                session_label=["1"], scheduler="tcp://10.0.0.1:8786", models="m", device="cpu",
                skip_bids_validation=True, realism_voxels=1000, realism_epochs=0),
    BidsRequest(bids_dir="ds", out_dir="out", level="participant", workers=1, participant_label=["01"],
                session_label=["1"], models="m", device="cpu", skip_bids_validation=True, realism_voxels=1000,
                realism_epochs=0),
]


def _as_text(request):
    """Field values as text, as they come back from a command line (paths and numbers written out)."""
    def text(value):
        if isinstance(value, (list, tuple)):
            return [text(v) for v in value]
        return str(value) if isinstance(value, Path) else value
    return {f.name: text(getattr(request, f.name)) for f in fields(request)}


@pytest.mark.parametrize("request_", EXAMPLES, ids=lambda r: r.JOB)
def test_a_request_and_its_command_line_parse_back_to_the_same_request(request_):
    parser = cli.build_parser([request_.JOB])
    argv = request_.command_line()
    assert argv[:1 + len(request_.SUBCOMMAND)] == [request_.JOB, *request_.SUBCOMMAND]
    back = from_arguments(type(request_), parser.parse_args(argv))
    normalise = {k: list(v) if isinstance(v, tuple) else v for k, v in _as_text(back).items()}
    expected = {k: list(v) if isinstance(v, tuple) else v for k, v in _as_text(request_).items()}
    assert normalise == expected
    written = {f.name for f in fields(request_) if f.metadata["flag"] and f.metadata["flag"] in argv}
    # bids takes --workers or --scheduler, never both: its two examples write one each
    exclusive = {"scheduler"} if request_.JOB == "bids" and request_.workers is not None else \
        {"workers"} if request_.JOB == "bids" else set()
    assert written == {f.name for f in fields(request_) if f.metadata["flag"]} - exclusive, "an option left out"


def test_defaults_are_not_written_and_the_parser_gives_the_same_defaults():
    request = SynthesisRequest(dwi="dwi.nii.gz", out="o")
    assert request.command_line() == ["synthesize", "--dwi", "dwi.nii.gz", "--out", "o"]
    for request_class in (FitRequest, SynthesisRequest, EvaluationRequest, PairsRequest, RealismRequest,
                          TrainingRequest, DemoRequest, ReviewStudyRequest, BidsRequest):
        parser = cli.build_parser([request_class.JOB])
        required = [f for f in fields(request_class) if f.default is MISSING]
        argv = [request_class.JOB, *request_class.SUBCOMMAND]
        given = {f.name: f.metadata["argparse"].get("choices", ["x"])[0] for f in required}
        for f in required:
            argv += [f.metadata["flag"], given[f.name]] if f.metadata["flag"] else [given[f.name]]
        parsed = from_arguments(request_class, parser.parse_args(argv))
        made = request_class(**given)
        for f in fields(request_class):
            if f.default is not MISSING:
                # argparse applies an option's type to a default given as text; ours are values already
                assert getattr(parsed, f.name) == getattr(made, f.name) or list(getattr(parsed, f.name)) == list(
                    getattr(made, f.name)), (request_class.__name__, f.name)


@pytest.mark.parametrize("make, option, expected", [
    (lambda: SynthesisRequest(dwi="d", out="o", device="tpu"), "--device", "one of auto, cpu, cuda"),
    (lambda: SynthesisRequest(dwi="d", out="o", output_b=-5.0), "--output-b", "a finite number > 0"),
    (lambda: EvaluationRequest(original="a", synthetic="b", out="o", jobs=0), "--jobs", "an integer >= 1"),
    (lambda: TrainingRequest(data="d", out="o", validation_fraction=1.0), "--validation-fraction", "a fraction"),
    (lambda: TrainingRequest(data="d", out="o", direction=[7]), "--direction", "'all' or a comma list of numbers 1-6"),
    (lambda: TrainingRequest(data="d", out="o", kind="gan"), "--kind", "tensor-unet"),
    (lambda: RealismRequest(real="r", out="o", schemes=["syn", "gaussian"]), "--schemes", "a comma list from"),
    (lambda: FitRequest(dwi="d", out="o", method="nlls"), "--method", "one of ols, wls, iwls"),
])
def test_a_request_refuses_a_bad_value_naming_the_option(make, option, expected):
    with pytest.raises(InputError) as refused:
        make()
    message = str(refused.value)
    assert message.startswith(option) and expected in message, message


def test_requests_need_their_required_options_and_are_frozen():
    with pytest.raises(TypeError, match="out"):
        SynthesisRequest(dwi="d")
    request = SynthesisRequest(dwi="d", out="o")
    with pytest.raises(AttributeError):
        request.device = "cuda"


def test_no_option_name_is_written_outside_the_requests():
    """The Slicer runner builds its child's command lines from requests; the jobs whose options are a
    request's add no option of their own but --jsonl."""
    runner = ast.parse((LIB / "slicer" / "job_runner.py").read_text())
    options = [n.value for n in ast.walk(runner) if isinstance(n, ast.Constant) and isinstance(n.value, str)
               and n.value.startswith("--")]
    assert options == ["--jsonl"], options
    for job in ("fit", "synthesize", "evaluate", "pairs", "realism", "train", "demo", "bids"):
        tree = ast.parse((LIB / "jobs" / f"{job}.py").read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "add_argument"], job
    assert requests.SynthesisRequest.JOB in cli.JOBS
