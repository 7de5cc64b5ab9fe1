"""The seed paper's generator kind, "pix2pix-per-direction": six pix2pix models, one per DTI gradient
direction, each mapping a slice of the x, y, z DWI (network units of the manifest's intensity) to that
direction's DTI slice. The synthetic DTI's gradient table is the manifest's directions (RAS); each
direction's weights file is named on its direction entry.
"""

from pathlib import Path

import numpy as np

from ..core.gradient_schemes import SIEMENS_6_RAS
from .intensity import Intensity
from .package import (
    MANIFEST,
    read_manifest,
    save_generator_weights,
    training_fields,
    write_manifest,
)
from .registry import GeneratorKind

NAME = "pix2pix-per-direction"


def build(manifest, key):
    """The U-Net of direction `key` (every direction has the same architecture)."""
    from .networks import UNetGenerator

    g = manifest.architecture["generator"]
    return UNetGenerator(g["in_channels"], g["out_channels"], g["ngf"], g["depth"], g.get("dropout", True))


def prepare_inference(network, precision):
    return network.to_bf16_inference() if precision == "bf16" else network


def synthesize(predict, grid_signals, manifest, reporter):
    """Each direction's generator on the network units of the x, y, z volumes, slice-wise; the output
    mapped back to signal with the reference b=0 (Intensity.from_network)."""
    intensity = Intensity(**manifest.intensity)
    moved, reference, slices = grid_signals.signals, grid_signals.reference, grid_signals.slices
    inputs = np.transpose(intensity.to_network(moved[..., 1:], moved[..., :1]), (2, 3, 1, 0))  # (z, 3, y, x)
    indices, _ = manifest.direction_vectors()
    synthetic = np.zeros(reference.shape + (len(indices),), dtype=np.float32)
    for k, index in enumerate(indices):
        reporter.progress("synthesize", k / len(indices), f"direction {index}")
        units = predict(index, inputs[slices], slices)  # (n, y, x)
        synthetic[:, :, slices, k] = intensity.from_network(np.transpose(units, (2, 1, 0)), reference[:, :, slices])
    reporter.progress("synthesize", 1.0, f"{len(indices)} directions")
    return synthetic, {}


def train(request):
    """Train the generators of request.directions (1-6), one after another, and write (or update) the
    model package: one Pix2PixTrainer per direction, its best validated weights packaged."""
    from ..training.data import flip_pair_index, load_training_data
    from ..training.distributed import distributed_context
    from .pix2pix_trainer import Pix2PixTrainer

    config, out_dir, reporter = request.config, Path(request.out), request.reporter
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
        import torch.distributed as dist
        dist.barrier()
    return out_dir / MANIFEST


KIND = GeneratorKind(NAME, build, synthesize, train, prepare_inference, any_frame=False)
