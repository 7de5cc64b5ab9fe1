"""Training throughput on this machine, in one run.

pix2pix (slices/s): DTISynth's trainer against a reference loop. Paper-size models (U-Net ngf 64, 7
down-samplings at 128 x 128; PatchGAN ndf 64, n_layers 3), batch 1.
- DTISynth: Pix2PixTrainer steps on slices held in memory, fp32, bf16 autocast and channels_last.
- Reference: a straightforward loop like the reference pix2pix code: each pair read from an aligned
  A|B 8-bit PNG (PIL), normalised, then the same G / D updates in fp32.
Both run in this one process and the ratio is printed. GPU figures are added when CUDA is present.

tensor-unet (steps/s), the shipped default's training (make_tensor_models.sh: ngf 32, depth 5, batch
8 slabs of 96 x 96, fp32) on noise-free phantom subjects: batches drawn in the training process as
before 2026-12-07 (previous_rotate_tensor, Adam not fused), as now (--workers 0, the CPU's default), and by one loader
process while the network trains (--workers 1, the GPU's default); then both with the step on one
thread, which leaves a core to the loader as a GPU would. Target (issue 38): at least 1.5x the steps
per second of before on the CPU.

    .venv/bin/python benchmarks/bench_training.py [--steps 8] [--warmup 2] [--tensor-steps 24]
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
from DTISynthLib.generators.runner import cpu_model
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


def previous_rotate_tensor(tensor6, rotation):
    """tensor_unet.rotate_tensor before 2026-12-07 (each voxel's 3 x 3 matrix formed and multiplied), as
    the reference of the "before" row."""
    d = tensor6.movedim(1, -1)
    matrix = torch.stack([torch.stack([d[..., 0], d[..., 3], d[..., 4]], -1),
                          torch.stack([d[..., 3], d[..., 1], d[..., 5]], -1),
                          torch.stack([d[..., 4], d[..., 5], d[..., 2]], -1)], -2)
    r = rotation.view(rotation.shape[0], *([1] * (d.dim() - 2)), 3, 3)
    rotated = r @ matrix @ r.transpose(-1, -2)
    out = torch.stack([rotated[..., 0, 0], rotated[..., 1, 1], rotated[..., 2, 2],
                       rotated[..., 0, 1], rotated[..., 0, 2], rotated[..., 1, 2]], -1)
    return out.movedim(-1, 1)


def tensor_unet_stepper(subjects, workers, today=True):
    """(one training step of the default's settings on `subjects` with `workers` loader processes, its
    stop): train's own pieces (its streams, adam, step_draws, train_step); today False: the rotation and
    the optimiser of before 2026-12-07."""
    from DTISynthLib.generators.networks import UNetGenerator, init_weights
    from DTISynthLib.training import tensor_unet as kind

    config = TrainConfig(ngf=32, depth=5, batch_size=8, lr=1e-3, seed=0)
    torch.manual_seed(config.seed)
    streams = {0: kind._Batches(subjects, kind.CROP, torch.Generator().manual_seed(config.seed))}
    network = init_weights(UNetGenerator(kind.INPUT_CHANNELS, kind.HEADS[kind.SPLIT], config.ngf, config.depth,
                                         dropout=False))
    optimiser = kind.adam(network, config) if today else \
        torch.optim.Adam(network.parameters(), lr=config.lr, betas=(config.beta1, 0.999))  # before: not fused
    design = torch.from_numpy(kind.design_matrix_per_unit_b().astype(np.float32))
    draws = kind.step_draws(streams, config.batch_size, workers)

    def step():
        kind.train_step(network, optimiser, None, [batch for batch, _ in next(draws).values()], design, config)

    return step, draws.close


def tensor_unet_rows(steps, warmup, subjects=2, rounds=8):
    """The table: the variants' steps interleaved in `rounds` (this machine's speed drifts between minutes)."""
    from DTISynthLib.simulation.cohort import write_cohort
    from DTISynthLib.training import tensor_unet as kind
    from DTISynthLib.training.data import find_pairs, load_dti_targets

    today, threads = kind.rotate_tensor, torch.get_num_threads()
    variants = (("in the training process, before", 0, False, threads),
                ("in the training process (--workers 0)", 0, True, threads),
                ("one loader process (--workers 1)", 1, True, threads),
                ("1 training thread, in the training process", 0, True, 1),
                ("1 training thread, one loader process", 1, True, 1))
    with tempfile.TemporaryDirectory() as tmp:
        write_cohort(Path(tmp) / "cohort", subjects, "sampled", seed=7301, grid=(128, 128, 40), noise=False)
        targets, _, _ = load_dti_targets(find_pairs(Path(tmp) / "cohort"), 5)
    training = kind.training_subjects(targets)
    steppers = [tensor_unet_stepper(training, workers, now) for _, workers, now, _ in variants]
    times = [[] for _ in variants]
    try:
        for r in range(rounds):
            for (_, _, now, step_threads), (step, _), spent in zip(variants, steppers, times):
                kind.rotate_tensor = today if now else previous_rotate_tensor
                torch.set_num_threads(step_threads)  # one thread: a core free for the loader, as beside a GPU
                for k in range(warmup * (r == 0) + steps // rounds):
                    start = time.perf_counter()
                    step()
                    if r > 0 or k >= warmup:
                        spent.append(time.perf_counter() - start)
    finally:
        kind.rotate_tensor = today
        torch.set_num_threads(threads)
        for _, stop in steppers:
            stop()
    print(f"\ntensor-unet training, the default's settings (ngf 32, depth 5, 8 slabs of 96 x 96, fp32), {subjects} "
          f"phantom subjects, {threads} threads, {steps} timed steps each in {rounds} interleaved rounds; {cpu_model()}")
    before = 1 / statistics.median(times[0])
    print(f"{'batches drawn':44} {'median ms':>10} {'min ms':>8} {'steps/s':>9} {'x before':>10}")
    for (name, *_), spent in zip(variants, times):
        rate = 1 / statistics.median(spent)
        print(f"{name:44} {1000 * statistics.median(spent):10.1f} {1000 * min(spent):8.1f} {rate:9.2f} {rate / before:10.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tensor-steps", type=int, default=24)
    parser.add_argument("--only", choices=("pix2pix", "tensor-unet"), help="one of the two tables")
    args = parser.parse_args()
    if args.only != "pix2pix":
        tensor_unet_rows(args.tensor_steps, args.warmup)
    if args.only == "tensor-unet":
        return 0
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
