"""End-to-end synthesis of one full-size subject (128 x 128 x 76): registration + inference + fit +
maps, in one run: DTISynth with the shipped default set (tensor-unet) and the previous default
(tensor-unet-signed, no orientation confidence), DTISynth with six paper-size
pix2pix models (ngf 64, random weights: speed, not quality), and a paper-style pipeline with the same
six models.

Paper-style: the same registration, then 8-bit PNG slices of the DWI, per-slice batch-1 inference
reading each PNG, 8-bit PNG outputs, re-assembly from the PNGs, then the same tensor fit and maps.
Each pipeline runs in its own process (wall time, peak RSS). Targets: the default set >= 5x the
paper-style and >= 3x the six-model set, peak RSS <= 2 GB.

    .venv/bin/python benchmarks/bench_synthesis.py [--repeats 2] [--keep DIR]
"""

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIX = "six pix2pix ngf 64"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tensor_fit import ENV, run_measured  # noqa: E402  (one way to time a process and its peak RSS)


def make_inputs(work):
    import torch

    from DTISynthLib.core.dwi import check_dwi
    from DTISynthLib.core.gradient_schemes import AXES_3_RAS, SIEMENS_6_RAS
    from DTISynthLib.generators.networks import UNetGenerator, init_weights
    from DTISynthLib.generators.package import save_generator_weights, write_manifest
    from DTISynthLib.io.files import save_dwi, save_volume
    from DTISynthLib.simulation.cohort import draw_subject, simulate_subject

    subject = simulate_subject(draw_subject("sub-001", 3), "sampled")
    save_dwi(work / "dwi.nii.gz", check_dwi(subject.dwi))
    save_volume(work / "b0.nii.gz", subject.dti.mean_b0(), subject.dti.affine)
    models = work / "models"
    models.mkdir()
    torch.manual_seed(0)
    entries = []
    for i in range(6):
        sha = save_generator_weights(models / f"direction_{i + 1}.safetensors",
                                     init_weights(UNetGenerator(3, 1, 64, 7)).state_dict(), "float16")
        entries.append({"index": i + 1, "gradient_ras": SIEMENS_6_RAS[i].tolist(), "sha256": sha, "dtype": "float16",
                        "file": f"direction_{i + 1}.safetensors", "validation": {}})
    write_manifest(models, {"architecture": {"generator": {"in_channels": 3, "out_channels": 1, "ngf": 64, "depth": 7,
                                                           "dropout": True}, "discriminator": {"ndf": 64, "n_layers": 3}},
                            "intensity": {"mode": "paper", "quantise_8bit": False}, "grid": [128, 128],
                            "voxel_size_mm": [1.71875, 1.71875, 2.0], "b_value": 1000.0,
                            "input_directions": AXES_3_RAS.tolist(), "directions": entries})


def paper_style(work, out):
    """The seed paper's way, scripted: register, PNG slices, batch-1 inference per PNG, re-assemble, fit."""
    import torch
    from PIL import Image

    from DTISynthLib.core.dwi import DWI
    from DTISynthLib.generators.runner import load_generators
    from DTISynthLib.io.files import load_dwi, load_volume
    from DTISynthLib.registration.rigid import register_rigid, resample_rigid
    from DTISynthLib.synthesis.pipeline import SynthesisResult
    from DTISynthLib.synthesis.writing import write_synthesis

    out = Path(out)
    png = out / "png"
    png.mkdir(parents=True)
    dwi = load_dwi(work / "dwi.nii.gz")
    b0, affine = load_volume(work / "b0.nii.gz")
    reg = register_rigid(b0, affine, dwi.mean_b0(), dwi.affine)
    moved = resample_rigid(dwi.data[..., 1:4], dwi.affine, affine, b0.shape, reg.matrix)
    for k in range(moved.shape[2]):
        rgb = np.clip(np.round(np.transpose(moved[:, :, k], (1, 0, 2))), 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(png / f"slice_{k:03d}.png")
    generators, manifest = load_generators(work / "models")
    synthetic = np.zeros(b0.shape + (6,), np.float32)
    with torch.no_grad():
        for d in range(1, 7):
            for k in range(moved.shape[2]):
                image = np.asarray(Image.open(png / f"slice_{k:03d}.png"), np.float32) / 127.5 - 1
                x = torch.from_numpy(image.transpose(2, 0, 1).copy())[None]
                y = generators[d](x)[0, 0].numpy()
                Image.fromarray(np.round((y + 1) * 127.5).astype(np.uint8)).save(png / f"d{d}_{k:03d}.png")
        for d in range(1, 7):
            for k in range(moved.shape[2]):
                synthetic[:, :, k, d - 1] = np.asarray(Image.open(png / f"d{d}_{k:03d}.png"), np.float32).T
    data = np.concatenate([b0[..., None], synthetic], axis=-1)
    bvals = np.r_[0.0, np.full(6, 1000.0)]
    gradients = np.vstack([np.zeros(3), manifest.direction_vectors()[1]])
    write_synthesis(out / "result", SynthesisResult(DWI(data, affine, bvals, gradients), {}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--keep", help="folder for inputs and outputs (default: temporary)")
    parser.add_argument("--before", help="another checkout of DTISynth (e.g. `git worktree add /tmp/before REV`): its "
                                         "default set also runs, in the same rounds, as 'before'")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="dtisynth-synth-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "models" / "manifest.json").exists():
        make_inputs(work)
    me = Path(__file__).resolve()
    rows = {}
    for old in list(work.glob("ours_*")) + list(work.glob("paper_*")):  # outputs of an earlier --keep run
        shutil.rmtree(old)
    from DTISynthLib.generators.package import DEFAULT_MODELS

    runs = (("default set, tensor-unet", DEFAULT_MODELS, "auto"),
            ("previous default, tensor-unet-signed", DEFAULT_MODELS.parent / "tensor-unet-signed", "auto"),
            (SIX, work / "models", "auto"), ("six pix2pix ngf 64", work / "models", "fp32"))
    if args.before:
        runs = (("default set, before", Path(args.before) / "Resources" / "Models" / "tensor-unet", "auto"),) + runs
    for r in range(args.repeats):
        for label, models, precision in runs:
            out = work / f"ours_{label.split()[0]}_{label.split()[-1]}_{precision}_{r}"
            # -P: `python -m` would put the current folder first on sys.path, so a run started in this checkout
            # imported this checkout's code for 'before' too, whatever PYTHONPATH said
            env = dict(ENV, PYTHONPATH=str(Path(args.before).resolve())) if label.endswith("before") else None
            wall, rss, _ = run_measured([sys.executable, "-P", "-m", "DTISynthLib", "synthesize", "--dwi", work / "dwi.nii.gz",
                                         "--b0", work / "b0.nii.gz", "--models", models, "--device", "cpu",
                                         "--precision", precision, "--out", out], env)
            used = json.loads((out / "synthesis.json").read_text())["precision"]
            name = f"synthesize, {label} ({'auto: ' + used if precision == 'auto' else precision})"
            rows.setdefault(name, []).append((wall, rss))
        wall, rss, _ = run_measured([sys.executable, me, "--paper-style", work, work / f"paper_{r}"])
        rows.setdefault("paper-style (PNG, batch 1, 8-bit)", []).append((wall, rss))
    paper = statistics.median(t for t, _ in rows["paper-style (PNG, batch 1, 8-bit)"])
    six = statistics.median(t for name, values in rows.items() if name.startswith(f"synthesize, {SIX} (auto")
                            for t, _ in values)
    print(f"\nSynthesis end to end, 128x128x76, CPU, {args.repeats} repeats, {time.strftime('%Y-%m-%d %H:%M')}; "
          f"pix2pix: paper-size generators (ngf 64, 6 x 41.8 M parameters)")
    print(f"{'pipeline':64} {'median s':>9} {'min s':>7} {'peak RSS MiB':>13} {'x paper-style':>14} {'x six-model':>12}")
    for name, values in rows.items():
        times = [t for t, _ in values]
        median = statistics.median(times)
        print(f"{name:64} {median:9.2f} {min(times):7.2f} {max(m for _, m in values):13.0f} "
              f"{paper / median:14.2f} {six / median:12.2f}")
    default, previous = (statistics.median(t for name, values in rows.items() if name.startswith(f"synthesize, {label}")
                                           for t, _ in values) for label in ("default set, tensor-unet", "previous default"))
    print(f"default set / previous default (its orientation confidence included): {default / previous:.2f}x the time")
    if args.before:
        before = statistics.median(t for t, _ in rows[next(name for name in rows if "before" in name)])
        print(f"default set now / before ({args.before}): {default / before:.2f}x the time; "
              f"{paper / default:.2f}x the paper-style (before {paper / before:.2f}x)")
    print("targets: the default set <= 8 s on a 2-core machine and >= 4x the paper-style (issue 38), >= 3x the "
          "six-model set, <= 2048 MiB, <= 1.3x the previous default; no GPU here")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--paper-style":
        paper_style(Path(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(main())
