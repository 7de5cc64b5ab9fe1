"""Bad input: each case gets an InputError naming the file, the expectation and what was found."""

import gzip
import hashlib
import json
import re
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from conftest import fail_on_call

from DTISynthLib.core.dwi import DWI, check_b0_signal, check_dwi
from DTISynthLib.core.errors import InputError
from DTISynthLib.io.dicom import read_dicom_dwi
from DTISynthLib.io.files import load_dwi, load_mask, load_volume, save_dwi
from DTISynthLib.service import fit as fit_job
from DTISynthLib.service.requests import FitRequest
from DTISynthLib.simulation.numerical_phantom import make_fibre_phantom


@pytest.fixture
def phantom_files(tmp_path):
    dwi, _ = make_fibre_phantom(shape=(10, 9, 6))
    path = tmp_path / "dwi.nii.gz"
    save_dwi(path, check_dwi(dwi))
    return path, dwi


def _expect(path, pattern, call):
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert str(path) in message, message
    assert re.search(pattern, message), message
    return message


def test_3d_file_where_4d_expected(tmp_path, phantom_files):
    _, dwi = phantom_files
    path = tmp_path / "b0only.nii.gz"
    nib.save(nib.Nifti1Image(dwi.data[..., 0], dwi.affine), str(path))
    (tmp_path / "b0only.bval").write_text("0\n")
    (tmp_path / "b0only.bvec").write_text("0\n0\n0\n")
    _expect(path, r"expected a 4D image .*found 3D data of shape \(10, 9, 6\)", lambda: load_dwi(path))


def test_bval_count_disagrees(phantom_files):
    path, _ = phantom_files
    bval = path.with_name("dwi.bval")
    bval.write_text("0 1000 1000\n")
    _expect(bval, r"expected 7 b-values, one per volume.*found 3 b-values", lambda: load_dwi(path))


def test_bvec_count_disagrees(phantom_files):
    path, _ = phantom_files
    bvec = path.with_name("dwi.bvec")
    bvec.write_text("0 1 0\n0 0 1\n0 0 0\n")
    _expect(bvec, r"expected 7 vectors.*found 3 vectors", lambda: load_dwi(path))


@pytest.mark.parametrize("vector, found", [("0 0 0", r"\[0.0, 0.0, 0.0\] \(norm 0.0000\) on volume 3"),
                                           ("0.5 0 0", r"norm 0.5000\) on volume 3")])
def test_zero_or_non_unit_vector_on_diffusion_weighted_volume(phantom_files, vector, found):
    path, _ = phantom_files
    bvec = path.with_name("dwi.bvec")
    columns = np.loadtxt(bvec)
    columns[:, 3] = [float(v) for v in vector.split()]
    np.savetxt(bvec, columns)
    _expect(path, r"expected a unit gradient vector on every diffusion-weighted volume.*" + found,
            lambda: load_dwi(path))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_voxels(tmp_path, phantom_files, bad):
    _, dwi = phantom_files
    data = dwi.data.copy()
    data[2, 3, 4, 5] = bad
    dwi.data, dwi.source = data, str(tmp_path / "x.nrrd")
    save_dwi(tmp_path / "x.nrrd", dwi)
    _expect(tmp_path / "x.nrrd", r"expected finite voxel values.*1 NaN or inf values, the first at voxel \(2, 3, 4, 5\)",
            lambda: load_dwi(tmp_path / "x.nrrd"))


def test_all_zero_b0(tmp_path, phantom_files):
    _, dwi = phantom_files
    dwi.data = dwi.data.copy()
    dwi.data[..., 0] = 0
    save_dwi(tmp_path / "z.nii.gz", dwi)
    _expect(tmp_path / "z.nii.gz", r"expected a b=0 volume with signal.*every b=0 voxel is zero",
            lambda: load_dwi(tmp_path / "z.nii.gz"))


def test_a_negated_or_signed_b0_is_refused_and_scanner_noise_below_zero_is_not(tmp_path, phantom_files):
    """A DWI multiplied by -1 (or a signed one: mean-subtracted) used to give all-zero maps, the fit
    without a word: now refused by its b=0. Zero-mean noise below 0, as in a real-valued
    reconstruction's background, is accepted."""
    _, dwi = phantom_files
    for name, data, share in (("negated", -dwi.data, "100%"), ("signed", dwi.data - dwi.data.mean(), r"\d\d%")):
        save_dwi(tmp_path / f"{name}.nii.gz", DWI(data, dwi.affine, dwi.bvals, dwi.gradients))
        _expect(tmp_path / f"{name}.nii.gz", r"expected a b=0 volume with signal, mostly positive; found b=0 signal "
                rf"mostly negative: {share} of its non-zero voxels below 0 \(a negated or signed image\?\)",
                lambda: load_dwi(tmp_path / f"{name}.nii.gz"))
    noisy = dwi.data + np.random.default_rng(0).normal(0, 0.05 * dwi.data[..., 0].max(), dwi.data.shape)
    assert 0.1 < (noisy[..., 0] < 0).mean() < 0.5  # a real-valued image's background
    save_dwi(tmp_path / "noisy.nii.gz", DWI(noisy.astype(np.float32), dwi.affine, dwi.bvals, dwi.gradients))
    load_dwi(tmp_path / "noisy.nii.gz")


def test_every_shared_real_series_has_a_b0_the_rule_accepts_even_with_real_valued_noise():
    """The b=0 sign rule on the 33 shared scanner series (none has a voxel below 0), and on each with
    zero-mean noise of 5 % of its b=0's 99th percentile added (a real-valued reconstruction's
    background below 0 in places); negated, each is refused."""
    from conftest import SHARED, real_dwi_path

    names = sorted(p.name for p in (SHARED / "data" / "real").glob("dev_*") if p.is_dir())
    if not names:
        real_dwi_path("dev_philips_achieva_b2000")  # skips (or fails on CI) with the reason
    rng = np.random.default_rng(0)
    for name in names:
        dwi = load_dwi(real_dwi_path(name))
        b0 = dwi.data[..., dwi.is_b0]
        noisy = b0 + rng.normal(0, 0.05 * np.percentile(b0, 99), b0.shape)
        assert (noisy < 0).any(), name
        check_b0_signal(name, noisy)
        with pytest.raises(InputError, match="b=0 signal mostly negative"):
            check_b0_signal(name, -b0)


def test_mask_with_disagreeing_affine(tmp_path, phantom_files):
    path, dwi = phantom_files
    shifted = dwi.affine.copy()
    shifted[0, 3] += 2.0
    nib.save(nib.Nifti1Image(np.ones(dwi.data.shape[:3], np.uint8), shifted), str(tmp_path / "mask.nii.gz"))
    _expect(tmp_path / "mask.nii.gz", r"expected a mask with the DWI's affine.*differing by up to 2 mm",
            lambda: load_mask(tmp_path / "mask.nii.gz", load_dwi(path)))


def test_mask_with_disagreeing_grid(tmp_path, phantom_files):
    path, dwi = phantom_files
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), dwi.affine), str(tmp_path / "mask.nii.gz"))
    _expect(tmp_path / "mask.nii.gz", r"expected a mask on the DWI grid \(10, 9, 6\).*found grid \(4, 4, 4\)",
            lambda: load_mask(tmp_path / "mask.nii.gz", load_dwi(path)))


def test_truncated_nifti(tmp_path, phantom_files):
    path, _ = phantom_files
    raw = gzip.decompress(path.read_bytes())
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    for side in ("bval", "bvec"):
        (tmp_path / f"broken.{side}").write_text(path.with_name(f"dwi.{side}").read_text())
    _expect(broken, rf"expected the \d+ bytes its header describes; found {len(raw) // 2} bytes uncompressed "
            r"\(a damaged or truncated file\)", lambda: load_dwi(broken))


def test_corrupt_nifti_header(tmp_path, phantom_files):
    path, _ = phantom_files
    broken = tmp_path / "garbage.nii"
    broken.write_bytes(b"not a nifti file at all" * 20)
    for side in ("bval", "bvec"):
        (tmp_path / f"garbage.{side}").write_text(path.with_name(f"dwi.{side}").read_text())
    _expect(broken, r"expected a readable NIfTI file", lambda: load_dwi(broken))


def test_truncated_nrrd(tmp_path, phantom_files):
    _, dwi = phantom_files
    save_dwi(tmp_path / "t.nrrd", dwi)
    content = (tmp_path / "t.nrrd").read_bytes()
    (tmp_path / "t.nrrd").write_bytes(content[: len(content) - 400])
    _expect(tmp_path / "t.nrrd", r"expected a readable NRRD file.*damaged or truncated", lambda: load_dwi(tmp_path / "t.nrrd"))


def test_nrrd_without_gradients(tmp_path, phantom_files):
    _, dwi = phantom_files
    save_dwi(tmp_path / "g.nhdr", dwi)
    header = (tmp_path / "g.nhdr").read_text().splitlines()
    (tmp_path / "g.nhdr").write_text("\n".join(line for line in header if "DWMRI_gradient_0004" not in line) + "\n")
    _expect(tmp_path / "g.nhdr", r"expected 7 DWMRI_gradient_NNNN keys.*no DWMRI_gradient_0004",
            lambda: load_dwi(tmp_path / "g.nhdr"))


def test_missing_and_unknown_files(tmp_path):
    _expect(tmp_path / "none.nrrd", "expected an existing NRRD file", lambda: load_dwi(tmp_path / "none.nrrd"))
    (tmp_path / "scan.mha").write_text("x")
    _expect(tmp_path / "scan.mha", r"expected a .nii, .nii.gz, .nrrd or .nhdr file", lambda: load_dwi(tmp_path / "scan.mha"))


def test_dicom_folder_errors(tmp_path, monkeypatch):
    folder = tmp_path / "dicom"
    folder.mkdir()
    (folder / "notes.txt").write_text("no DICOM here")
    _expect(folder, r"expected exactly one diffusion series.*found 0 diffusion series|expected a DICOM folder",
            lambda: read_dicom_dwi(folder))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "empty-path" / "python"))
    _expect(folder, r"expected dcm2niix on the PATH", lambda: read_dicom_dwi(folder))


def _checksums(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_failure_midway_leaves_no_partial_output_and_inputs_untouched(tmp_path, phantom_files, monkeypatch):
    path, _ = phantom_files
    out = tmp_path / "out"
    out.mkdir()
    (out / "fa.nii.gz").write_bytes(b"an earlier result the user keeps")
    inputs_before = _checksums(path.parent)
    fail_on_call(monkeypatch, fit_job, "save_volume", 4, OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        fit_job.fit(FitRequest(dwi=path, out=out))
    assert sorted(p.name for p in out.iterdir()) == ["fa.nii.gz"]
    assert (out / "fa.nii.gz").read_bytes() == b"an earlier result the user keeps"
    assert _checksums(path.parent) == inputs_before


def test_cli_reports_bad_input_as_json_error(tmp_path, phantom_files):
    path, _ = phantom_files
    path.with_name("dwi.bval").write_text("0 1000\n")
    inputs_before = _checksums(path.parent)
    run = subprocess.run([sys.executable, "-m", "DTISynthLib", "fit", str(path), "--out", str(tmp_path / "o"), "--jsonl"],
                         capture_output=True, text=True)
    assert run.returncode == 2
    event = json.loads(run.stdout.strip().splitlines()[-1])
    assert event["event"] == "error" and "dwi.bval" in event["message"] and "found 2 b-values" in event["message"]
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    assert _checksums(path.parent) == inputs_before


def test_fit_and_synthesize_refuse_a_negated_dwi_before_writing_anything(tmp_path, capsys):
    """Both used to write all-zero maps (exit 0) for a DWI multiplied by -1."""
    from DTISynthLib.cli import main
    from DTISynthLib.core.resources import RESOURCES

    dwi, _ = make_fibre_phantom(shape=(10, 9, 6), bvals=np.r_[0.0, np.full(3, 1000.0)],
                                gradients=np.vstack([np.zeros(3), np.eye(3)]))
    save_dwi(tmp_path / "dwi3.nii.gz", DWI(-dwi.data, dwi.affine, dwi.bvals, dwi.gradients))
    dwi, _ = make_fibre_phantom(shape=(10, 9, 6))
    save_dwi(tmp_path / "dwi.nii.gz", DWI(-dwi.data, dwi.affine, dwi.bvals, dwi.gradients))
    before = _checksums(tmp_path)
    for path, argv in ((tmp_path / "dwi.nii.gz", ["fit", str(tmp_path / "dwi.nii.gz")]),
                       (tmp_path / "dwi3.nii.gz", ["synthesize", "--dwi", str(tmp_path / "dwi3.nii.gz"), "--models",
                                                   str(RESOURCES / "Models" / "diagonal")])):
        capsys.readouterr()
        assert main(argv + ["--out", str(tmp_path / "o"), "--jsonl"]) == 2, argv
        event = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert event["event"] == "error" and f"{path}: expected a b=0 volume with signal, mostly positive; found b=0 " \
            "signal mostly negative: 100% of its non-zero voxels below 0" in event["message"], event
        assert not (tmp_path / "o").exists()
    assert _checksums(tmp_path) == before


def test_nrrd_in_an_unoriented_space_is_refused(tmp_path, phantom_files):
    _, dwi = phantom_files
    save_dwi(tmp_path / "s.nhdr", dwi)
    header = (tmp_path / "s.nhdr").read_text().replace("space: left-posterior-superior", "space: scanner-xyz")
    (tmp_path / "s.nhdr").write_text(header)
    _expect(tmp_path / "s.nhdr", r"expected an anatomical space.*found space 'scanner-xyz'", lambda: load_dwi(tmp_path / "s.nhdr"))


@pytest.mark.parametrize("name", ["huge.nii", "huge.nii.gz"])
def test_a_small_file_claiming_a_huge_image_is_refused_before_allocation(tmp_path, monkeypatch, name):
    """A 1 KB header claiming a 1.5 GB image: refused from the header and the file size, nothing
    read into memory (the data array is never asked for)."""
    header = nib.Nifti1Header()
    header.set_data_shape((1024, 1024, 360, 1))
    header.set_data_dtype(np.float32)
    header.set_sform(np.eye(4), code=1)
    path = tmp_path / name
    raw = header.binaryblock + b"\0" * 4 + b"\0" * 1000
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "__array__", lambda *a, **k: pytest.fail("data read"))
    _expect(path, r"expected the 1509949440 bytes its header describes; found 1352 bytes", lambda: load_volume(path))
