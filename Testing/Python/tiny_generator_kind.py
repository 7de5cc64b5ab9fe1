"""A test-only generator kind, "test-linear": one network for all six DTI directions, a 1 x 1
convolution from the x, y, z network units of a voxel to its six directions' units, trained by least
squares. Small on purpose: it exists to prove that a kind is one module plus one registry line
(test_architecture registers it with monkeypatch.setitem(registry.KINDS, ...)), through the real
train job, package files, loader, runner and synthesize job.
"""

from pathlib import Path

import numpy as np

from DTISynthLib.core.gradient_schemes import SIEMENS_6_RAS
from DTISynthLib.generators.intensity import Intensity
from DTISynthLib.generators.package import (
    MANIFEST,
    save_generator_weights,
    training_fields,
    write_manifest,
)
from DTISynthLib.generators.registry import GeneratorKind

NAME = "test-linear"
NETWORK = "linear"


def build(manifest, key):
    import torch

    return torch.nn.Conv2d(3, 6, kernel_size=1)


def synthesize(predict, grid_signals, manifest, reporter):
    intensity = Intensity(**manifest.intensity)
    moved, reference, slices = grid_signals.signals, grid_signals.reference, grid_signals.slices
    inputs = np.transpose(intensity.to_network(moved[..., 1:], moved[..., :1]), (2, 3, 1, 0))  # (z, 3, y, x)
    units = predict(NETWORK, inputs[slices], slices)  # (n, 6, y, x)
    synthetic = np.zeros(reference.shape + (6,), np.float32)
    synthetic[:, :, slices] = intensity.from_network(np.transpose(units, (3, 2, 0, 1)), reference[:, :, slices, None])
    return synthetic, {}


def train(request):
    import torch

    from DTISynthLib.training.data import load_training_data

    if sorted(request.directions) != list(range(1, 7)):
        raise ValueError(f"{NAME} trains all six directions at once, not {request.directions}")
    (x, y), _, grid, provenance = load_training_data(request.data, request.intensity, 0, request.grid,
                                                      request.validation_fraction, request.config.seed,
                                                      request.register, request.reporter)
    inputs = np.moveaxis(x, 1, -1).reshape(-1, 3)
    targets = np.moveaxis(y, 1, -1).reshape(-1, 6)
    brain = np.abs(inputs).sum(axis=1) < 2.9  # voxels off the background value (-1 in every channel)
    design = np.c_[inputs[brain], np.ones(brain.sum())]
    solution, *_ = np.linalg.lstsq(design, targets[brain], rcond=None)  # (4, 6)
    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    state = {"weight": torch.from_numpy(solution[:3].T.reshape(6, 3, 1, 1).astype(np.float32)),
             "bias": torch.from_numpy(solution[3].astype(np.float32))}
    sha = save_generator_weights(out / "linear.safetensors", state, request.weights_dtype)
    write_manifest(out, {
        "architecture": {"kind": NAME},
        "networks": [{"name": NETWORK, "file": "linear.safetensors", "sha256": sha, "dtype": request.weights_dtype}],
        "directions": [{"index": i + 1, "gradient_ras": g.round(12).tolist()} for i, g in enumerate(SIEMENS_6_RAS)],
        **training_fields(request, grid, provenance, 1)})
    return out / MANIFEST


KIND = GeneratorKind(NAME, build, synthesize, __name__)  # its training step is its own train()
