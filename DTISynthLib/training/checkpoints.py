"""Optimiser state in checkpoints without pickling: its tensors go to safetensors (flatten_optimizer),
its parameter groups to JSON, and restore_optimizer puts them back.
"""

import torch


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
