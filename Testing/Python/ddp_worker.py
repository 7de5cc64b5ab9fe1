"""Helper for test_training: train a tiny generator on fixed random data and save its parameters.

    python ddp_worker.py OUT ACCUMULATE        (single process)
    torchrun --nproc_per_node 2 ddp_worker.py OUT 1
"""

import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from DTISynthLib.training.pix2pix import Pix2PixTrainer
from DTISynthLib.training.config import TrainConfig


def tiny_data(n=8, size=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 3, size, size)).astype(np.float32)
    y = np.tanh(x[:, :1] * 0.7 + x[:, 1:2] * 0.2 - x[:, 2:3] * 0.4).repeat(6, axis=1).astype(np.float32)
    return x, y


def main(out, accumulate):
    torch.set_num_threads(1)
    config = TrainConfig(epochs=2, ngf=4, ndf=4, depth=5, dropout=False, accumulate=accumulate, seed=3)
    trainer = Pix2PixTrainer(config, 0, tiny_data(), None, out)
    if trainer.rank == 0:
        Path(out).mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().clone().contiguous() for k, v in trainer.g_module.named_parameters()},
                  f"{out}/initial.safetensors")
    trainer.run()
    if trainer.rank == 0:
        save_file({k: v.detach().contiguous() for k, v in trainer.g_module.named_parameters()}, f"{out}/params.safetensors")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
