"""pix2pix training throughput (slices/s) on this machine: DTISynth's trainer against a reference loop.

Paper-size models (U-Net ngf 64, 7 down-samplings at 128 x 128; PatchGAN ndf 64, n_layers 3), batch 1.
- DTISynth: Pix2PixTrainer steps on slices held in memory, fp32, bf16 autocast and channels_last.
- Reference: a straightforward loop like the reference pix2pix code: each pair read from an aligned
  A|B 8-bit PNG (PIL), normalised, then the same G / D updates in fp32.
Both run in this one process and the ratio is printed. GPU figures are added when CUDA is present.

    .venv/bin/python benchmarks/bench_training.py [--steps 8] [--warmup 2]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from DTISynthLib.generators.networks import (
    PatchDiscriminator,
    UNetGenerator,
    init_weights,
)
from DTISynthLib.training.pix2pix import Pix2PixTrainer
from DTISynthLib.training.config import TrainConfig


def slices(n, size=128, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.sin(6 * x)[None] * np.cos(4 * y)[None] * rng.uniform(0.5, 1.0, (n, 1, 1))
    inputs = np.clip(np.stack([base, base * 0.8, base * 0.6], axis=1) + rng.normal(0, 0.05, (n, 3, size, size)), -1, 1)
    targets = np.clip(inputs[:, :1] * 0.7 + 0.1, -1, 1).repeat(6, axis=1)
    return inputs.astype(np.float32), targets.astype(np.float32)


def write_pngs(folder, inputs, targets):
    """Aligned A|B PNGs as the reference pix2pix datasets store them (A: 3 DWI channels, B: the target)."""
    paths = []
    for i, (a, b) in enumerate(zip(inputs, targets[:, :1])):
        a8 = np.round((np.transpose(a, (1, 2, 0)) + 1) * 127.5).astype(np.uint8)
        b8 = np.round((np.repeat(b, 3, axis=0).transpose(1, 2, 0) + 1) * 127.5).astype(np.uint8)
        path = Path(folder) / f"{i:04d}.png"
        Image.fromarray(np.concatenate([a8, b8], axis=1)).save(path)
        paths.append(path)
    return paths


def reference_loop(paths, steps, warmup):
    """The reference's way: per step, open a PNG, split A|B, to tensor, normalise, update D then G."""
    torch.manual_seed(0)
    g, d = init_weights(UNetGenerator(3, 1, 64, 7)), init_weights(PatchDiscriminator(4, 64, 3))
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = torch.nn.BCEWithLogitsLoss()
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        image = np.asarray(Image.open(paths[step % len(paths)]).convert("RGB"), dtype=np.float32) / 127.5 - 1
        w = image.shape[1] // 2
        a = torch.from_numpy(image[:, :w].transpose(2, 0, 1).copy())[None]
        b = torch.from_numpy(image[:, w:, :1].transpose(2, 0, 1).copy())[None]
        fake = g(a)
        opt_d.zero_grad()
        pred_fake, pred_real = d(a, fake.detach()), d(a, b)
        loss_d = 0.5 * (bce(pred_fake, torch.zeros_like(pred_fake)) + bce(pred_real, torch.ones_like(pred_real)))
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        pred = d(a, fake)
        loss_g = bce(pred, torch.ones_like(pred)) + 100 * torch.mean(torch.abs(fake - b))
        loss_g.backward()
        opt_g.step()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return times


def ours(data, steps, warmup, device="cpu", **options):
    config = TrainConfig(epochs=1, seed=0, device=device, deterministic=False, **options)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Pix2PixTrainer(config, 0, data, None, tmp)
        times = []
        for step in range(warmup + steps):
            start = time.perf_counter()
            batch = trainer._batch(torch.tensor([step % len(data[0])]))
            trainer.train_step([batch])
            if device == "cuda":
                torch.cuda.synchronize()
            if step >= warmup:
                times.append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    data = slices(16)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_pngs(tmp, *data)
        rows.append(("reference loop, PNG per step, fp32", reference_loop(paths, args.steps, args.warmup)))
    rows.append(("DTISynth, in memory, fp32", ours(data, args.steps, args.warmup)))
    rows.append(("DTISynth, bf16 autocast", ours(data, args.steps, args.warmup, amp="bf16")))
    rows.append(("DTISynth, channels_last", ours(data, args.steps, args.warmup, channels_last=True)))
    rows.append(("DTISynth, bf16 + channels_last", ours(data, args.steps, args.warmup, amp="bf16", channels_last=True)))
    gpu = torch.cuda.is_available()
    if gpu:
        rows.append(("DTISynth, GPU fp32", ours(data, args.steps, args.warmup, device="cuda")))
        rows.append(("DTISynth, GPU bf16 + channels_last", ours(data, args.steps, args.warmup, device="cuda", amp="bf16",
                                                             channels_last=True)))
    print(f"\npix2pix training, paper-size models (G 41.8 M, D 2.77 M parameters), 128 x 128, batch 1, "
          f"{torch.get_num_threads()} threads, {args.steps} timed steps, {time.strftime('%Y-%m-%d %H:%M')}")
    reference = 1 / statistics.median(rows[0][1])
    print(f"{'loop':40} {'median ms':>10} {'min ms':>8} {'slices/s':>9} {'x reference':>12}")
    for name, times in rows:
        rate = 1 / statistics.median(times)
        print(f"{name:40} {1000 * statistics.median(times):10.1f} {1000 * min(times):8.1f} {rate:9.2f} {rate / reference:12.2f}")
    if not gpu:
        print("no GPU on this machine: GPU rows left out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
