"""Training checkpoints without pickling: network weights, optimiser tensors and RNG states go to
safetensors (`last.safetensors`), everything else (epoch, history, the optimisers' parameter groups)
to JSON (`last.json`); both written atomically, so a checkpoint is whole or the previous one.
"""

import json
from pathlib import Path

import torch

from ..core.atomic import write_text_atomic

WEIGHTS, META = "last.safetensors", "last.json"
CHECKPOINTS = "checkpoints"  # under a package's output folder; the rebuild scripts remove it


def checkpoint_folder(out_dir, network):
    """Where the checkpoints of `network` (a name) of the package being written to `out_dir` live."""
    return Path(out_dir) / CHECKPOINTS / network


def flatten_optimizer(prefix, optimizer):
    state = optimizer.state_dict()
    tensors = {}
    for pid, values in state["state"].items():
        for key, value in values.items():
            tensors[f"{prefix}.{pid}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, state["param_groups"]


def restore_optimizer(prefix, optimizer, tensors, groups):
    state = {}
    for name, value in tensors.items():
        if not name.startswith(prefix + "."):
            continue
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_training_state(folder, modules, optimisers, rng_states, meta):
    """Write a checkpoint to `folder`: modules and optimisers {prefix: object} (prefixes without dots),
    rng_states {name: uint8 tensor}, meta a JSON-able dict."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"{prefix}.{k}": v.detach().cpu().contiguous()
               for prefix, module in modules.items() for k, v in module.state_dict().items()}
    groups = {}
    for prefix, optimiser in optimisers.items():
        state, groups[prefix] = flatten_optimizer(prefix, optimiser)
        tensors.update({k: v.cpu().contiguous() for k, v in state.items()})
    tensors.update({f"rng.{name}": value for name, value in rng_states.items()})
    temporary = folder / f".{WEIGHTS}.tmp"
    save_file(tensors, str(temporary))
    temporary.replace(folder / WEIGHTS)
    write_text_atomic(folder / META, json.dumps(dict(meta, optimiser_groups=groups), indent=2))


def load_training_state(folder, modules, optimisers):
    """Restore the modules and optimisers of the checkpoint in `folder`: (meta, rng_states), or None
    when there is no checkpoint."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / WEIGHTS).exists():
        return None
    meta = json.loads((folder / META).read_text())
    tensors = load_file(str(folder / WEIGHTS))
    for prefix, module in modules.items():
        module.load_state_dict({k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")})
    groups = meta.pop("optimiser_groups")
    for prefix, optimiser in optimisers.items():
        restore_optimizer(prefix, optimiser, tensors, groups[prefix])
    return meta, {k[4:]: v for k, v in tensors.items() if k.startswith("rng.")}
