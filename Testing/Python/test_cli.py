"""The command line as users and programs run it: real subprocesses, real files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from DTISynthLib.core.dwi import check_dwi
from DTISynthLib.fit.tensor_maps import compute_maps
from DTISynthLib.io.files import load_dwi, load_tensor, load_volume, save_dwi
from DTISynthLib.simulation.numerical_phantom import make_fibre_phantom

REPO = Path(__file__).resolve().parents[2]
# The demo job (the default model set) against the ground truth, per ROI:
SYNTHETIC_FA_TOLERANCE = 0.15
SYNTHETIC_MD_TOLERANCE = 0.15


def _dtisynth(*args):
    return subprocess.run([sys.executable, "-m", "DTISynthLib", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO)


@pytest.fixture
def phantom(tmp_path):
    # Large enough that the default brain mask (5-voxel median filter) keeps the brain's edge.
    dwi, truth = make_fibre_phantom(shape=(28, 26, 16), rotation_degrees=(0, 10, 25))
    (tmp_path / "in").mkdir()
    save_dwi(tmp_path / "in" / "dwi.nii.gz", check_dwi(dwi))
    return tmp_path / "in" / "dwi.nii.gz", truth


def test_fit_jsonl_events_and_outputs(tmp_path, phantom):
    path, truth = phantom
    run = _dtisynth("fit", path, "--out", tmp_path / "out", "--jsonl", "--maps", "fa,md,color")
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    stages = [e["stage"] for e in events if e["event"] == "progress"]
    assert stages[0] == "load" and stages[-1] == "write" and "fit" in stages and "maps" in stages
    assert all(0.0 <= e["fraction"] <= 1.0 for e in events if e["event"] == "progress")
    result = events[-1]
    assert result["event"] == "result"
    names = sorted(Path(p).name for p in result["outputs"])
    assert names == ["color_fa.nii.gz", "fa.nii.gz", "fit.json", "mask.nii.gz", "md.nii.gz", "tensor.nii.gz"]
    assert all(Path(p).exists() for p in result["outputs"])
    fa, _ = load_volume(tmp_path / "out" / "fa.nii.gz")
    true_fa = compute_maps(truth["tensor"], names=("fa",))["fa"]
    inside = truth["labels"] > 0
    mask, _ = load_volume(tmp_path / "out" / "mask.nii.gz")
    both = inside & (mask > 0)
    assert both.sum() > 0.8 * inside.sum()  # the default mask on a 16-slice phantom: 85 %
    assert np.abs(fa - true_fa)[both].max() < 1e-4
    description = json.loads((tmp_path / "out" / "fit.json").read_text())
    assert "RAS" in description["files"]["tensor.nii.gz"] and description["method"] == "iwls"


def test_fit_nrrd_output_with_given_mask_and_method(tmp_path, phantom):
    path, truth = phantom
    from DTISynthLib.io.files import save_volume
    dwi = load_dwi(path)
    save_volume(tmp_path / "mask.nrrd", (truth["labels"] > 0).astype(np.uint8), dwi.affine)
    run = _dtisynth("fit", path, "--out", tmp_path / "out", "--format", "nrrd", "--mask", tmp_path / "mask.nrrd",
                    "--method", "ols", "--eigenvalues", "clip")
    assert run.returncode == 0, run.stderr
    assert "fit" in run.stderr and "100%" in run.stderr  # the human progress bar
    tensor, affine = load_tensor(tmp_path / "out" / "tensor.nrrd")
    np.testing.assert_allclose(tensor[truth["labels"] > 0], truth["tensor"][truth["labels"] > 0], atol=1e-9)
    np.testing.assert_allclose(affine, dwi.affine, atol=1e-5)
    assert (tmp_path / "out" / "color_fa.nrrd").read_bytes().find(b"RGB-color") > 0


def test_fit_refuses_unknown_map(tmp_path, phantom):
    path, _ = phantom
    run = _dtisynth("fit", path, "--out", tmp_path / "out", "--maps", "fa,kurtosis")
    assert run.returncode == 2 and "--maps: expected a comma list from" in run.stderr and "found 'fa,kurtosis'" in run.stderr


# The demo on thicker slices (24 of 6.3 mm over the paper's field of view, in-plane as the paper's) and
# small realism autoencoders: the whole job in a minute. The full-size demo: benchmarks/bench_demo.py.
SMALL_DEMO = ("--grid", "128x128x24", "--realism-voxels", "20000", "--realism-epochs", "10")


def test_the_process_exits_with_the_job_s_code_after_its_atexit_handlers_and_output(tmp_path):
    """cli.command skips the interpreter's teardown (os._exit): the exit code, what was printed and the
    atexit handlers (temporary-file cleanup) must survive that."""
    script = ("import atexit, pathlib, sys, tempfile\n"
              "from DTISynthLib import cli\n"
              "folder = sys.argv[1]\n"
              "kept = tempfile.TemporaryDirectory(dir=folder)  # cleaned up by weakref's atexit hook\n"
              "pathlib.Path(kept.name, 'inside').write_text('x')\n"
              "atexit.register(lambda: pathlib.Path(folder, 'atexit-ran').write_text('yes'))\n"
              "print('printed before the job', end='')  # no newline: still in the buffer when the job ends\n"
              "sys.argv = ['dtisynth', *sys.argv[2:]]\n"
              "cli.command()\n"
              "print('not reached')\n")
    for args, code in ((["fit", tmp_path / "missing.nii.gz", "--out", tmp_path / "out"], 2), (["models"], 0)):
        for old in tmp_path.glob("atexit-ran"):
            old.unlink()
        run = subprocess.run([sys.executable, "-c", script, tmp_path, *map(str, args)], capture_output=True, text=True,
                             cwd=REPO)
        assert run.returncode == code, run.stderr
        assert run.stdout.startswith("printed before the job") and "not reached" not in run.stdout
        assert (tmp_path / "atexit-ran").read_text() == "yes"
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith("tmp")] == []  # the temporary folder went


def test_demo_synthesizes_and_compares(tmp_path):
    run = _dtisynth("demo", "--out", tmp_path / "demo", *SMALL_DEMO)
    assert run.returncode == 0, run.stderr
    assert "ROI means (acquired / synthetic / ground truth / paper Table 2)" in run.stderr
    rows = [line.split("\t") for line in (tmp_path / "demo" / "roi_values.tsv").read_text().splitlines()]
    assert len(rows) == 6 and rows[0][:4] == ["roi", "voxels", "FA_acquired", "FA_synthetic"]
    for row in rows[1:]:
        fa_acquired, fa_synthetic, fa_truth = map(float, row[2:5])
        md_acquired, md_synthetic, md_truth = map(float, row[6:9])
        assert 0 <= fa_acquired - fa_truth < 0.05, row  # noise raises FA a little at SNR 30
        assert abs(fa_synthetic - fa_truth) < SYNTHETIC_FA_TOLERANCE, row
        assert abs(md_synthetic / md_truth - 1) < SYNTHETIC_MD_TOLERANCE, row
    png = tmp_path / "demo" / "montage.png"
    import matplotlib.image
    image = matplotlib.image.imread(str(png))
    assert image.shape[0] > 400 and image.shape[1] > 800  # three rows of maps
    rgb = image[..., :3]
    assert rgb.std() > 0.1  # maps, not a blank canvas
    # colour FA panels contain saturated red, green and blue (callosum, posterior tracts, internal capsule)
    for channel in range(3):
        others = [c for c in range(3) if c != channel]
        dominant = (rgb[..., channel] > 0.4) & (rgb[..., others].max(axis=-1) < 0.25)
        assert dominant.sum() > 30, channel
    for path in ("synthetic/sub-001/synthetic_dti.nii.gz", "synthetic/sub-001/synthetic_dti.nrrd",
                 "synthetic/sub-003/maps/fa.nii.gz", "synthetic/sub-002/synthesis.json", "acquired/fa.nii.gz",
                 "input/sub-001/dwi/sub-001_acq-dwi3_dwi.nii.gz", "evaluation/report.html",
                 "evaluation/figures/bland_altman.png", "evaluation/figures/montage_sub-003.png"):
        assert (tmp_path / "demo" / path).exists(), path
    # the cohort evaluation ends the demo: three subjects, every ROI, no flagged row
    assert "cohort of 3, FA original / synthetic" in run.stderr
    import csv
    with open(tmp_path / "demo" / "evaluation" / "table2.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 20 and all(r["subjects"] == "3" and not r["flag"] for r in table)
    # the realism index of the default set's DTIs: below the diagonal baseline's (measured 1.50 against 2.34)
    with open(tmp_path / "demo" / "evaluation" / "realism_index.csv") as f:
        realism = {r["subject"]: float(r["realism_index"]) for r in csv.DictReader(f)}
    assert set(realism) == {"sub-001", "sub-002", "sub-003", "all subjects"} and realism["all subjects"] < 2.0
    assert f"as real as acquired): {realism['all subjects']:.2f}" in run.stderr


def test_simulate_cohort_command(tmp_path):
    run = _dtisynth("simulate", "cohort", "--n", 2, "--out", tmp_path / "c", "--scheme", "syn", "--grid", "32x32x19",
                    "--seed", 4, "--snr", 25, "--jsonl")
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert events[-1]["event"] == "result" and "2 subjects" in events[-1]["message"]
    description = json.loads((tmp_path / "c" / "dataset_description.json").read_text())
    assert description["DTISynth"]["scheme"] == "syn" and description["DTISynth"]["grid"] == [32, 32, 19]
    participants = (tmp_path / "c" / "participants.tsv").read_text().splitlines()
    assert len(participants) == 3 and participants[1].startswith("sub-001\t")
    truth = json.loads((tmp_path / "c" / "derivatives" / "truth" / "sub-002" / "sub-002_truth.json").read_text())
    assert np.asarray(truth["misregistration_matrix"]).shape == (4, 4)
    sidecar = json.loads((tmp_path / "c" / "sub-001" / "dwi" / "sub-001_acq-dwi3_dwi.json").read_text())
    assert sidecar["BValue"] == 1000 and sidecar["SimulationScheme"] == "syn"


def test_simulate_cohort_rejects_bad_arguments(tmp_path):
    run = _dtisynth("simulate", "cohort", "--n", 1, "--out", tmp_path / "c", "--grid", "32x32", "--seed", 1)
    assert run.returncode == 2 and "expected a grid like 128x128x76" in run.stderr
    run = _dtisynth("simulate", "cohort", "--n", 1, "--out", tmp_path / "c", "--seed", 1, "--scheme", "syn",
                    "--sample-from", tmp_path / "x.nii.gz")
    assert run.returncode == 2 and "--sample-from only with the sampled or sample-and-mean schemes" in run.stderr
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_simulate_cohort_sampled_from_a_real_scan(tmp_path):
    from conftest import real_dwi_path

    scan = real_dwi_path("dev_philips_achieva_b2000")
    run = _dtisynth("simulate", "cohort", "--n", 1, "--out", tmp_path / "c", "--scheme", "sample-and-mean",
                    "--sample-from", scan, "--grid", "32x32x19", "--seed", 2)
    assert run.returncode == 0, run.stderr
    description = json.loads((tmp_path / "c" / "dataset_description.json").read_text())
    assert description["DTISynth"]["eigenvalue_source"] == str(scan)


def test_models_lists_every_shipped_set_with_its_description_and_marks_the_default(tmp_path):
    import shutil

    shutil.copytree(REPO / "Resources" / "Models" / "diagonal", tmp_path / "mine")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{not json")
    (tmp_path / "not-a-package").mkdir()
    run = _dtisynth("models", "--root", tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    heads = [line.split("  ")[0] for line in lines if not line.startswith("    ")]
    assert heads == ["diagonal", "pix2pix", "tensor-unet (default)", "tensor-unet-signed", "broken", "mine"]
    described = {line.split("  ")[0]: line for line in lines if not line.startswith("    ")}
    assert "[pix2pix-per-direction]  The seed paper's method" in described["pix2pix"]
    assert "[tensor-unet]  One tensor U-Net" in described["tensor-unet (default)"]
    assert "[tensor-unet]  The previous default" in described["tensor-unet-signed"]
    assert "unusable:" in described["broken"] and "a JSON manifest" in described["broken"]
    event = json.loads(_dtisynth("models", "--jsonl").stdout.splitlines()[-1])
    assert event["event"] == "result" and len(event["outputs"]) == 4


def test_models_import_verifies_and_copies_a_zipped_package(tmp_path):
    import shutil

    shutil.make_archive(str(tmp_path / "pix2pix"), "zip", REPO / "Resources" / "Models", "pix2pix")
    run = _dtisynth("models", "--import", tmp_path / "pix2pix.zip", "--into", tmp_path / "mine")
    assert run.returncode == 0, run.stderr
    imported = tmp_path / "mine" / "pix2pix"
    assert sorted(p.name for p in imported.iterdir()) == sorted(
        p.name for p in (REPO / "Resources" / "Models" / "pix2pix").iterdir())
    assert any(line.startswith("pix2pix  [pix2pix-per-direction]") for line in run.stdout.splitlines())
    again = _dtisynth("models", "--import", tmp_path / "pix2pix.zip", "--into", tmp_path / "mine")
    assert again.returncode == 2 and "a model folder of that name already exists" in again.stderr
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["pix2pix"]  # no staging left


def _entries(root):
    """{path: what it is} of everything under `root`, nothing followed: a link by its target, a regular
    file by its SHA-256, anything else by its mode; to show that a command left a folder as it was."""
    import hashlib
    import stat

    return {str(p): "-> " + os.readlink(p) if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else stat.filemode(p.lstat().st_mode) for p in sorted(Path(root).rglob("*"))}


def _import_folder(package, into):
    """`dtisynth models --import package --into into` in a child that may write at most 64 MiB to any one
    file and run at most 2 min: a regression that followed a link to /dev/zero fails (EFBIG, or the
    timeout) instead of filling the disk or hanging the suite."""
    import resource

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 2**20, 64 * 2**20))

    command = [sys.executable, "-m", "DTISynthLib", "models", "--import", str(package), "--into", str(into)]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120, preexec_fn=limit_file_size)


def test_models_import_of_a_folder_copies_only_the_files_its_manifest_lists(tmp_path):
    """Entries the manifest does not list are left alone, never opened or copied (a folder is a working
    place: `train` keeps its checkpoints/ in the package folder): an extra file, a sub-folder, a link to a
    folder outside the package (before, copied whole into it), a link loop (before, a traceback)."""
    import shutil

    shipped = REPO / "Resources" / "Models" / "tensor-unet"
    package = tmp_path / "pkg"
    shutil.copytree(shipped, package)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "private.txt").write_text("not the package's")
    (package / "outside").symlink_to(tmp_path / "outside")
    (package / "a").symlink_to("b")
    (package / "b").symlink_to("a")
    (package / "notes.txt").write_text("unlisted")
    (package / "checkpoints").mkdir()
    (package / "checkpoints" / "last.json").write_text("{}")
    before = _entries(tmp_path)
    run = _import_folder(package, tmp_path / "mine")
    assert run.returncode == 0, run.stderr
    imported = tmp_path / "mine" / "pkg"
    listed = ["input_check.safetensors", "manifest.json", "tensor.safetensors"]  # no directions' logs in this set
    assert sorted(p.name for p in imported.iterdir()) == listed
    for path in imported.iterdir():
        assert not path.is_symlink() and path.read_bytes() == (shipped / path.name).read_bytes(), path
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["pkg"]  # no staging left
    assert {k: v for k, v in _entries(tmp_path).items() if not k.startswith(str(tmp_path / "mine"))} == before


def _loop(path, folder):
    (folder / "b").symlink_to(path)
    path.symlink_to(folder / "b")


def _link_to_a_folder_outside(path, folder):
    (folder / "outside").mkdir()
    (folder / "outside" / "private.txt").write_text("not the package's")
    path.symlink_to(folder / "outside")


@pytest.mark.parametrize("name, make, found", [
    ("tensor.safetensors", lambda path, folder: path.symlink_to("/dev/zero"), "a symbolic link to /dev/zero"),
    ("tensor.safetensors", _loop, "a symbolic link loop (to {folder}/b)"),
    ("input_check.safetensors", _link_to_a_folder_outside, "a symbolic link to {folder}/outside"),
    ("tensor.safetensors", lambda path, folder: path.symlink_to(folder / "missing"),
     "a symbolic link to {folder}/missing, which does not exist"),
    ("manifest.json", lambda path, folder: path.symlink_to("/dev/zero"), "a symbolic link to /dev/zero"),
    ("tensor.safetensors", lambda path, folder: os.mkfifo(path), "a FIFO (named pipe)"),
    ("tensor.safetensors", lambda path, folder: path.mkdir(), "a folder"),
], ids=["link-to-dev-zero", "link-loop", "link-to-a-folder-outside", "dangling-link", "manifest-link-to-dev-zero",
        "fifo", "folder"])
def test_models_import_of_a_folder_refuses_a_listed_file_that_is_not_a_regular_file(tmp_path, name, make, found):
    """Each file the manifest lists must be a regular file in the folder itself; anything else is bad input
    naming the file (exit 2, no traceback), found before it is opened: nothing is created at --into and
    the folder is left as it was. Before, a link to /dev/zero filled the disk, a loop was a traceback."""
    import shutil

    package = tmp_path / "pkg"
    shutil.copytree(REPO / "Resources" / "Models" / "tensor-unet", package)
    (package / name).unlink()
    make(package / name, tmp_path)
    before = _entries(tmp_path)
    run = _import_folder(package, tmp_path / "mine")
    assert run.returncode == 2, run.stderr
    assert f"{package / name}: expected a regular file; found {found.format(folder=tmp_path)}" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "mine").exists()
    assert _entries(tmp_path) == before


@pytest.mark.parametrize("args, option, expected", [
    (["simulate", "cohort", "--n", "0", "--seed", "1", "--out", "x"], "--n", "an integer >= 1, not '0'"),
    (["simulate", "cohort", "--n", "2", "--snr", "-5", "--seed", "1", "--out", "x"], "--snr", "> 0, not '-5'"),
    (["simulate", "cohort", "--n", "2", "--snr", "0", "--seed", "1", "--out", "x"], "--snr", "> 0, not '0'"),
    (["pairs", "d.nii.gz", "--mode", "tensor", "--b", "-1000", "--out", "x"], "--b", "> 0, not '-1000'"),
    (["pairs", "d.nii.gz", "--mode", "tensor", "--b", "nan", "--out", "x"], "--b", "a finite number > 0, not 'nan'"),
    (["train", "--data", "d", "--out", "x", "--epochs", "0"], "--epochs", "an integer >= 1, not '0'"),
    (["train", "--data", "d", "--out", "x", "--batch-size", "0"], "--batch-size", "an integer >= 1, not '0'"),
    (["train", "--data", "d", "--out", "x", "--validation-fraction", "1.5"], "--validation-fraction", "not '1.5'"),
    (["train", "--data", "d", "--out", "x", "--lr", "inf"], "--lr", "a finite number > 0, not 'inf'"),
    (["train", "--data", "d", "--out", "x", "--workers", "-1"], "--workers", "an integer >= 0, not '-1'"),
    (["evaluate", "--original", "a", "--synthetic", "b", "--out", "x", "--jobs", "0"], "--jobs", "not '0'"),
    (["synthesize", "--dwi", "d", "--out", "x", "--output-b", "-1"], "--output-b", "> 0, not '-1'"),
])
def test_option_values_are_checked_when_parsed(tmp_path, capsys, args, option, expected):
    from DTISynthLib.cli import main

    assert main(args) == 2
    message = capsys.readouterr().err
    assert f"argument {option}: expected" in message and expected in message and "--help" in message, message
    assert main(args + ["--jsonl"]) == 2
    event = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert event["event"] == "error" and f"argument {option}" in event["message"] and expected in event["message"]
    assert not (tmp_path / "x").exists() and not (REPO / "x").exists()
