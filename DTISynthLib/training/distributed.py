"""Processes for training: torchrun's world (gloo on CPU, NCCL on GPU).
"""

import os

import torch


def distributed_context():
    """(world size, rank) under torchrun, else (1, 0); initialises the process group once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return world, (torch.distributed.get_rank() if world > 1 else 0)

