"""Bad input and faults across every command, as a new user meets them.

Each case runs the command line in-process with --jsonl and asserts: exit code 2; a JSON-lines
`error` event whose message names the file or option, the expectation and what was found; no output
left behind (the --out path does not exist afterwards, or is as it was); every input file unchanged
(SHA-256 before and after). Classes: usage (option values), file (missing, malformed or damaged
input files), science (inputs that would give wrong results without a word), manifest (model packages
are untrusted input), output (faults of the place written to).
"""

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import random_gradient_table, write_noisier_synthetic_cohort

from DTISynthLib.cli import main
from DTISynthLib.core.dwi import DWI, check_dwi
from DTISynthLib.generators.package import SHIPPED_MODELS, read_manifest, write_manifest
from DTISynthLib.io.files import load_dwi, save_dwi
from DTISynthLib.simulation.numerical_phantom import make_fibre_phantom

CLASSES = ("usage", "file", "science", "manifest", "output")


@dataclass
class Inputs:
    root: Path
    dwi30: Path  # b0 + 30 directions, b=1000, 12 x 12 x 6 phantom
    dwi3: Path  # a 3-direction DWI (cohort sub-001)
    dti6: Path  # its acquired 6-direction DTI
    cohort: Path
    synthetic: Path
    models: Path  # a tiny trained model package
    results: Path  # a synthesize output folder
    evaluation: Path  # an evaluate output folder
    study: Path  # a review study


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_models):
    from DTISynthLib.evaluation.comparison import run_evaluation
    from DTISynthLib.service.requests import SynthesisRequest
    from DTISynthLib.service.synthesize import synthesize
    from DTISynthLib.review.study import create_study

    root = tmp_path_factory.mktemp("inputs")
    bvals, gradients = random_gradient_table(30, seed=7)
    dwi, _ = make_fibre_phantom(shape=(12, 12, 6), bvals=bvals, gradients=gradients, snr=30, seed=1)
    save_dwi(root / "dwi30.nii.gz", check_dwi(dwi))
    cohort, synthetic = write_noisier_synthetic_cohort(root, 2, 0.02)
    dwi3 = next(cohort.rglob("sub-001_acq-dwi3_dwi.nii.gz"))
    dti6 = next(cohort.rglob("sub-001_acq-dti6_dwi.nii.gz"))
    models = root / "models"
    shutil.copytree(tiny_models, models)
    results = root / "results"
    synthesize(SynthesisRequest(dwi=dwi3, out=results, models=models, device="cpu"))
    evaluation = root / "evaluation"
    run_evaluation(dti6, results, evaluation, realism_epochs=0)
    study = root / "study"
    create_study(cohort, synthetic, study, maps=("fa",), readers=2)
    return Inputs(root, root / "dwi30.nii.gz", dwi3, dti6, cohort, synthetic, models, results, evaluation, study)


def _hashes(root):
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(root).rglob("*")) if p.is_file()}


# --- helpers that write bad inputs into a case's own folder ------------------------------------------

def copy_dwi(source, folder, name="dwi"):
    """Copy a NIfTI DWI with its bval / bvec into `folder` as <name>.nii.gz; returns the new path."""
    stem = str(source)[: -len(".nii.gz")]
    for suffix in (".nii.gz", ".bval", ".bvec"):
        shutil.copy(stem + suffix, folder / f"{name}{suffix}")
    return folder / f"{name}.nii.gz"


def write_dwi(folder, data, bvals, gradients, affine=np.eye(4), name="dwi"):
    path = folder / f"{name}.nii.gz"
    save_dwi(path, DWI(np.asarray(data, np.float32), affine, np.asarray(bvals, float), np.asarray(gradients, float)))
    return path


def phantom_dwi(folder, gradients, name="dwi", b=1000.0):
    gradients = np.asarray(gradients, dtype=np.float64)
    bvals = np.r_[0.0, np.full(len(gradients), b)]
    dwi, _ = make_fibre_phantom(shape=(12, 12, 6), bvals=bvals, gradients=np.vstack([np.zeros(3), gradients]),
                                snr=30, seed=2)
    return write_dwi(folder, dwi.data, dwi.bvals, dwi.gradients, dwi.affine, name)


def raw_nifti(path, data, affine=np.eye(4)):
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


def corrupt_models(folder, change, weights_from=None):
    """A model package in `folder`/m whose manifest is the pix2pix set's (or `weights_from`'s, with its
    weights) after `change`."""
    package = folder / "m"
    if weights_from:
        shutil.copytree(weights_from, package)
        manifest = read_manifest(package).data
    else:
        package.mkdir()
        manifest = read_manifest(SHIPPED_MODELS / "pix2pix").data
    change(manifest)
    write_manifest(package, manifest)
    return package


def _set(mapping, key, value):
    mapping[key] = value


# --- the table -----------------------------------------------------------------------------------------
# Each case: (id, class, build). build(inputs, folder) -> (argv without --jsonl, [patterns the message
# must contain]). `folder` is the case's own folder for bad inputs; `folder / "out"` is its output path.

def _fit(path, *extra):
    return ["fit", str(path), *map(str, extra)]


def _synth(dwi, out, *extra):
    return ["synthesize", "--dwi", str(dwi), "--out", str(out), *map(str, extra)]


def case_fit_missing(i, f):
    return _fit(f / "nope.nii.gz", "--out", f / "out"), ["nope.nii.gz", "expected an existing", "no such file"]


def case_fit_3d(i, f):
    return _fit(raw_nifti(f / "b0.nii.gz", np.ones((4, 4, 4), np.float32)), "--out", f / "out"), \
        ["b0.nii.gz", "expected a 4D image", "3D data"]


def case_fit_bval_count(i, f):
    path = copy_dwi(i.dwi30, f)
    (f / "dwi.bval").write_text("0 1000\n")
    return _fit(path, "--out", f / "out"), ["dwi.bval", "expected", "found 2 b-values"]


def case_fit_bval_text(i, f):
    path = copy_dwi(i.dwi30, f)
    (f / "dwi.bval").write_text("zero thousand\n")
    return _fit(path, "--out", f / "out"), ["dwi.bval", "expected", "found"]


def case_fit_bvec_zero(i, f):
    path = copy_dwi(i.dwi30, f)
    rows = np.loadtxt(f / "dwi.bvec")
    rows[:, 5] = 0
    np.savetxt(f / "dwi.bvec", rows)
    return _fit(path, "--out", f / "out"), ["dwi.nii.gz", "expected a unit gradient vector", "norm 0"]


def case_fit_nan_voxels(i, f):
    dwi = load_dwi(i.dwi30)
    data = dwi.data.copy()
    data[3, 3, 3, 4] = np.nan
    return _fit(write_dwi(f, data, dwi.bvals, dwi.gradients, dwi.affine), "--out", f / "out"), \
        ["dwi.nii.gz", "expected finite voxel values", "1 NaN or inf"]


def case_fit_zero_b0(i, f):
    dwi = load_dwi(i.dwi30)
    data = dwi.data.copy()
    data[..., 0] = 0
    return _fit(write_dwi(f, data, dwi.bvals, dwi.gradients, dwi.affine), "--out", f / "out"), \
        ["dwi.nii.gz", "expected a b=0 volume with signal", "every b=0 voxel is zero"]


def case_fit_negated_dwi(i, f):  # used to write all-zero maps without a word
    dwi = load_dwi(i.dwi30)
    return _fit(write_dwi(f, -dwi.data, dwi.bvals, dwi.gradients, dwi.affine), "--out", f / "out"), \
        ["dwi.nii.gz", "expected a b=0 volume with signal, mostly positive",
         "b=0 signal mostly negative: 100% of its non-zero voxels below 0 (a negated or signed image?)"]


def case_fit_truncated(i, f):
    path = copy_dwi(i.dwi30, f)
    path.write_bytes(path.read_bytes()[:2000])
    return _fit(path, "--out", f / "out"), ["dwi.nii.gz", "expected", "truncated"]


def case_fit_garbage(i, f):
    path = copy_dwi(i.dwi30, f)
    path.write_bytes(b"this is not an image" * 50)
    return _fit(path, "--out", f / "out"), ["dwi.nii.gz", "expected a readable NIfTI file", "damaged"]


def case_fit_huge_header(i, f):
    header = nib.Nifti1Header()
    header.set_data_shape((1024, 1024, 360))
    header.set_data_dtype(np.float32)
    path = f / "huge.nii"
    path.write_bytes(header.binaryblock + b"\0" * 4 + b"\1" * 600)
    return _fit(path, "--out", f / "out"), ["huge.nii", "the 1509949440 bytes its header describes", "bytes"]


def case_fit_complex(i, f):
    dwi = load_dwi(i.dwi30)
    path = raw_nifti(f / "dwi.nii.gz", (dwi.data * (1 + 0.5j)).astype(np.complex64), dwi.affine)
    shutil.copy(str(i.dwi30)[:-7] + ".bval", f / "dwi.bval")
    shutil.copy(str(i.dwi30)[:-7] + ".bvec", f / "dwi.bvec")
    return _fit(path, "--out", f / "out"), ["dwi.nii.gz", "expected real-valued (magnitude) voxels", "complex64"]


def case_fit_singular_affine(i, f):
    path = copy_dwi(i.dwi30, f)
    img = nib.load(str(path))
    affine = img.affine.copy()
    affine[:3, 2] = 0
    flat = nib.Nifti1Image(np.asarray(img.dataobj), None)
    flat.set_qform(None, code=0)
    flat.set_sform(affine, code=1)
    nib.save(flat, str(f / "flat.nii.gz"))
    for suffix in (".bval", ".bvec"):
        shutil.copy(f / f"dwi{suffix}", f / f"flat{suffix}")
    return _fit(f / "flat.nii.gz", "--out", f / "out"), ["flat.nii.gz", "expected a voxel-to-world matrix", "singular"]


def case_fit_coplanar(i, f):
    g = np.random.default_rng(3).normal(size=(30, 3))
    g[:, 2] *= 0.01
    g /= np.linalg.norm(g, axis=1)[:, None]
    return _fit(phantom_dwi(f, g), "--out", f / "out"), ["dwi.nii.gz", "condition number <= 1000", "nearly coplanar"]


def case_fit_three_directions(i, f):
    return _fit(phantom_dwi(f, np.eye(3)), "--out", f / "out"), \
        ["dwi.nii.gz", "at least 6 diffusion directions", "3 diffusion-weighted volumes"]


def case_fit_multishell(i, f):
    dwi = load_dwi(i.dwi30)
    bvals = dwi.bvals.copy()
    bvals[16:] = 2000
    return _fit(write_dwi(f, dwi.data, bvals, dwi.gradients, dwi.affine), "--out", f / "out"), \
        ["dwi.nii.gz", "a single non-zero shell", "b = 1000, 2000"]


def case_fit_absent_shell(i, f):
    return _fit(i.dwi30, "--out", f / "out", "--shell", 3000), ["dwi30.nii.gz", "a shell at b = 3000", "b = 1000"]


def case_fit_zero_mask(i, f):
    affine = load_dwi(i.dwi30).affine
    mask = raw_nifti(f / "mask.nii.gz", np.zeros((12, 12, 6), np.uint8), affine)
    return _fit(i.dwi30, "--out", f / "out", "--mask", mask), ["mask.nii.gz", "a mask with voxels inside", "every voxel zero"]


def case_fit_mask_grid(i, f):
    mask = raw_nifti(f / "mask.nii.gz", np.ones((10, 12, 6), np.uint8), load_dwi(i.dwi30).affine)
    return _fit(i.dwi30, "--out", f / "out", "--mask", mask), ["mask.nii.gz", "a mask on the DWI grid", "grid (10, 12, 6)"]


def case_fit_mask_affine(i, f):
    affine = load_dwi(i.dwi30).affine.copy()
    affine[0, 3] += 5
    mask = raw_nifti(f / "mask.nii.gz", np.ones((12, 12, 6), np.uint8), affine)
    return _fit(i.dwi30, "--out", f / "out", "--mask", mask), ["mask.nii.gz", "a mask with the DWI's affine", "differing by up to 5"]


def case_fit_unknown_map(i, f):
    return _fit(i.dwi30, "--out", f / "out", "--maps", "fa,kurtosis"), ["--maps", "expected a comma list", "'fa,kurtosis'"]


def case_fit_unknown_method(i, f):
    return _fit(i.dwi30, "--out", f / "out", "--method", "nlls"), ["--method", "choose from", "'nlls'"]


def case_fit_unknown_extension(i, f):
    (f / "dwi.txt").write_text("0 0 0\n")
    return _fit(f / "dwi.txt", "--out", f / "out"), ["dwi.txt", "expected a .nii, .nii.gz, .nrrd", "'dwi.txt'"]


def case_fit_empty_folder(i, f):
    (f / "dicom").mkdir()
    return _fit(f / "dicom", "--out", f / "out"), ["dicom", "expected", "found"]


def case_fit_unconvertible_dicom(i, f):
    (f / "dicom").mkdir()
    (f / "dicom" / "IM0001.dcm").write_bytes(b"not a DICOM file" * 10)
    return _fit(f / "dicom", "--out", f / "out"), ["dicom: expected a DICOM folder dcm2niix can convert",
                                                   "dcm2niix failed: Error: Unable to find any DICOM", "(exit code"]


def case_synthesize_fifo(i, f):
    os.mkfifo(f / "dwi.nii.gz")  # used to block for ever
    return _synth(f / "dwi.nii.gz", f / "out"), ["dwi.nii.gz", "expected a regular file", "a FIFO (named pipe)"]


def case_synthesize_fifo_bval(i, f):
    dwi = copy_dwi(i.dwi3, f)
    (f / "dwi.bval").unlink()
    os.mkfifo(f / "dwi.bval")
    return _synth(dwi, f / "out"), ["dwi.bval", "expected a regular file", "a FIFO (named pipe)"]


def case_fit_nrrd_without_gradients(i, f):
    save_dwi(f / "dwi.nhdr", load_dwi(i.dwi30))
    header = f / "dwi.nhdr"
    header.write_text("\n".join(line for line in header.read_text().splitlines() if "DWMRI_gradient_" not in line) + "\n")
    return _fit(header, "--out", f / "out"), ["dwi.nhdr", "expected", "found"]


def case_fit_nrrd_text_b(i, f):
    save_dwi(f / "dwi.nhdr", load_dwi(i.dwi30))
    header = f / "dwi.nhdr"
    text = "\n".join("DWMRI_b-value:=one thousand" if line.startswith("DWMRI_b-value") else line
                     for line in header.read_text().splitlines())
    header.write_text(text + "\n")
    return _fit(header, "--out", f / "out"), ["dwi.nhdr", "DWMRI_b-value", "'one thousand'"]


def case_fit_out_is_a_file(i, f):
    (f / "out").write_text("keep me")
    return _fit(i.dwi30, "--out", f / "out"), [str(f / "out"), "expected an output folder", "an existing file"]


def case_fit_out_under_a_file(i, f):
    (f / "taken").write_text("keep me")
    return _fit(i.dwi30, "--out", f / "taken" / "out"), ["taken", "expected an output folder", "is an existing file"]


def case_fit_out_not_permitted(i, f):
    return _fit(i.dwi30, "--out", "/sys/dtisynth-out"), ["/sys/dtisynth-out", "an output folder you may write in",
                                                          "not permitted"]


def case_simulate_n0(i, f):
    return ["simulate", "cohort", "--n", "0", "--seed", "1", "--out", str(f / "out")], ["--n", "an integer >= 1", "'0'"]


def case_simulate_snr0(i, f):
    return ["simulate", "cohort", "--n", "1", "--seed", "1", "--snr", "0", "--out", str(f / "out")], \
        ["--snr", "a finite number > 0", "'0'"]


def case_simulate_snr_negative(i, f):
    return ["simulate", "cohort", "--n", "1", "--seed", "1", "--snr=-5", "--out", str(f / "out")], \
        ["--snr", "a finite number > 0", "'-5'"]


def case_simulate_grid_text(i, f):
    return ["simulate", "cohort", "--n", "1", "--seed", "1", "--grid", "big", "--out", str(f / "out")], \
        ["--grid", "a grid like 128x128x76", "'big'"]


def case_simulate_grid_huge(i, f):
    return ["simulate", "atlas", "--grid", "100000x100000x10", "--out", str(f / "out")], \
        ["--grid", "from 8 to 1024", "'100000x100000x10'"]


def case_simulate_sample_from_missing(i, f):
    return ["simulate", "cohort", "--n", "1", "--seed", "1", "--sample-from", str(f / "nope.nii.gz"),
            "--out", str(f / "out")], ["nope.nii.gz", "expected an existing", "no such file"]


def case_simulate_scheme(i, f):
    return ["simulate", "cohort", "--n", "1", "--seed", "1", "--scheme", "gaussian", "--out", str(f / "out")], \
        ["--scheme", "choose from", "'gaussian'"]


def case_simulate_seed_text(i, f):
    return ["simulate", "cohort", "--n", "1", "--seed", "abc", "--out", str(f / "out")], ["--seed", "int", "'abc'"]


def case_simulate_out_is_a_file(i, f):
    (f / "out").write_text("keep me")
    return ["simulate", "atlas", "--grid", "16x16x16", "--out", str(f / "out")], \
        [str(f / "out"), "expected an output folder", "an existing file"]


def case_pairs_b_negative(i, f):
    return ["pairs", str(i.dwi30), "--out", str(f / "out"), "--mode", "tensor", "--b=-1000"], \
        ["--b", "a finite number > 0", "'-1000'"]


def case_pairs_b_nan(i, f):
    return ["pairs", str(i.dwi30), "--out", str(f / "out"), "--mode", "tensor", "--b", "nan"], \
        ["--b", "a finite number > 0", "'nan'"]


def case_pairs_far_directions(i, f):
    # 8 directions whose nearest to x and y (39 degrees off each) are 13 degrees apart: ill-conditioned
    g = np.array([[1, 0.8, 0], [0.8, 1, 0], [0, 0, 1], [0, 1, 1], [1, 0, 1.4], [1, 0, -1.4], [0, 1, -1], [1, -1, 0.3]])
    g = g / np.linalg.norm(g, axis=1)[:, None]
    return ["pairs", str(phantom_dwi(f, g)), "--out", str(f / "out")], \
        ["dwi.nii.gz", "three well-conditioned diffusion directions (condition number <= 3", "found 9"]


def case_pairs_too_few(i, f):
    return ["pairs", str(phantom_dwi(f, np.eye(3)[:2])), "--out", str(f / "out")], \
        ["dwi.nii.gz", "3 distinct diffusion-weighted volumes to match 3 nominal directions", "found 2"]


def case_pairs_mode(i, f):
    return ["pairs", str(i.dwi30), "--out", str(f / "out"), "--mode", "closest"], ["--mode", "choose from", "'closest'"]


def case_pairs_missing_bvec(i, f):
    path = copy_dwi(i.dwi30, f)
    (f / "dwi.bvec").unlink()
    return ["pairs", str(path), "--out", str(f / "out")], ["dwi.bvec", "expected", "found"]


def case_synth_missing_dwi(i, f):
    return _synth(f / "nope.nii.gz", f / "out", "--models", i.models), ["nope.nii.gz", "expected an existing", "no such file"]


def case_synth_two_directions(i, f):
    return _synth(phantom_dwi(f, np.eye(3)[:2]), f / "out", "--models", i.models), \
        ["dwi.nii.gz", "three diffusion-weighted volumes (x, y, z)", "found 2"]


def case_synth_far_axes(i, f):
    tilt = np.radians(40)
    g = np.array([[np.cos(tilt), np.sin(tilt), 0], [-np.sin(tilt), np.cos(tilt), 0], [0, 0, 1]])
    return _synth(phantom_dwi(f, g), f / "out", "--models", i.models), ["dwi.nii.gz", "expected", "40.0 degrees"]


def case_synth_beyond_measured_directions(i, f):  # the default's z 35 degrees skewed: accepted, FA 0.67 before
    t = np.radians(35)
    g = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, np.sin(t), np.cos(t)]])
    return _synth(phantom_dwi(f, g), f / "out"), \
        ["dwi.nii.gz", "within 25 degrees of orthogonal to each other", "found 35.0 degrees (non orthogonality"]


def case_synth_wrong_b(i, f):
    dwi = load_dwi(i.dwi3)
    bvals = np.where(dwi.is_b0, 0, 2000.0)
    return _synth(write_dwi(f, dwi.data, bvals, dwi.gradients, dwi.affine), f / "out", "--models", i.models), \
        ["dwi.nii.gz", "b = 1000 s/mm^2 like the models (or --force-b)", "b = 2000"]


def case_synth_missing_b0(i, f):
    return _synth(i.dwi3, f / "out", "--models", i.models, "--b0", f / "b0.nii.gz"), \
        ["b0.nii.gz", "expected an existing", "no such file"]


def case_synth_far_b0(i, f):
    b0 = load_dwi(i.dti6)
    affine = b0.affine.copy()
    affine[0, 3] += 500
    path = raw_nifti(f / "far_b0.nii.gz", b0.mean_b0(), affine)
    return _synth(i.dwi3, f / "out", "--models", i.models, "--b0", path), ["far_b0.nii.gz", "overlapping the DWI", "0% overlap"]


def case_synth_noise_b0(i, f):
    b0 = load_dwi(i.dti6)
    noise = np.random.default_rng(0).uniform(0, 1000, b0.data.shape[:3]).astype(np.float32)
    path = raw_nifti(f / "noise_b0.nii.gz", noise, b0.affine)
    return _synth(i.dwi3, f / "out", "--models", i.models, "--b0", path), \
        ["noise_b0.nii.gz", "a b=0 the DWI registers to (correlation >= 0.6)", "correlation"]


def case_synth_negated_dwi(i, f):
    dwi = load_dwi(i.dwi3)
    return _synth(write_dwi(f, -dwi.data, dwi.bvals, dwi.gradients, dwi.affine), f / "out", "--models", i.models), \
        ["dwi.nii.gz", "expected a b=0 volume with signal, mostly positive",
         "b=0 signal mostly negative: 100% of its non-zero voxels below 0"]


def case_synth_b0_4d_without_bval(i, f):  # its first volume (b=1000) used to be the reference
    dti = load_dwi(i.dti6)
    order = list(range(1, dti.data.shape[3])) + [0]  # b=1000 first, the b=0 last; no .bval beside it
    path = raw_nifti(f / "dti_b1000_first.nii.gz", dti.data[..., order], dti.affine)
    return _synth(i.dwi3, f / "out", "--models", i.models, "--b0", path), \
        ["dti_b1000_first.nii.gz", "expected a 3D b=0 volume, or a 4D image whose b-values mark its b=0 volumes",
         "found 7 volumes and no dti_b1000_first.bval beside it"]


def case_synth_b0_4d_without_b0_volume(i, f):
    dti = load_dwi(i.dti6)
    path = write_dwi(f, dti.data[..., 1:], dti.bvals[1:], dti.gradients[1:], dti.affine, name="weighted_only")
    return _synth(i.dwi3, f / "out", "--models", i.models, "--b0", path), \
        ["weighted_only.nii.gz", "expected a b=0 volume (b <= 50 s/mm^2) among its 6 volumes", "found b-values [1000.0]"]


def case_synth_missing_models(i, f):
    return _synth(i.dwi3, f / "out", "--models", f / "nomodels"), ["nomodels", "expected", "found"]


def case_synth_manifest_not_json(i, f):
    (f / "m").mkdir()
    (f / "m" / "manifest.json").write_text("{not json")
    return _synth(i.dwi3, f / "out", "--models", f / "m"), ["manifest.json", "expected", "found"]


def case_synth_manifest_no_sha256(i, f):
    models = corrupt_models(f, lambda m: m["directions"][2].pop("sha256"))
    return _synth(i.dwi3, f / "out", "--models", models), ["manifest.json", "sha256 of direction_3.safetensors", "None"]


def case_synth_manifest_huge_grid(i, f):
    models = corrupt_models(f, lambda m: _set(m, "grid", [100000, 100000]))
    return _synth(i.dwi3, f / "out", "--models", models), ["manifest.json", "grid to be null or two integers from 8 to 1024",
                                                           "100000"]


def case_synth_manifest_grid_not_divisible(i, f):  # used to stop with a traceback inside torch
    models = corrupt_models(f, lambda m: _set(m, "grid", [48, 48]), weights_from=i.models)
    return _synth(i.dwi3, f / "out", "--models", models), ["manifest.json", "grid to be two sizes divisible by "
                                                           "2**depth = 32 (architecture.generator.depth 5)", "[48, 48]"]


def case_synth_manifest_zero_voxel(i, f):
    models = corrupt_models(f, lambda m: _set(m, "voxel_size_mm", [0, 1.7, 2]))
    return _synth(i.dwi3, f / "out", "--models", models), ["manifest.json", "voxel_size_mm to be three sizes", "[0, 1.7, 2]"]


def case_synth_manifest_five_directions(i, f):
    models = corrupt_models(f, lambda m: m["directions"].pop(), weights_from=i.models)
    return _synth(i.dwi3, f / "out", "--models", models), ["manifest.json (its directions)", "determine a tensor",
                                                           "5 diffusion-weighted volumes"]


def case_synth_manifest_escaping_file(i, f):
    models = corrupt_models(f, lambda m: m["directions"][0].update(file="../../../../etc/hostname"))
    return _synth(i.dwi3, f / "out", "--models", models), ["manifest.json", "plain file name inside the package folder",
                                                           "etc/hostname"]


def case_synth_input_check_ratio(i, f):
    models = corrupt_models(f, lambda m: m["input_check"].update(warning_ratio=0.5), weights_from=i.models)
    return _synth(i.dwi3, f / "out", "--models", models), ["manifest.json", "input_check to be an entry",
                                                           "warning_ratio > 1", "0.5"]


def case_synth_input_check_shapes(i, f):
    from safetensors.numpy import save_file

    from DTISynthLib.core.checksums import sha256_file

    package = f / "m"
    shutil.copytree(i.models, package)
    weights = package / "input_check.safetensors"
    save_file({"weights_0": np.zeros((54, 4), np.float32)}, str(weights))
    manifest = read_manifest(package).data
    manifest["input_check"]["sha256"] = sha256_file(weights)
    write_manifest(package, manifest)
    return _synth(i.dwi3, f / "out", "--models", package), ["input_check.safetensors", "chaining 54 inputs",
                                                            "weights_0"]


def case_models_fit_input_check_no_data(i, f):
    return ["models", "--fit-input-check", str(i.models)], ["--fit-input-check", "--data DIR", "no --data"]


def case_synth_weights_changed(i, f):
    models = corrupt_models(f, lambda m: None, weights_from=i.models)
    weights = sorted(models.glob("*.safetensors"))[0]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    return _synth(i.dwi3, f / "out", "--models", models), [weights.name, "expected SHA-256", "found SHA-256"]


def case_synth_cuda(i, f):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: --device cuda is valid here")
    return _synth(i.dwi3, f / "out", "--models", i.models, "--device", "cuda"), ["--device", "cuda needs a CUDA GPU",
                                                                                 "sees no CUDA GPU"]


def case_synth_output_b(i, f):
    return _synth(i.dwi3, f / "out", "--output-b", "0"), ["--output-b", "a finite number > 0", "'0'"]


def case_synth_precision(i, f):
    return _synth(i.dwi3, f / "out", "--precision", "fp8"), ["--precision", "choose from", "'fp8'"]


def case_synth_out_is_a_file(i, f):
    (f / "out").write_text("keep me")
    return _synth(i.dwi3, f / "out", "--models", i.models), [str(f / "out"), "expected an output folder", "an existing file"]


def case_evaluate_missing_original(i, f):
    return ["evaluate", "--original", str(f / "nope.nii.gz"), "--synthetic", str(i.results), "--out", str(f / "out")], \
        ["nope.nii.gz", "expected", "found"]


def case_evaluate_missing_synthetic(i, f):
    return ["evaluate", "--original", str(i.dti6), "--synthetic", str(f / "nosynth"), "--out", str(f / "out")], \
        ["nosynth", "expected", "found"]


def case_evaluate_no_common_subjects(i, f):
    (f / "synth").mkdir()
    return ["evaluate", "--original", str(i.cohort), "--synthetic", str(f / "synth"), "--out", str(f / "out")], \
        ["synth", "expected", "found"]


def case_evaluate_jobs0(i, f):
    return ["evaluate", "--original", str(i.dti6), "--synthetic", str(i.results), "--out", str(f / "out"), "--jobs", "0"], \
        ["--jobs", "an integer >= 1", "'0'"]


def case_evaluate_missing_atlas(i, f):
    return ["evaluate", "--original", str(i.dti6), "--synthetic", str(i.results), "--out", str(f / "out"),
            "--atlas", str(f / "noatlas")], ["noatlas", "expected", "found"]


def case_evaluate_out_is_a_file(i, f):
    (f / "out").write_text("keep me")
    return ["evaluate", "--original", str(i.dti6), "--synthetic", str(i.results), "--out", str(f / "out")], \
        [str(f / "out"), "expected an output folder", "an existing file"]


def case_scene_missing_results(i, f):
    return ["scene", "--results", str(f / "noresults"), "--out", str(f / "out.mrb")], ["noresults", "expected", "found"]


def case_scene_missing_evaluation(i, f):
    return ["scene", "--results", str(i.results), "--evaluation", str(f / "noeval"), "--out", str(f / "out.mrb")], \
        ["noeval", "expected", "found"]


def case_scene_not_mrb(i, f):
    return ["scene", "--results", str(i.results), "--out", str(f / "out.mrml")], \
        ["out.mrml", "a scene file name ending in .mrb", "'out.mrml'"]


def case_scene_out_is_a_folder(i, f):
    (f / "out.mrb").mkdir()
    return ["scene", "--results", str(i.results), "--out", str(f / "out.mrb")], ["out.mrb", "a scene file name", "an existing folder"]


def case_train_missing_data(i, f):
    return ["train", "--data", str(f / "nodata"), "--out", str(f / "out")], ["nodata", "expected", "found"]


def case_train_empty_data(i, f):
    (f / "data").mkdir()
    return ["train", "--data", str(f / "data"), "--out", str(f / "out")], ["data", "expected", "found"]


def case_train_epochs0(i, f):
    return ["train", "--data", str(i.cohort), "--out", str(f / "out"), "--epochs", "0"], ["--epochs", "an integer >= 1", "'0'"]


def case_train_batch0(i, f):
    return ["train", "--data", str(i.cohort), "--out", str(f / "out"), "--batch-size", "0"], \
        ["--batch-size", "an integer >= 1", "'0'"]


def case_train_validation_fraction(i, f):
    return ["train", "--data", str(i.cohort), "--out", str(f / "out"), "--validation-fraction", "1.5"], \
        ["--validation-fraction", "a fraction from 0 up to", "'1.5'"]


def case_train_direction7(i, f):
    return ["train", "--data", str(i.cohort), "--out", str(f / "out"), "--direction", "7"], ["--direction", "1-6", "'7'"]


def case_train_lr_negative(i, f):
    return ["train", "--data", str(i.cohort), "--out", str(f / "out"), "--lr=-0.1"], ["--lr", "a finite number > 0", "'-0.1'"]


def case_train_kind(i, f):
    return ["train", "--data", str(i.cohort), "--out", str(f / "out"), "--kind", "gan"], ["--kind", "choose from", "'gan'"]


def case_train_device(i, f):
    return ["train", "--data", str(i.cohort), "--out", str(f / "out"), "--device", "tpu"], ["--device", "choose from", "'tpu'"]


def case_train_fp16_on_the_cpu(i, f):
    return ["train", "--kind", "tensor-unet", "--data", str(i.cohort), "--out", str(f / "out"), "--amp", "fp16",
            "--device", "cpu"], ["--amp", "fp16 needs a CUDA GPU", "fp16 on cpu"]


def case_train_cuda_without_gpu(i, f):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: --device cuda is valid here")
    return ["train", "--kind", "tensor-unet", "--data", str(i.cohort), "--out", str(f / "out"), "--device", "cuda"], \
        ["--device", "cuda needs a CUDA GPU", "sees no CUDA GPU"]


def case_train_tensor_unet_lambda_l1(i, f):
    return ["train", "--kind", "tensor-unet", "--data", str(i.cohort), "--out", str(f / "out"), "--lambda-l1", "50"], \
        ["--lambda-l1", "left out with --kind tensor-unet", "no discriminator", "50.0"]


def case_train_tensor_unet_quantise(i, f):
    return ["train", "--kind", "tensor-unet", "--data", str(i.cohort), "--out", str(f / "out"), "--quantise-8bit"], \
        ["--quantise-8bit", "left out with --kind tensor-unet", "full precision", "given"]


def case_train_tensor_unet_intensity(i, f):
    return ["train", "--kind", "tensor-unet", "--data", str(i.cohort), "--out", str(f / "out"), "--depth", "5",
            "--intensity", "paper"], ["--intensity", "relative or left out with --kind tensor-unet", "found 'paper'"]


def case_train_tensor_unet_depth(i, f):  # used to pad 32 x 32 slices to 512 x 512 without a word
    return ["train", "--kind", "tensor-unet", "--data", str(i.cohort), "--out", str(f / "out"), "--depth", "9"], \
        ["--depth", "expected at most 5 for 32 x 32 slices", "found 9: 512 x 512 slices, 256 times the pixels"]


def case_train_init_from_pix2pix(i, f):
    return ["train", "--init-from", str(i.models), "--data", str(i.cohort), "--out", str(f / "out")], \
        ["--init-from", "expected a tensor-unet package", "a pix2pix-per-direction package"]


def case_train_pix2pix_workers(i, f):  # its slices are in memory: the option would do nothing
    return ["train", "--kind", "pix2pix-per-direction", "--data", str(i.cohort), "--out", str(f / "out"), "--workers",
            "2"], ["--workers", "left out with --kind pix2pix-per-direction", "held in memory", "found 2"]


def case_train_init_from_missing(i, f):
    return ["train", "--init-from", str(f / "nope"), "--data", str(i.cohort), "--out", str(f / "out")], \
        ["manifest.json", "a DTISynth model folder with manifest.json", "no manifest.json"]


def case_train_out_is_a_file(i, f):
    (f / "out").write_text("keep me")
    return ["train", "--data", str(i.cohort), "--out", str(f / "out"), "--epochs", "1"], \
        [str(f / "out"), "expected an output folder", "an existing file"]


def case_review_create_missing(i, f):
    return ["review", "create", "--original", str(f / "nope"), "--synthetic", str(i.synthetic), "--out", str(f / "out")], \
        ["nope", "expected", "found"]


def case_review_create_maps(i, f):
    return ["review", "create", "--original", str(i.cohort), "--synthetic", str(i.synthetic), "--out", str(f / "out"),
            "--maps", "fa,t2"], ["maps", "expected", "t2"]


def case_review_create_readers0(i, f):
    return ["review", "create", "--original", str(i.cohort), "--synthetic", str(i.synthetic), "--out", str(f / "out"),
            "--readers", "0"], ["readers", "expected", "0"]


def case_review_create_port(i, f):
    return ["review", "create", "--original", str(i.cohort), "--synthetic", str(i.synthetic), "--out", str(f / "out"),
            "--port", "70000"], ["--port", "a port number from 1 to 65535", "'70000'"]


def case_review_create_practice_negative(i, f):
    return ["review", "create", "--original", str(i.cohort), "--synthetic", str(i.synthetic), "--out", str(f / "out"),
            "--practice", "-1"], ["--practice", "a number of practice cases >= 0", "-1"]


def case_review_create_practice_of_a_study_subject(i, f):
    return ["review", "create", "--original", str(i.cohort), "--synthetic", str(i.synthetic), "--out", str(f / "out"),
            "--practice", "1", "--practice-original", str(i.cohort), "--practice-synthetic", str(i.synthetic)], [
        str(i.cohort), "practice subjects that are not study subjects", "study subject"]


def case_review_add_reader_taken(i, f):
    return ["review", "add-reader", str(i.study), "--name", "reader-1"], ["reader name", "a name no other reader",
                                                                           "'reader-1'"]


def case_review_add_reader_blank(i, f):
    return ["review", "add-reader", str(i.study), "--name", ""], [
        "reader name", "expected a name with at least one visible character", "found ''"]


def case_review_add_reader_spaces(i, f):
    return ["review", "add-reader", str(i.study), "--name", "   "], [
        "reader name", "expected a name with at least one visible character", "found '   '"]


def case_review_create_readers_blank(i, f):
    return ["review", "create", "--original", str(i.cohort), "--synthetic", str(i.synthetic), "--out", str(f / "out"),
            "--readers", "ann,,bob"], ["--readers", "a comma list of names, each with at least one visible character",
                                       "'ann,,bob'"]


def case_review_reissue_unknown(i, f):
    return ["review", "reissue", str(i.study), "--reader", "nobody"], ["--reader", "one of the study's readers",
                                                                        "'nobody'"]


def case_review_serve_not_a_study(i, f):
    (f / "notastudy").mkdir()
    return ["review", "serve", str(f / "notastudy")], ["notastudy", "expected", "found"]


def case_review_analyze_not_sqlite(i, f):
    (f / "s").mkdir()
    (f / "s" / "study.sqlite").write_bytes(b"not a database" * 100)
    return ["review", "analyze", str(f / "s"), "--out", str(f / "out")], ["study.sqlite", "expected", "found"]


def case_review_export_out_is_a_folder(i, f):
    (f / "out").mkdir()
    return ["review", "export", str(i.study), "--out", str(f / "out")], [str(f / "out"), "an output file name",
                                                                        "an existing folder"]


def case_review_lock_missing(i, f):
    return ["review", "lock", str(f / "nostudy")], ["nostudy", "expected", "found"]


def case_models_import_missing(i, f):
    return ["models", "--import", str(f / "nopkg"), "--into", str(f / "out")], ["nopkg", "a model package", "no such file"]


def case_models_import_without_into(i, f):
    return ["models", "--import", str(i.models)], ["--import", "--into DIR", "no --into"]


def case_models_import_escaping_zip(i, f):
    import zipfile

    with zipfile.ZipFile(f / "pkg.zip", "w") as archive:
        archive.writestr("../evil/manifest.json", "{}")
    return ["models", "--import", str(f / "pkg.zip"), "--into", str(f / "out")], ["pkg.zip", "a zip of one model folder",
                                                                                 "'../evil/manifest.json'"]


def case_models_import_bad_manifest(i, f):
    models = corrupt_models(f, lambda m: _set(m, "b_value", -1000))
    return ["models", "--import", str(models), "--into", str(f / "out")], ["manifest.json", "b_value to be a b-value", "-1000"]


def case_models_import_unlisted_member(i, f):
    import zipfile

    with zipfile.ZipFile(f / "pkg.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(i.models.iterdir()):
            archive.write(path, f"pkg/{path.name}")
        with archive.open("pkg/filler.bin", "w") as member:  # 64 MiB of zeros, a few kB compressed
            for _ in range(64):
                member.write(bytes(1024**2))
    return ["models", "--import", str(f / "pkg.zip"), "--into", str(f / "out")], [
        "pkg.zip", "only the files its manifest lists", "'pkg/filler.bin'"]


def _package_with(i, f, name, make):
    """A copy of the tiny package in f/pkg whose listed file `name` is replaced by make(path)."""
    package = f / "pkg"
    shutil.copytree(i.models, package)
    (package / name).unlink()
    make(package / name)
    return package


def case_models_import_link_to_dev_zero(i, f):  # the copy used to fill the disk
    package = _package_with(i, f, "direction_1.safetensors", lambda path: path.symlink_to("/dev/zero"))
    return ["models", "--import", str(package), "--into", str(f / "out")], [
        "direction_1.safetensors", "expected a regular file", "found a symbolic link to /dev/zero"]


def case_models_import_link_loop(i, f):
    def loop(path):  # direction_1.safetensors -> f/b -> direction_1.safetensors
        (f / "b").symlink_to(path)
        path.symlink_to(f / "b")

    package = _package_with(i, f, "direction_1.safetensors", loop)
    return ["models", "--import", str(package), "--into", str(f / "out")], [
        "direction_1.safetensors", "expected a regular file", "found a symbolic link loop"]


def case_models_import_link_to_outside_folder(i, f):  # used to copy the outside folder whole
    (f / "outside").mkdir()
    (f / "outside" / "private.txt").write_text("not the package's")
    package = _package_with(i, f, "input_check.safetensors", lambda path: path.symlink_to(f / "outside"))
    return ["models", "--import", str(package), "--into", str(f / "out")], [
        "input_check.safetensors", "expected a regular file", f"found a symbolic link to {f / 'outside'}"]


def case_synth_models_link_to_dev_zero(i, f):  # hashing it used to hang synthesize
    package = _package_with(i, f, "direction_4.safetensors", lambda path: path.symlink_to("/dev/zero"))
    return _synth(i.dwi3, f / "out", "--models", package), [
        "direction_4.safetensors", "expected a regular file", "found a symbolic link to /dev/zero"]


def case_realism_missing_scan(i, f):
    return ["realism", "--real", str(f / "nope.nii.gz"), "--out", str(f / "out")], ["nope.nii.gz", "expected an existing",
                                                                                   "no such file"]


def case_realism_schemes(i, f):
    return ["realism", "--real", str(i.dwi30), "--out", str(f / "out"), "--schemes", "syn,gaussian"], \
        ["--schemes", "a comma list from syn,sampled", "'syn,gaussian'"]


def case_realism_three_directions(i, f):
    return ["realism", "--real", str(phantom_dwi(f, np.eye(3))), "--out", str(f / "out")], \
        ["dwi.nii.gz", "at least 6 diffusion directions", "3 diffusion-weighted volumes"]


# --- bids: a cohort run never touches the raw dataset; one bad session fails alone -----------------------

def _bids(dataset, out, models, *extra):
    return ["bids", str(dataset), str(out), "participant", "--workers", "0", "--device", "cpu", "--models", str(models),
            *map(str, extra)]


def _one_subject_dataset(i, f, subject="sub-001"):
    """f/ds: the cohort's dataset_description.json and one subject's dwi folder."""
    shutil.copytree(i.cohort / subject / "dwi", f / "ds" / subject / "dwi")
    shutil.copy(i.cohort / "dataset_description.json", f / "ds")
    return f / "ds"


def case_bids_out_is_the_dataset(i, f):
    return _bids(i.cohort, i.cohort, i.models), [str(i.cohort), "expected a folder outside the BIDS dataset or inside "
                                                 "its derivatives/", "found the BIDS dataset itself"]


def case_bids_folders_swapped(i, f):
    derivatives = f / "derivatives"  # DTISynth's derivatives of the cohort, given as the input
    derivatives.mkdir()
    from DTISynthLib.service.cohort import PIPELINE_DESCRIPTION
    (derivatives / "dataset_description.json").write_text(json.dumps({
        "Name": "d", "BIDSVersion": "1.10.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "DTISynth", "Description": PIPELINE_DESCRIPTION}]}))
    return _bids(derivatives, i.cohort, i.models), [str(derivatives), "expected a BIDS dataset of acquired DWIs",
                                                     "DTISynth's own derivatives (BIDS_DIR and OUT_DIR swapped?)"]


def case_bids_out_inside_a_subject(i, f):
    out = i.cohort / "sub-001" / "dtisynth"
    return _bids(i.cohort, out, i.models), [str(out), "inside its derivatives/",
                                            f"found a folder inside the BIDS dataset {i.cohort}"]


def case_bids_out_holds_raw_data(i, f):
    other = _one_subject_dataset(i, f)  # another raw dataset as the output
    return _bids(i.cohort, other, i.models), [str(other), "a new folder or one holding DTISynth's own derivatives",
                                              "a dataset_description.json DTISynth did not write"]


def case_bids_out_holds_subject_files(i, f):
    out = f / "out"
    shutil.copytree(i.cohort / "sub-002" / "dwi", out / "sub-002" / "dwi")
    return _bids(i.cohort, out, i.models), [str(out), "a new folder or one holding DTISynth's own derivatives",
                                            "8 file(s) under sub-*/ that DTISynth did not write (sub-002/dwi/sub-002_acq-dti6_dwi.bval"]


def case_bids_not_a_dataset(i, f):
    (f / "ds").mkdir()
    return _bids(f / "ds", f / "out", i.models), [str(f / "ds"), "a BIDS dataset (a folder with dataset_description.json)",
                                                  "none there"]


def case_bids_description_list(i, f):
    dataset = _one_subject_dataset(i, f)
    (dataset / "dataset_description.json").write_text("[1, 2]")
    return _bids(dataset, f / "out", i.models), ["dataset_description.json", "expected a JSON object", "a JSON list"]


def case_bids_participant_label(i, f):
    return _bids(i.cohort, f / "out", i.models, "--participant-label", "009"), \
        ["--participant-label", "participants of", "001, 002", "found 009"]


def case_bids_session_label_without_sessions(i, f):
    return _bids(i.cohort, f / "out", i.models, "--session-label", "9"), \
        ["--session-label", "expected sessions of", "none: ", "has no ses-* folders", "found 9"]


def case_bids_workers_beyond_the_cores(i, f):
    return _bids(i.cohort, f / "out", i.models)[:4] + ["--workers", "100000"], \
        ["--workers", "an integer from 0 to", "(this machine's cores)", "'100000'"]


def case_bids_scheduler_scheme(i, f):
    return _bids(i.cohort, f / "out", i.models)[:4] + ["--scheduler", "ftp://127.0.0.1:8786"], \
        ["--scheduler", "a Dask scheduler address like tcp://host:8786", "'ftp://127.0.0.1:8786'"]


def case_bids_scheduler_unreachable(i, f):
    return _bids(i.cohort, f / "out", i.models)[:4] + ["--scheduler", "tcp://127.0.0.1:9"], \
        ["--scheduler", "the address of a Dask scheduler reachable within 10 s", "tcp://127.0.0.1:9: "]


def case_bids_workers_with_scheduler(i, f):
    return _bids(i.cohort, f / "out", i.models)[:4] + ["--workers", "1", "--scheduler", "tcp://127.0.0.1:9"], \
        ["--workers", "no --workers with --scheduler", "--workers 1 with --scheduler tcp://127.0.0.1:9"]


_HELD_LOCKS = contextlib.ExitStack()  # the locks case_bids_output_locked holds, until the tests end


def case_bids_output_locked(i, f):
    from DTISynthLib.service.cohort import output_lock

    (f / "out").mkdir()
    _HELD_LOCKS.enter_context(output_lock(f / "out"))  # as another run writing there (a flock of this process's)
    return _bids(i.cohort, f / "out", i.models), [str(f / "out"), "an output folder no other run is writing to",
                                                  f"a run of process {os.getpid()} holding .dtisynth.lock"]


def case_bids_garbled_bval(i, f):
    dataset = _one_subject_dataset(i, f)
    bval = dataset / "sub-001" / "dwi" / "sub-001_acq-dwi3_dwi.bval"
    bval.write_text("zero thousand\n")
    return _bids(dataset, f / "out", i.models), ["0 session(s) synthesized, 0 done before, 1 failed",
                                                 f"sub-001: {bval}: expected an FSL .bval file of numbers", "unreadable"]


def case_bids_misnamed_file(i, f):
    dataset = _one_subject_dataset(i, f)
    folder = dataset / "sub-001" / "dwi"
    for suffix in (".nii.gz", ".bval", ".bvec"):
        (folder / f"sub-001_acq-dwi3_dwi{suffix}").rename(folder / f"sub-002_acq-dwi3_dwi{suffix}")
    return _bids(dataset, f / "out", i.models), ["1 failed", f"sub-001: {folder / 'sub-002_acq-dwi3_dwi.nii.gz'}: "
                                                 "expected a name starting sub-001; found sub-002_acq-dwi3_dwi.nii.gz"]


def case_bids_symlink_loop(i, f):
    dataset = _one_subject_dataset(i, f)
    dwi = dataset / "sub-001" / "dwi" / "sub-001_acq-dwi3_dwi.nii.gz"
    dwi.unlink()
    dwi.symlink_to(dataset / "loop.nii.gz")
    (dataset / "loop.nii.gz").symlink_to(dwi)
    return _bids(dataset, f / "out", i.models), ["1 failed", f"sub-001: {dwi}: expected a readable file",
                                                 "Too many levels of symbolic links"]


def case_bids_files_beside_sessions(i, f):
    dataset = _one_subject_dataset(i, f)
    session = dataset / "sub-001" / "ses-1" / "dwi"
    session.mkdir(parents=True)
    for suffix in (".nii.gz", ".bval", ".bvec"):  # ses-1 holds the DTI only; the 3-direction DWI lies beside it
        shutil.copy(dataset / "sub-001" / "dwi" / f"sub-001_acq-dti6_dwi{suffix}",
                    session / f"sub-001_ses-1_acq-dti6_dwi{suffix}")
    return _bids(dataset, f / "out", i.models), [
        "2 failed", f"sub-001: {dataset / 'sub-001' / 'dwi'}: expected the DWI series of a subject with sessions inside "
        "its ses-* folders (as BIDS keeps them); found 2 series beside ses-1",
        "sub-001_ses-1: ", "expected a 3-direction DWI series"]


CASES = [  # (id, class, build)
    ("fit-missing-file", "file", case_fit_missing),
    ("fit-3d-image", "file", case_fit_3d),
    ("fit-bval-count", "file", case_fit_bval_count),
    ("fit-bval-text", "file", case_fit_bval_text),
    ("fit-zero-bvec", "file", case_fit_bvec_zero),
    ("fit-nan-voxels", "file", case_fit_nan_voxels),
    ("fit-zero-b0", "file", case_fit_zero_b0),
    ("fit-negated-dwi", "science", case_fit_negated_dwi),
    ("fit-truncated", "file", case_fit_truncated),
    ("fit-garbage", "file", case_fit_garbage),
    ("fit-huge-header", "file", case_fit_huge_header),
    ("fit-complex", "science", case_fit_complex),
    ("fit-singular-affine", "file", case_fit_singular_affine),
    ("fit-coplanar-gradients", "science", case_fit_coplanar),
    ("fit-three-directions", "science", case_fit_three_directions),
    ("fit-multishell", "science", case_fit_multishell),
    ("fit-absent-shell", "usage", case_fit_absent_shell),
    ("fit-zero-mask", "science", case_fit_zero_mask),
    ("fit-mask-grid", "file", case_fit_mask_grid),
    ("fit-mask-affine", "file", case_fit_mask_affine),
    ("fit-unknown-map", "usage", case_fit_unknown_map),
    ("fit-unknown-method", "usage", case_fit_unknown_method),
    ("fit-unknown-extension", "file", case_fit_unknown_extension),
    ("fit-empty-folder", "file", case_fit_empty_folder),
    ("fit-nrrd-without-gradients", "file", case_fit_nrrd_without_gradients),
    ("fit-nrrd-text-b", "file", case_fit_nrrd_text_b),
    ("fit-out-is-a-file", "output", case_fit_out_is_a_file),
    ("fit-out-under-a-file", "output", case_fit_out_under_a_file),
    ("fit-out-not-permitted", "output", case_fit_out_not_permitted),
    ("simulate-n0", "usage", case_simulate_n0),
    ("simulate-snr0", "usage", case_simulate_snr0),
    ("simulate-snr-negative", "usage", case_simulate_snr_negative),
    ("simulate-grid-text", "usage", case_simulate_grid_text),
    ("simulate-grid-huge", "usage", case_simulate_grid_huge),
    ("simulate-sample-from-missing", "file", case_simulate_sample_from_missing),
    ("simulate-scheme", "usage", case_simulate_scheme),
    ("simulate-seed-text", "usage", case_simulate_seed_text),
    ("simulate-out-is-a-file", "output", case_simulate_out_is_a_file),
    ("pairs-b-negative", "usage", case_pairs_b_negative),
    ("pairs-b-nan", "usage", case_pairs_b_nan),
    ("pairs-far-directions", "science", case_pairs_far_directions),
    ("pairs-too-few", "science", case_pairs_too_few),
    ("pairs-mode", "usage", case_pairs_mode),
    ("pairs-missing-bvec", "file", case_pairs_missing_bvec),
    ("synthesize-missing-dwi", "file", case_synth_missing_dwi),
    ("synthesize-two-directions", "science", case_synth_two_directions),
    ("synthesize-far-axes", "science", case_synth_far_axes),
    ("synthesize-wrong-b", "science", case_synth_wrong_b),
    ("synthesize-missing-b0", "file", case_synth_missing_b0),
    ("synthesize-far-b0", "science", case_synth_far_b0),
    ("synthesize-noise-b0", "science", case_synth_noise_b0),
    ("synthesize-negated-dwi", "science", case_synth_negated_dwi),
    ("synthesize-b0-4d-without-bval", "file", case_synth_b0_4d_without_bval),
    ("synthesize-b0-4d-without-b0-volume", "file", case_synth_b0_4d_without_b0_volume),
    ("synthesize-missing-models", "file", case_synth_missing_models),
    ("synthesize-manifest-not-json", "manifest", case_synth_manifest_not_json),
    ("synthesize-manifest-no-sha256", "manifest", case_synth_manifest_no_sha256),
    ("synthesize-manifest-huge-grid", "manifest", case_synth_manifest_huge_grid),
    ("synthesize-manifest-zero-voxel", "manifest", case_synth_manifest_zero_voxel),
    ("synthesize-manifest-grid-not-divisible", "manifest", case_synth_manifest_grid_not_divisible),
    ("synthesize-manifest-five-directions", "manifest", case_synth_manifest_five_directions),
    ("synthesize-manifest-escaping-file", "manifest", case_synth_manifest_escaping_file),
    ("synthesize-weights-changed", "manifest", case_synth_weights_changed),
    ("synthesize-input-check-ratio", "manifest", case_synth_input_check_ratio),
    ("synthesize-input-check-shapes", "manifest", case_synth_input_check_shapes),
    ("models-fit-input-check-no-data", "usage", case_models_fit_input_check_no_data),
    ("synthesize-cuda-without-gpu", "usage", case_synth_cuda),
    ("synthesize-output-b0", "usage", case_synth_output_b),
    ("synthesize-precision", "usage", case_synth_precision),
    ("synthesize-out-is-a-file", "output", case_synth_out_is_a_file),
    ("evaluate-missing-original", "file", case_evaluate_missing_original),
    ("evaluate-missing-synthetic", "file", case_evaluate_missing_synthetic),
    ("evaluate-no-common-subjects", "file", case_evaluate_no_common_subjects),
    ("evaluate-jobs0", "usage", case_evaluate_jobs0),
    ("evaluate-missing-atlas", "file", case_evaluate_missing_atlas),
    ("evaluate-out-is-a-file", "output", case_evaluate_out_is_a_file),
    ("scene-missing-results", "file", case_scene_missing_results),
    ("scene-missing-evaluation", "file", case_scene_missing_evaluation),
    ("scene-not-mrb", "usage", case_scene_not_mrb),
    ("scene-out-is-a-folder", "output", case_scene_out_is_a_folder),
    ("train-missing-data", "file", case_train_missing_data),
    ("train-empty-data", "file", case_train_empty_data),
    ("train-epochs0", "usage", case_train_epochs0),
    ("train-batch0", "usage", case_train_batch0),
    ("train-validation-fraction", "usage", case_train_validation_fraction),
    ("train-direction7", "usage", case_train_direction7),
    ("train-lr-negative", "usage", case_train_lr_negative),
    ("train-kind", "usage", case_train_kind),
    ("train-device", "usage", case_train_device),
    ("train-fp16-on-the-cpu", "usage", case_train_fp16_on_the_cpu),
    ("train-cuda-without-gpu", "usage", case_train_cuda_without_gpu),
    ("train-tensor-unet-lambda-l1", "usage", case_train_tensor_unet_lambda_l1),
    ("train-tensor-unet-quantise-8bit", "usage", case_train_tensor_unet_quantise),
    ("train-tensor-unet-intensity", "usage", case_train_tensor_unet_intensity),
    ("train-tensor-unet-depth", "usage", case_train_tensor_unet_depth),
    ("train-init-from-pix2pix", "usage", case_train_init_from_pix2pix),
    ("train-init-from-missing", "file", case_train_init_from_missing),
    ("train-pix2pix-workers", "usage", case_train_pix2pix_workers),
    ("train-out-is-a-file", "output", case_train_out_is_a_file),
    ("fit-unconvertible-dicom", "file", case_fit_unconvertible_dicom),
    ("synthesize-fifo", "file", case_synthesize_fifo),
    ("synthesize-fifo-bval", "file", case_synthesize_fifo_bval),
    ("review-create-missing", "file", case_review_create_missing),
    ("review-create-maps", "usage", case_review_create_maps),
    ("review-create-readers0", "usage", case_review_create_readers0),
    ("review-create-port", "usage", case_review_create_port),
    ("review-create-practice-negative", "usage", case_review_create_practice_negative),
    ("review-create-practice-of-a-study-subject", "usage", case_review_create_practice_of_a_study_subject),
    ("review-add-reader-taken", "usage", case_review_add_reader_taken),
    ("review-add-reader-blank", "usage", case_review_add_reader_blank),
    ("review-add-reader-spaces", "usage", case_review_add_reader_spaces),
    ("review-create-readers-blank", "usage", case_review_create_readers_blank),
    ("review-reissue-unknown", "usage", case_review_reissue_unknown),
    ("review-serve-not-a-study", "file", case_review_serve_not_a_study),
    ("review-analyze-not-sqlite", "file", case_review_analyze_not_sqlite),
    ("review-export-out-is-a-folder", "output", case_review_export_out_is_a_folder),
    ("review-lock-missing", "file", case_review_lock_missing),
    ("models-import-missing", "file", case_models_import_missing),
    ("models-import-without-into", "usage", case_models_import_without_into),
    ("models-import-escaping-zip", "manifest", case_models_import_escaping_zip),
    ("models-import-bad-manifest", "manifest", case_models_import_bad_manifest),
    ("models-import-unlisted-member", "manifest", case_models_import_unlisted_member),
    ("models-import-link-to-dev-zero", "manifest", case_models_import_link_to_dev_zero),
    ("models-import-link-loop", "manifest", case_models_import_link_loop),
    ("models-import-link-to-outside-folder", "manifest", case_models_import_link_to_outside_folder),
    ("synthesize-models-link-to-dev-zero", "manifest", case_synth_models_link_to_dev_zero),
    ("realism-missing-scan", "file", case_realism_missing_scan),
    ("realism-schemes", "usage", case_realism_schemes),
    ("realism-three-directions", "science", case_realism_three_directions),
    ("bids-out-is-the-dataset", "output", case_bids_out_is_the_dataset),
    ("bids-folders-swapped", "output", case_bids_folders_swapped),
    ("bids-out-inside-a-subject", "output", case_bids_out_inside_a_subject),
    ("bids-out-holds-raw-data", "output", case_bids_out_holds_raw_data),
    ("bids-out-holds-subject-files", "output", case_bids_out_holds_subject_files),
    ("bids-output-locked", "output", case_bids_output_locked),
    ("bids-not-a-dataset", "file", case_bids_not_a_dataset),
    ("bids-description-list", "file", case_bids_description_list),
    ("bids-participant-label", "usage", case_bids_participant_label),
    ("bids-session-label-without-sessions", "usage", case_bids_session_label_without_sessions),
    ("bids-workers-beyond-the-cores", "usage", case_bids_workers_beyond_the_cores),
    ("bids-scheduler-scheme", "usage", case_bids_scheduler_scheme),
    ("bids-scheduler-unreachable", "usage", case_bids_scheduler_unreachable),
    ("bids-workers-with-scheduler", "usage", case_bids_workers_with_scheduler),
    ("bids-garbled-bval", "file", case_bids_garbled_bval),
    ("bids-misnamed-file", "file", case_bids_misnamed_file),
    ("bids-symlink-loop", "file", case_bids_symlink_loop),
    ("bids-files-beside-sessions", "file", case_bids_files_beside_sessions),
]


def test_the_table_covers_every_command_and_class():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)
    commands = {c[0].split("-")[0] for c in CASES}
    assert commands >= {"fit", "simulate", "pairs", "synthesize", "evaluate", "scene", "train", "review", "models",
                        "realism", "bids"}
    assert {c[1] for c in CASES} == set(CLASSES)


def _out_paths(argv):
    """The output paths a command line names (bids: its OUT_DIR, the second positional argument)."""
    paths = [Path(argv[k + 1]) for k, a in enumerate(argv[:-1]) if a in ("--out", "--into")]
    return paths + ([Path(argv[2])] if argv[0] == "bids" else [])


@pytest.mark.parametrize("name, kind, build", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error_leaving_nothing(inputs, tmp_path, capsys, name, kind, build):
    folder = tmp_path / "case"
    folder.mkdir()
    argv, patterns = build(inputs, folder)
    outputs = _out_paths(argv)
    before = {"inputs": _hashes(inputs.root), "case": _hashes(folder)}
    existed = {p: p.exists() for p in outputs}
    capsys.readouterr()
    code = main(argv + ["--jsonl"])
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    assert code == 2, (code, captured.out[-2000:], captured.err[-2000:])
    assert events and events[-1]["event"] == "error", captured.out[-2000:]
    message = events[-1]["message"]
    for pattern in patterns:
        assert pattern in message, (pattern, message)
    assert "Traceback" not in captured.err
    for path in outputs:
        assert path.exists() == existed[path], f"{path} left behind"
    assert not list(folder.rglob(".dtisynth-*")), "staging folders left behind"
    assert _hashes(inputs.root) == before["inputs"], "an input changed"
    assert _hashes(folder) == before["case"], "an input of the case changed"


def test_a_usage_error_and_a_bad_file_exit_2_from_the_installed_command(tmp_path):
    for argv, expected in ((["simulate", "cohort", "--n", "0", "--seed", "1", "--out", str(tmp_path / "o")],
                            "--n: expected an integer >= 1"),
                           (["fit", str(tmp_path / "missing.nii.gz"), "--out", str(tmp_path / "o")], "no such file")):
        run = subprocess.run([sys.executable, "-m", "DTISynthLib", *argv], capture_output=True, text=True)
        assert run.returncode == 2 and expected in run.stderr and "Traceback" not in run.stderr, run.stderr
        assert not (tmp_path / "o").exists()


def _can_mount_in_a_namespace():
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=8k tmpfs /mnt"],
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("options, reason", [("ro", "a read-only file system"),
                                             ("size=12k", "no space left to write the outputs")],
                         ids=["read-only", "disk-full"])
def test_a_read_only_or_full_file_system_is_a_clear_error_leaving_nothing(inputs, tmp_path, options, reason):
    """A real file system of the kind (tmpfs, mounted in a private mount namespace), not a patched write."""
    if not _can_mount_in_a_namespace():
        pytest.skip("unshare cannot mount a tmpfs on this machine (no user or mount namespaces)")
    mount = tmp_path / "mnt"
    mount.mkdir()
    before = _hashes(inputs.root)
    script = (f"mount -t tmpfs -o {options} tmpfs {mount} && {{ {sys.executable} -m DTISynthLib fit {inputs.dwi30} "
              f"--out {mount}/results/fit --jsonl; echo \"exit $?\"; echo left:; ls -A {mount}; }}")
    run = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True)
    lines = run.stdout.splitlines()
    event = json.loads([line for line in lines if line.startswith("{")][-1])
    assert "exit 2" in lines, run.stdout + run.stderr
    assert event["event"] == "error" and f"{mount}/results/fit" in event["message"] and reason in event["message"], event
    assert "Traceback" not in run.stderr
    assert lines[-1] == "left:", lines  # the mount point is as it was: no folder, no staging, no partial file
    assert _hashes(inputs.root) == before


def test_scene_without_slicer_core_names_the_extra_to_install(inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "slicer", None)  # as if slicer-core were not installed
    assert main(["scene", "--results", str(inputs.results), "--out", str(tmp_path / "s.mrb"), "--jsonl"]) == 2
    message = json.loads(capsys.readouterr().out.splitlines()[-1])["message"]
    assert "pip install 'dtisynth[scene]'" in message and "no slicer-core in this Python" in message
    assert not (tmp_path / "s.mrb").exists()


def test_an_internal_error_is_a_bug_with_a_traceback_not_bad_input(inputs, tmp_path, monkeypatch):
    """Only InputError is bad input (exit 2); a numpy or torch ValueError inside is a bug: it propagates
    (the installed command prints its traceback and exits 1)."""
    import DTISynthLib.jobs.fit as fit_job

    def broken(args, reporter):
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr(fit_job, "run", broken)
    with pytest.raises(ValueError, match="broadcast"):
        main(["fit", str(inputs.dwi30), "--out", str(tmp_path / "o")])
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    code = "import sys, DTISynthLib.jobs.fit as f; f.run = lambda a, r: [][1]; from DTISynthLib.cli import main; " \
           "sys.exit(main(sys.argv[1:]))"
    run = subprocess.run([sys.executable, "-c", code, "fit", str(inputs.dwi30), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 1 and "Traceback" in run.stderr and "IndexError" in run.stderr


def test_ctrl_c_stops_a_command_with_one_line_and_leaves_nothing(tmp_path):
    """SIGINT (Ctrl-C) in the middle of a run: exit code 130, one line, no traceback, no output folder."""
    import signal
    import time

    out = tmp_path / "out"
    # SIGINT as a terminal leaves it, even when the tests run with it ignored (a background job's children
    # inherit SIG_IGN, and Python then installs no KeyboardInterrupt handler)
    run = subprocess.Popen([sys.executable, "-m", "DTISynthLib", "simulate", "cohort", "--n", "4", "--seed", "1",
                            "--grid", "96x96x60", "--out", str(out)], stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not list(out.glob(".dtisynth-staging-*")) and time.monotonic() < deadline:  # staging: it is writing
        time.sleep(0.05)
    time.sleep(0.5)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "error: interrupted (Ctrl-C)" and "Traceback" not in stderr, stderr
    assert not out.exists()
