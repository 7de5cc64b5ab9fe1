"""Training: loss decrease, resume equivalence, distributed equivalence, packages, flips."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ddp_worker import tiny_data
from safetensors.torch import load_file

from DTISynthLib.core.errors import InputError
from DTISynthLib.generators.intensity import Intensity
from DTISynthLib.generators.package import read_manifest
from DTISynthLib.training.pix2pix import Pix2PixTrainer
from DTISynthLib.generators.runner import load_generators
from DTISynthLib.io.files import load_dwi
from DTISynthLib.service.requests import TrainingRequest
from DTISynthLib.service.train import train
from DTISynthLib.simulation.cohort import draw_subject, simulate_subject, write_cohort
from DTISynthLib.training.config import TrainConfig
from DTISynthLib.training.data import (
    find_pairs,
    flip_pair_index,
    load_subject_slices,
    split_subjects,
)

HERE = Path(__file__).resolve().parent
TINY = dict(ngf=4, ndf=4, depth=5)


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(tmp_path):
    x, y = tiny_data(n=2)
    config = TrainConfig(epochs=1, dropout=False, seed=1, lr=1e-3, ngf=8, ndf=4, depth=5)  # a test-scale lr
    trainer = Pix2PixTrainer(config, 0, (x, y), None, tmp_path)
    batch = [(torch.from_numpy(x), torch.from_numpy(y[:, :1]))]
    l1 = [trainer.train_step(batch)[2] for _ in range(40)]
    assert l1[-1] < 0.6 * l1[0], (l1[0], l1[-1])  # measured 0.349 -> 0.183


def _states(trainer):
    return {**{f"G.{k}": v for k, v in trainer.g_module.state_dict().items()},
            **{f"D.{k}": v for k, v in trainer.d_module.state_dict().items()}}


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    data = tiny_data(n=6)
    validation = tiny_data(n=2, seed=1)
    config = TrainConfig(epochs=2, decay_epochs=1, seed=5, **TINY)  # with dropout: RNG state must resume too
    straight = Pix2PixTrainer(config, 1, data, validation, tmp_path / "a")
    straight.run()
    first = Pix2PixTrainer(TrainConfig(epochs=1, seed=5, **TINY), 1, data, validation, tmp_path / "b")
    first.run()  # "interrupted" after epoch 1
    resumed = Pix2PixTrainer(config, 1, data, validation, tmp_path / "b")
    resumed.run(resume=True)
    assert resumed.epoch == 3
    a, b = _states(straight), _states(resumed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert straight.history == [dict(h, seconds=s["seconds"]) for h, s in zip(resumed.history, straight.history)]
    log = (tmp_path / "b" / "training_log_direction_2.csv").read_text().splitlines()
    assert len(log) == 4 and log[0].startswith("epoch,lr,loss_D")


def test_two_process_ddp_matches_single_process_with_the_same_global_batch(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parents[1]), str(HERE)]), OMP_NUM_THREADS="1")
    single = subprocess.run([sys.executable, str(HERE / "ddp_worker.py"), str(tmp_path / "single"), "2"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(HERE / "ddp_worker.py"), str(tmp_path / "ddp"), "1"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a = load_file(str(tmp_path / "single" / "params.safetensors"))
    b = load_file(str(tmp_path / "ddp" / "params.safetensors"))
    initial = load_file(str(tmp_path / "single" / "initial.safetensors"))
    assert a.keys() == b.keys() == initial.keys()
    moved = max(float((a[n] - initial[n]).abs().max()) for n in a)
    differs = max(float((a[n] - b[n]).abs().max()) for n in a)
    assert moved > 5e-4  # training changed the weights (measured 1.8e-3), so agreement means something
    assert differs < 1e-3 * moved, (differs, moved)  # measured 1.1e-7: float summation order only


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cohort")
    write_cohort(folder, 3, "sampled", seed=2, grid=(32, 32, 19))
    return folder


def test_slices_split_by_subject_and_intensity_modes(tiny_cohort):
    pairs = find_pairs(tiny_cohort)
    assert [p.subject for p in pairs] == ["sub-001", "sub-002", "sub-003"]
    training, validation = split_subjects([p.subject for p in pairs], 0.34, seed=0)
    assert len(validation) == 1 and not set(training) & set(validation)
    x, y, info = load_subject_slices(pairs[0], Intensity("paper"), (32, 32))
    assert x.shape == (19, 3, 32, 32) and y.shape == (19, 6, 32, 32)
    assert x.min() >= -1 and x.max() <= 1 and info["correlation"] > 0.9
    paper_8bit = Intensity("paper", quantise_8bit=True)
    x8, _, _ = load_subject_slices(pairs[0], paper_8bit, (32, 32))
    values = np.unique((x8 + 1) * 127.5)
    np.testing.assert_allclose(values, np.round(values), atol=1e-3)  # 8-bit levels only
    xr, yr, _ = load_subject_slices(pairs[0], Intensity("relative"), (32, 32))
    assert xr.max() <= 1 and yr.max() <= 1 and not np.allclose(xr, x)


def test_intensity_round_trip():
    signal = np.array([[0.0, 100.0, 254.0, 300.0]])
    b0 = np.array([[0.0, 400.0, 400.0, 400.0]])
    paper = Intensity("paper")
    np.testing.assert_allclose(paper.from_network(paper.to_network(signal, b0), b0), [[0, 100, 254, 255]], atol=1e-4)
    relative = Intensity("relative")
    np.testing.assert_allclose(relative.from_network(relative.to_network(signal, b0), b0), [[0, 100, 254, 300]],
                               atol=1e-3)


def test_flip_pairs_mirror_directions_on_a_symmetric_phantom():
    assert [flip_pair_index(i) for i in range(6)] == [1, 0, 2, 3, 5, 4]
    # A left-right mirrored (1, 0, 1) image is a (-1, 0, 1) image: on the (nearly) symmetric phantom,
    # flipped direction 2 must look like direction 1, much more than unflipped direction 2 does.
    subject = simulate_subject(draw_subject("s", 1, vary=False), "syn", grid=(64, 64, 38), noise=False)
    d1, d2 = subject.dti.data[..., 1], subject.dti.data[..., 2]
    brain = subject.tissue.sum(-1) > 0.5
    mirrored = np.flip(d2, axis=0)  # axis 0 is x (left-right) on the axial scanner grid
    error_flipped = np.abs(mirrored - d1)[brain].mean()
    error_unflipped = np.abs(np.flip(d1, axis=0) - d1)[brain].mean()
    assert error_flipped < 0.3 * error_unflipped, (error_flipped, error_unflipped)


def test_package_round_trip_and_the_loader_refuses_tampering(tmp_path, tiny_cohort):
    manifest_path = train(TrainingRequest(data=tiny_cohort, out=tmp_path / "m", direction=(1, 3), epochs=1, seed=0,
                                          **TINY, intensity="relative", grid=(32, 32), validation_fraction=0.34,
                                          weights_dtype="float16"))
    manifest = read_manifest(tmp_path / "m")
    assert [d["index"] for d in manifest.data["directions"]] == [1, 3]
    assert manifest.data["intensity"] == {"mode": "relative", "quantise_8bit": False} and manifest.data["grid"] == [32, 32]
    assert manifest.data["b_value"] == 1000.0 and len(manifest.data["training"]["validation_subjects"]) == 1
    assert {"val_L1", "val_PSNR", "val_SSIM"} <= set(manifest.data["directions"][0]["validation"])
    generators, _ = load_generators(tmp_path / "m")
    assert sorted(generators) == [1, 3] and not generators[1].training
    out = generators[3](torch.zeros(1, 3, 32, 32))
    assert out.shape == (1, 1, 32, 32)

    weights = tmp_path / "m" / "direction_3.safetensors"
    original = weights.read_bytes()
    tampered = bytearray(original)
    tampered[-10] ^= 0xFF
    weights.write_bytes(bytes(tampered))
    with pytest.raises(InputError, match=r"direction_3.safetensors: expected SHA-256 .* found SHA-256"):
        load_generators(tmp_path / "m")
    weights.write_bytes(original)

    text = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps(dict(text, format_version=99)))
    with pytest.raises(InputError, match=r"manifest.json: expected format_version 1 .* found format_version 99"):
        load_generators(tmp_path / "m")
    manifest_path.write_text(json.dumps(dict(text, format="pickle")))
    with pytest.raises(InputError, match="expected format 'dtisynth-pix2pix'"):
        load_generators(tmp_path / "m")
    manifest_path.write_text(json.dumps(text))
    garbage = b"\x80\x04not safetensors"
    weights.write_bytes(garbage)
    entry = next(d for d in text["directions"] if d["index"] == 3)
    import hashlib
    entry["sha256"] = hashlib.sha256(garbage).hexdigest()
    manifest_path.write_text(json.dumps(text))
    with pytest.raises(InputError, match="expected a safetensors weights file"):
        load_generators(tmp_path / "m", directions=[3])


def test_train_command_and_resume(tmp_path, tiny_cohort):
    command = [sys.executable, "-m", "DTISynthLib", "train", "--data", str(tiny_cohort), "--out", str(tmp_path / "m"),
               "--direction", "2", "--ngf", "4", "--ndf", "4", "--depth", "5", "--validation-fraction", "0.34",
               "--jsonl"]
    first = subprocess.run(command + ["--epochs", "1"], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(command + ["--epochs", "2", "--resume"], capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    events = [json.loads(line) for line in second.stdout.splitlines()]
    assert any("resumed after epoch 1" in e.get("message", "") for e in events)
    log = (tmp_path / "m" / "training_log_direction_2.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2"]
    assert read_manifest(tmp_path / "m").data["directions"][0]["epochs_trained"] == 2


def _write_upsampled_pair(pair, out_dir, b_scale=1.0):
    """The pair at half the in-plane voxel size (each voxel repeated 2 x 2: the same image), as a real
    scan of another resolution; b-values times b_scale."""
    from DTISynthLib.core.dwi import DWI
    from DTISynthLib.io.files import save_dwi

    out_dir.mkdir(parents=True)
    paths = []
    for path in (pair.dwi3, pair.dti6):
        dwi = load_dwi(path)
        affine = dwi.affine.copy()
        affine[:3, :2] = dwi.affine[:3, :2] / 2
        affine[:3, 3] = dwi.affine[:3, :3] @ [-0.25, -0.25, 0] + dwi.affine[:3, 3]  # voxel 0's centre
        data = np.repeat(np.repeat(dwi.data, 2, axis=0), 2, axis=1)
        target = out_dir / path.name.replace(pair.subject, "fine")
        save_dwi(target, DWI(data, affine, dwi.bvals * b_scale, dwi.gradients, str(target)))
        paths.append(target)
    return paths


def test_pairs_of_another_resolution_are_resampled_onto_the_model_grid(tiny_cohort, tmp_path):
    pairs = find_pairs(tiny_cohort)
    coarse = load_dwi(pairs[0].dti6)
    voxel = [float(v) for v in np.linalg.norm(coarse.affine[:3, :3], axis=0)]
    _write_upsampled_pair(pairs[0], tmp_path / "fine")
    fine = [p for p in find_pairs(tmp_path) if p.subject == "fine"][0]
    x, y, _ = load_subject_slices(pairs[0], Intensity("relative"), (32, 32), register=False)
    xf, yf, info = load_subject_slices(fine, Intensity("relative"), (32, 32), register=False, voxel=voxel)
    assert info["resampled_to_mm"] == pytest.approx(voxel[:2])
    np.testing.assert_allclose(xf, x, atol=1e-4)  # the same anatomy, not the centre quarter of it
    np.testing.assert_allclose(yf, y, atol=1e-4)
    cropped, _, _ = load_subject_slices(fine, Intensity("relative"), (32, 32), register=False)
    assert np.abs(cropped - x).max() > 0.1  # without the voxel size: the centre of the fine grid


def test_pairs_stored_in_sagittal_slices_train_on_their_axial_slices(tiny_cohort, tmp_path):
    # Synthesis reorders a sagittal stack to axial slices (core.model_grid.axial_slices); training must
    # show the networks the same slices, for both kinds' loaders.
    from DTISynthLib.core.dwi import DWI
    from DTISynthLib.core.model_grid import reorder_axes, slice_plane
    from DTISynthLib.io.files import save_dwi
    from DTISynthLib.training.data import load_dti_targets

    pair = find_pairs(tiny_cohort)[0]
    (tmp_path / "sag").mkdir()
    for path in (pair.dwi3, pair.dti6):
        dwi = load_dwi(path)
        data, affine = reorder_axes(dwi.data, dwi.affine, (1, 2, 0))
        target = tmp_path / "sag" / path.name.replace(pair.subject, "sag")
        save_dwi(target, DWI(data, affine, dwi.bvals, dwi.gradients, str(target)))
    sagittal = [p for p in find_pairs(tmp_path) if p.subject == "sag"][0]
    assert slice_plane(load_dwi(sagittal.dti6).affine) == "sagittal"
    x, y, _ = load_subject_slices(pair, Intensity("relative"), (32, 32), register=False)
    xs, ys, _ = load_subject_slices(sagittal, Intensity("relative"), (32, 32), register=False)
    np.testing.assert_allclose(xs, x, atol=1e-5)
    np.testing.assert_allclose(ys, y, atol=1e-5)
    (axial_targets, grid, voxel), (sagittal_targets, grid_s, voxel_s) = (load_dti_targets([p], 2) for p in (pair, sagittal))
    assert grid_s == grid and voxel_s == pytest.approx(voxel)
    for expected, found in zip(axial_targets[0][2:], sagittal_targets[0][2:], strict=True):  # b0, tensor, mask, affine
        np.testing.assert_allclose(found, expected, atol=1e-5)


def test_pairs_at_two_b_values_are_refused_for_signal_networks(tiny_cohort, tmp_path):
    from DTISynthLib.training.data import load_training_data

    data = tmp_path / "data"
    for pair in find_pairs(tiny_cohort)[:2]:
        for path in pair.dwi3.parent.glob(f"{pair.subject}_*"):
            (data / pair.subject).mkdir(parents=True, exist_ok=True)
            (data / pair.subject / path.name).write_bytes(path.read_bytes())
    _write_upsampled_pair(find_pairs(tiny_cohort)[2], data / "zz", b_scale=2.0)
    with pytest.raises(InputError, match="fine_acq-dti6.*b-value of the first pair, 1000.*b = 2000"):
        load_training_data(data, Intensity("relative"), 5, (32, 32), validation_fraction=0, register=False)


def test_a_depth_the_slices_cannot_hold_is_refused_not_padded(tiny_cohort, tmp_path, capsys):
    """The slices are padded to a multiple of 2**depth: --depth 9 on 32 x 32 slices trained on 512 x 512
    (256 times the pixels) without a word. Allowed: 2**depth below twice the slices' larger side, so
    the padded side stays below twice it; a --grid given is taken as given (divisible by 2**depth)."""
    from DTISynthLib.cli import main
    from DTISynthLib.training.data import default_grid, max_depth, training_grid

    assert [max_depth((s, s)) for s in (8, 32, 33, 48, 64, 65, 80, 128, 129)] == [3, 5, 6, 6, 6, 7, 7, 7, 8]
    for side in (20, 32, 48, 80, 100, 128, 200):
        assert default_grid((side, side // 2), max_depth((side, side)))[0] < 2 * side  # below twice the side
        assert default_grid((side, side // 2), max_depth((side, side)) + 1)[0] >= 2 * side  # one more: twice or more
    assert training_grid((80, 64, 40), 7) == (128, 128) and training_grid((48, 40, 9), 6) == (64, 64)
    with pytest.raises(InputError, match=r"--depth: expected at most 6 for 48 x 40 slices .*; found 9: 512 x 512 "
                                         r"slices, 137 times the pixels"):
        training_grid((48, 40, 9), 9)
    assert training_grid((48, 40, 9), 9, (512, 512)) == (512, 512)  # chosen with --grid
    with pytest.raises(InputError, match=r"--grid: expected a grid divisible by 2\*\*depth = 32; found 48 x 48"):
        training_grid((48, 40, 9), 5, (48, 48))
    capsys.readouterr()
    out = tmp_path / "m"
    assert main(["train", "--data", str(tiny_cohort), "--out", str(out), "--depth", "9", "--jsonl"]) == 2
    message = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["message"]
    assert "--depth: expected at most 5 for 32 x 32 slices" in message and "found 9: 512 x 512 slices" in message
    assert not out.exists()


def _corrupt(manifest, change):
    import copy

    manifest = copy.deepcopy(manifest)
    change(manifest)
    return manifest


MANIFEST_CORRUPTIONS = [  # (what, change to the pix2pix set's manifest, message pattern)
    ("a path outside the folder", lambda m: m["directions"][0].update(file="../../../../etc/hostname"),
     r"weights file to be a plain file name inside the package folder.*etc/hostname"),
    ("an absolute path", lambda m: m["directions"][1].update(file="/etc/passwd"), r"weights file.*'/etc/passwd'"),
    ("no sha256", lambda m: m["directions"][2].pop("sha256"), r"sha256 of direction_3.safetensors.*None"),
    ("a short sha256", lambda m: m["directions"][2].update(sha256="abc"), r"64 lower-case hex digits.*'abc'"),
    ("a huge grid", lambda m: m.update(grid=[100000, 100000]), r"grid to be null or two integers from 8 to 1024"),
    ("a grid of text", lambda m: m.update(grid="128x128"), r"grid to be"),
    ("a zero voxel", lambda m: m.update(voxel_size_mm=[0, 1.7, 2]), r"voxel_size_mm to be three sizes"),
    ("a negative b", lambda m: m.update(b_value=-1000), r"b_value to be a b-value"),
    ("a b of text", lambda m: m.update(b_value="1000"), r"b_value to be"),
    ("no directions", lambda m: m.update(directions=[]), r"directions to be a list of 1 to 64"),
    ("a non-unit gradient", lambda m: m["directions"][0].update(gradient_ras=[1, 1, 0]),
     r"directions to be entries with an integer index and a unit gradient_ras"),
    ("an architecture list", lambda m: m.update(architecture=[]), r"architecture and intensity to be JSON objects"),
]


@pytest.mark.parametrize("what, change, pattern", MANIFEST_CORRUPTIONS, ids=[c[0] for c in MANIFEST_CORRUPTIONS])
def test_manifests_are_untrusted_and_checked_before_any_file_is_opened(tmp_path, monkeypatch, what, change, pattern):
    from DTISynthLib.generators import package
    from DTISynthLib.generators.package import (
        SHIPPED_MODELS,
        read_manifest,
        verify_package,
        write_manifest,
    )

    folder = tmp_path / "pkg"
    folder.mkdir()
    write_manifest(folder, _corrupt(read_manifest(SHIPPED_MODELS / "pix2pix").data, change))
    opened = []
    monkeypatch.setattr(package, "sha256_file", lambda path: opened.append(path))
    with pytest.raises(InputError, match=pattern) as refused:
        verify_package(folder)
    assert str(folder / "manifest.json") in str(refused.value) and not opened


def test_each_torchrun_process_trains_on_the_gpu_of_its_local_rank(monkeypatch):
    """No GPU here: CUDA's presence is faked (torch.cuda.is_available, set_device) to check the choice."""
    from DTISynthLib.training import distributed

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed.training_device("auto") == torch.device("cuda", 3) and chosen == [torch.device("cuda", 3)]
    assert distributed.training_device("cpu") == torch.device("cpu") and len(chosen) == 1
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.training_device("cuda") == torch.device("cuda") and len(chosen) == 1
