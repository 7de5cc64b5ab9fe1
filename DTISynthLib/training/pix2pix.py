"""Training of the "pix2pix-per-direction" kind (generators/pix2pix.py): one pix2pix model per DTI
gradient direction, reproducible, resumable, distributed.

Loss and optimiser (the seed paper's defaults): vanilla GAN (BCE on PatchGAN logits) + lambda_L1 x
L1 with lambda 100; Adam, lr 2e-4, beta1 0.5; batch 1; `epochs` at constant lr then `decay_epochs`
of linear decay to 0. Per step: generate, update the discriminator (fake then real forward, each
followed by its backward, so batch norm sees them apart as in the reference), update the generator.

Reproducibility: the order of slices in epoch e is a permutation drawn from a generator seeded with
(seed, e), and torch's RNG state (dropout) is saved with every checkpoint, so a run resumed from its
last checkpoint equals an uninterrupted one in deterministic mode. Checkpoints hold tensors in
safetensors and the rest in JSON: nothing is pickled.

Distributed: under `torchrun --nproc_per_node N` each process takes `batch_size` slices of every
global batch of N x batch_size (gloo on CPU, NCCL on GPU); gradients are averaged. A single process
with `accumulate` = N computes the same update (parameters; batch-norm running statistics, being
buffers, follow rank 0 under DDP).
"""

import csv
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.atomic import write_text_atomic
from ..core.errors import InputError
from ..core.gradient_schemes import SIEMENS_6_RAS
from ..core.image_metrics import psnr, ssim
from ..core.progress import NullReporter
from ..core.tables import csv_text
from ..generators.manifest import MANIFEST
from ..generators.networks import PatchDiscriminator, UNetGenerator, init_weights
from ..generators.package import read_manifest, save_generator_weights, training_fields, write_manifest
from ..generators.pix2pix import NAME
from .checkpoints import checkpoint_folder, load_training_state, save_training_state
from .data import flip_pair_index, load_training_data
from .distributed import (
    autocast,
    check_amp,
    distributed_context,
    grad_scaler,
    optimiser_step,
    scaled_backward,
    training_device,
    use_deterministic_algorithms,
)


class Pix2PixTrainer:
    """Train the generator of one DTI direction on slices (inputs (S, C, H, W), targets (S, 6, H, W)): a
    U-Net from the C input channels to that direction, against a PatchGAN that sees the C inputs and
    the one target channel."""

    def __init__(self, config, direction, train, validation, out_dir, reporter=NullReporter(), flip_partner=None):
        self.config = config
        self.direction = direction  # 0-5
        self.flip_partner = flip_partner
        self.out_dir = Path(out_dir)
        self.reporter = reporter
        self.world, self.rank = distributed_context()
        if self.world > 1 and config.accumulate != 1:
            raise InputError("--accumulate", "1 under torchrun (each process is one micro-batch)", repr(config.accumulate))
        self.device = training_device(config.device)
        check_amp(config.amp, self.device)
        use_deterministic_algorithms(config.deterministic)
        torch.manual_seed(config.seed * 7919 + direction)
        self.inputs = torch.from_numpy(train[0])
        self.targets = torch.from_numpy(np.ascontiguousarray(train[1][:, direction:direction + 1]))
        self.flipped_targets = None
        if config.flip_augment:
            if flip_partner is None:
                raise InputError("--flip-augment", "directions with a left-right mirror in the scheme",
                                 f"direction {direction + 1} without one")
            self.flipped_targets = torch.from_numpy(np.ascontiguousarray(train[1][:, flip_partner:flip_partner + 1]))
        self.val_inputs = torch.from_numpy(validation[0]) if validation is not None else None
        self.val_targets = (torch.from_numpy(np.ascontiguousarray(validation[1][:, direction:direction + 1]))
                            if validation is not None else None)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        channels = self.inputs.shape[1]
        self.generator = init_weights(UNetGenerator(channels, 1, config.ngf, config.depth, config.dropout)).to(
            self.device, memory_format=memory_format)
        self.discriminator = init_weights(PatchDiscriminator(channels + 1, config.ndf, config.n_layers)).to(
            self.device, memory_format=memory_format)
        self.g_module, self.d_module = self.generator, self.discriminator
        if self.world > 1:
            self.generator = nn.parallel.DistributedDataParallel(self.generator)
            self.discriminator = nn.parallel.DistributedDataParallel(self.discriminator)
        self.opt_g = torch.optim.Adam(self.g_module.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
        self.opt_d = torch.optim.Adam(self.d_module.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
        self.bce = nn.BCEWithLogitsLoss()
        self.scaler = grad_scaler(config.amp)
        self.epoch = 0
        self.history = []
        self.best = None

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_dir(self):
        return checkpoint_folder(self.out_dir, f"direction_{self.direction + 1}")

    def save_checkpoint(self):
        if self.rank != 0:
            return
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state()
        save_training_state(self.checkpoint_dir, {"G": self.g_module, "D": self.d_module},
                            {"optG": self.opt_g, "optD": self.opt_d}, rng,
                            {"epoch": self.epoch, "config": asdict(self.config), "history": self.history,
                             "best": self.best})

    def load_checkpoint(self):
        """Resume from the last checkpoint; returns False when there is none."""
        loaded = load_training_state(self.checkpoint_dir, {"G": self.g_module, "D": self.d_module},
                                     {"optG": self.opt_g, "optD": self.opt_d})
        if loaded is None:
            return False
        meta, rng = loaded
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
        self.epoch, self.history, self.best = meta["epoch"], meta["history"], meta["best"]
        return True

    # ------------------------------------------------------------------ training
    def _autocast(self):
        return autocast(self.device, self.config.amp)

    def _batch(self, indices):
        n = self.inputs.shape[0]
        original = indices[indices < n]
        flipped = indices[indices >= n] - n
        x = [self.inputs[original]]
        y = [self.targets[original]]
        if flipped.numel():
            x.append(torch.flip(self.inputs[flipped], dims=[3]))
            y.append(torch.flip(self.flipped_targets[flipped], dims=[3]))
        memory_format = torch.channels_last if self.config.channels_last else torch.contiguous_format
        return (torch.cat(x).to(self.device, memory_format=memory_format),
                torch.cat(y).to(self.device, memory_format=memory_format))

    def train_step(self, micro_batches):
        """One optimiser step over micro-batches [(x, y)]: returns (loss_D, loss_G_GAN, loss_G_L1)."""
        cfg = self.config
        with self._autocast():
            fakes = [self.generator(x) for x, _ in micro_batches]
        self.opt_d.zero_grad(set_to_none=True)
        loss_d = 0.0
        for (x, y), fake in zip(micro_batches, fakes):
            with self._autocast():
                pred_fake = self.discriminator(x, fake.detach())
                loss_fake = self.bce(pred_fake.float(), torch.zeros_like(pred_fake, dtype=torch.float32))
            scaled_backward(0.5 * loss_fake / cfg.accumulate, self.scaler)
            with self._autocast():
                pred_real = self.discriminator(x, y)
                loss_real = self.bce(pred_real.float(), torch.ones_like(pred_real, dtype=torch.float32))
            scaled_backward(0.5 * loss_real / cfg.accumulate, self.scaler)
            loss_d += 0.5 * (loss_fake.item() + loss_real.item()) / cfg.accumulate
        optimiser_step(self.opt_d, self.scaler)
        self.opt_g.zero_grad(set_to_none=True)
        loss_gan = loss_l1 = 0.0
        for (x, y), fake in zip(micro_batches, fakes):
            with self._autocast():
                pred = self.discriminator(x, fake)
                gan = self.bce(pred.float(), torch.ones_like(pred, dtype=torch.float32))
            l1 = torch.mean(torch.abs(fake.float() - y.float()))
            scaled_backward((gan + cfg.lambda_l1 * l1) / cfg.accumulate, self.scaler)
            loss_gan += gan.item() / cfg.accumulate
            loss_l1 += l1.item() / cfg.accumulate
        optimiser_step(self.opt_g, self.scaler)
        return loss_d, loss_gan, loss_l1

    def epoch_order(self, epoch):
        n = self.inputs.shape[0] * (2 if self.config.flip_augment else 1)
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(n, generator=generator)

    def train_epoch(self):
        cfg = self.config
        for group in (*self.opt_g.param_groups, *self.opt_d.param_groups):
            group["lr"] = cfg.learning_rate(self.epoch)
        self.generator.train()
        self.discriminator.train()
        order = self.epoch_order(self.epoch)
        per_step = cfg.batch_size * cfg.accumulate * self.world
        steps = len(order) // per_step  # the last incomplete global batch is dropped
        losses = []
        for step in range(steps):
            chunk = order[step * per_step:(step + 1) * per_step]
            micro = []
            for m in range(cfg.accumulate):
                start = (m * self.world + self.rank) * cfg.batch_size
                micro.append(self._batch(chunk[start:start + cfg.batch_size]))
            losses.append(self.train_step(micro))
            if self.rank == 0 and (step % 20 == 0 or step == steps - 1):
                done = (self.epoch + (step + 1) / steps) / cfg.total_epochs
                self.reporter.progress(f"train d{self.direction + 1}", done,
                                       f"epoch {self.epoch + 1}/{cfg.total_epochs} step {step + 1}/{steps}")
        return np.mean(losses, axis=0) if losses else np.full(3, np.nan)

    @torch.no_grad()
    def validate(self):
        """Validation L1 (network units), PSNR and SSIM (on [0, 1]) of the generator in eval mode."""
        if self.val_inputs is None:
            return {}
        self.g_module.eval()
        outputs = []
        for start in range(0, len(self.val_inputs), 16):
            x = self.val_inputs[start:start + 16].to(self.device)
            outputs.append(self.g_module(x).float().cpu())
        predicted = (torch.cat(outputs).numpy()[:, 0] + 1) / 2
        target = (self.val_targets.numpy()[:, 0] + 1) / 2
        return {"val_L1": float(np.mean(np.abs(predicted - target)) * 2), "val_PSNR": psnr(target, predicted, 1.0),
                "val_SSIM": ssim(target, predicted, 1.0)}

    def run(self, resume=False):
        """Train to the configured number of epochs; returns the history (list of per-epoch dicts)."""
        if resume and self.load_checkpoint() and self.rank == 0:
            self.reporter.progress(f"train d{self.direction + 1}", self.epoch / self.config.total_epochs,
                                   f"resumed after epoch {self.epoch}")
        while self.epoch < self.config.total_epochs:
            start = time.perf_counter()
            loss_d, loss_gan, loss_l1 = self.train_epoch()
            row = {"epoch": self.epoch + 1, "lr": self.config.learning_rate(self.epoch), "loss_D": float(loss_d),
                   "loss_G_GAN": float(loss_gan), "loss_G_L1": float(loss_l1)}
            row.update(self.validate())
            row["seconds"] = round(time.perf_counter() - start, 3)
            self.history.append(row)
            self.epoch += 1
            if self.rank == 0:
                self._log(row)
                if "val_L1" in row and (self.best is None or row["val_L1"] < self.best["val_L1"]):
                    self.best = dict(row)
                    self._save_best()
            self.save_checkpoint()
        return self.history

    def _log(self, row):
        path = self.out_dir / f"training_log_direction_{self.direction + 1}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        fields = ["epoch", "lr", "loss_D", "loss_G_GAN", "loss_G_L1", "val_L1", "val_PSNR", "val_SSIM", "seconds"]
        new = not path.exists() or row["epoch"] == 1
        rows = [] if new else list(csv.DictReader(path.read_text().splitlines()))[: row["epoch"] - 1]
        rows.append({k: row.get(k, "") for k in fields})
        write_text_atomic(path, csv_text(rows, fields))

    def _save_best(self):
        folder = self.checkpoint_dir
        folder.mkdir(parents=True, exist_ok=True)
        save_generator_weights(folder / "best_generator.safetensors", self.g_module.state_dict())

    def generator_state(self, which="best"):
        """The generator weights to package: the best validated epoch, or the last."""
        from safetensors.torch import load_file

        path = self.checkpoint_dir / "best_generator.safetensors"
        if which == "best" and path.exists():
            return load_file(str(path))
        return self.g_module.state_dict()


def train(request):
    """Train the generators of request.directions (1-6), one after another, and write (or update) the
    model package: one Pix2PixTrainer per direction, its best validated weights packaged."""
    config, out_dir, reporter = request.config, Path(request.out), request.reporter
    if request.init_from is not None:
        raise InputError("--init-from", "a tensor-unet package (fine-tuning is built for the default kind)",
                         f"a {NAME} package: {request.init_from}")
    if config.loader_workers is not None:
        raise InputError("--workers", f"left out with --kind {NAME} (its slices are held in memory: nothing to draw)",
                         repr(config.loader_workers))
    world, rank = distributed_context()
    train_data, validation, grid, provenance = load_training_data(
        request.data, request.intensity, config.depth, request.grid, request.validation_fraction, config.seed,
        request.register, reporter, request.validation_subjects)
    entries = {}
    if (out_dir / MANIFEST).exists():
        entries = {d["index"]: d for d in read_manifest(out_dir).data["directions"]}
    for index in request.directions:
        trainer = Pix2PixTrainer(config, index - 1, train_data, validation, out_dir, reporter,
                                 flip_pair_index(index - 1))
        trainer.run(request.resume)
        if rank == 0:
            name = f"direction_{index}.safetensors"
            sha = save_generator_weights(out_dir / name, trainer.generator_state("best"), request.weights_dtype)
            entries[index] = {"index": index, "gradient_ras": SIEMENS_6_RAS[index - 1].round(12).tolist(),
                              "file": name, "sha256": sha, "dtype": request.weights_dtype,
                              "validation": trainer.best or (trainer.history[-1] if trainer.history else {}),
                              "epochs_trained": trainer.epoch}
    if rank == 0:
        write_manifest(out_dir, {
            "architecture": {"kind": NAME,
                             "generator": {"in_channels": int(train_data[0].shape[1]), "out_channels": 1,
                                           "ngf": config.ngf, "depth": config.depth, "dropout": config.dropout},
                             "discriminator": {"ndf": config.ndf, "n_layers": config.n_layers}},
            "directions": [entries[k] for k in sorted(entries)],
            **training_fields(request, grid, provenance, world)})
    if world > 1:
        torch.distributed.barrier()
    return out_dir / MANIFEST
