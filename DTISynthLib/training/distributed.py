"""Processes and devices for training: torchrun's world (gloo on CPU, NCCL on GPU), mixed precision and
determinism, shared by every kind's training step.
"""

import atexit
import gc
import json
import os
from contextlib import nullcontext

import torch

from ..core.errors import InputError
from ..generators.runner import pick_device
from .config import AMP_MODES


def distributed_context():
    """(world size, rank) under torchrun, else (1, 0); initialises the process group once and destroys it
    at exit: a gloo group left to the interpreter's teardown can abort the process ("terminate called
    without an active exception", exit -6) after the work is done, and torchrun then reports a failure."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        atexit.register(_destroy_process_group)
    return world, (torch.distributed.get_rank() if world > 1 else 0)


def _destroy_process_group():
    if torch.distributed.is_initialized():
        # DDP wrappers caught in reference cycles still hold the group; were they freed only at interpreter
        # teardown, gloo would destroy it there and abort (about 1 torchrun in 17 before this collect, 0 in 200)
        gc.collect()
        torch.distributed.destroy_process_group()


def training_device(name):
    """The torch.device this process trains on for --device `name` (generators.runner.pick_device): under
    torchrun with CUDA, the GPU of its LOCAL_RANK, made current (NCCL refuses two ranks on one GPU)."""
    device = pick_device(name)
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def use_deterministic_algorithms(deterministic):
    """Deterministic kernels (the same data and seed give the same weights), or cuDNN's fastest."""
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def check_amp(amp, device):
    """Refuse an --amp mode the device cannot run: fp16 autocast (with its gradient scaler) is for CUDA."""
    if amp not in AMP_MODES:
        raise InputError("--amp", f"one of {AMP_MODES}", repr(amp))
    if amp == "fp16" and device.type != "cuda":
        raise InputError("--amp", "none or bf16 on the CPU (fp16 needs a CUDA GPU)", f"fp16 on {device.type}")


def autocast(device, amp):
    """The forward pass's autocast context for --amp none, bf16 or fp16 (check_amp first)."""
    if amp == "none":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def grad_scaler(amp):
    """A gradient scaler for fp16 (whose small gradients underflow), else None."""
    return torch.amp.GradScaler("cuda") if amp == "fp16" else None


def scaled_backward(loss, scaler):
    """loss.backward(), through the fp16 gradient scaler when there is one."""
    (scaler.scale(loss) if scaler else loss).backward()


def optimiser_step(optimiser, scaler):
    """optimiser.step(), through the fp16 gradient scaler (which skips steps with overflowed gradients)."""
    if scaler:
        scaler.step(optimiser)
        scaler.update()
    else:
        optimiser.step()


def no_sync_unless(last, model):
    """DDP's no_sync for a micro-batch that is not the step's last (gradients reduced once per step)."""
    return model.no_sync() if not last and isinstance(model, torch.nn.parallel.DistributedDataParallel) \
        else nullcontext()


def _collective_device():
    """Where tensors for collectives live: the current GPU under NCCL, the CPU under gloo."""
    return torch.device("cuda") if torch.distributed.get_backend() == "nccl" else torch.device("cpu")


def sum_over_processes(values, world):
    """{name: float} summed over the world's processes (each holds its share of a global mean)."""
    if world == 1:
        return values
    names = sorted(values)
    total = torch.tensor([values[n] for n in names], dtype=torch.float64, device=_collective_device())
    torch.distributed.all_reduce(total)
    return dict(zip(names, total.cpu().tolist()))


def gather_to_rank_zero(tensor, world, rank):
    """[each process's `tensor`, by rank] on rank 0 ([] elsewhere); the tensors have one shape and dtype."""
    if world == 1:
        return [tensor]
    local = tensor.to(_collective_device())
    everyone = [torch.empty_like(local) for _ in range(world)]
    torch.distributed.all_gather(everyone, local)
    return [t.cpu() for t in everyone] if rank == 0 else []


def from_rank_zero(value, world, rank):
    """Rank 0's JSON-serialisable `value` on every process (decisions taken once, e.g. model selection).
    Sent as JSON bytes, never pickled."""
    if world == 1:
        return value
    data = json.dumps(value).encode() if rank == 0 else b""
    size = torch.tensor([len(data)], dtype=torch.int64, device=_collective_device())
    torch.distributed.broadcast(size, 0)
    buffer = torch.zeros(int(size), dtype=torch.uint8, device=size.device)
    if rank == 0:
        buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    torch.distributed.broadcast(buffer, 0)
    return json.loads(buffer.cpu().numpy().tobytes())
