"""The `dtisynth train` job: paired slices -> one pix2pix generator per DTI direction -> a model package."""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import __version__
from .dwi_files import load_dwi
from .gradient_schemes import AXES_3_RAS, SIEMENS_6_RAS
from .model_package import FORMAT_VERSION, read_manifest, save_generator_weights, write_manifest
from .training import Pix2PixTrainer, distributed_context
from .training_data import find_pairs, flip_pair_index, load_subject_slices, split_subjects


def default_grid(shape, depth):
    """Smallest square grid, a multiple of 2**depth, that holds an (H, W) slice."""
    step = 2**depth
    size = int(np.ceil(max(shape[:2]) / step) * step)
    return (size, size)


def load_training_data(data_dir, intensity, depth, grid=None, validation_fraction=0.1, seed=0, register=True,
                       reporter=None):
    """Slices of every subject, split by subject: ((x, y) train, (x, y) validation or None, provenance)."""
    pairs = find_pairs(data_dir)
    training, validation = split_subjects([p.subject for p in pairs], validation_fraction, seed) \
        if validation_fraction > 0 else ([p.subject for p in pairs], [])
    reference = load_dwi(pairs[0].dti6)
    grid = tuple(grid) if grid else default_grid(reference.data.shape, depth)
    if grid[0] % 2**depth or grid[1] % 2**depth:
        raise ValueError(f"grid {grid} must be divisible by 2**depth = {2**depth}")
    slices = {"train": ([], []), "validation": ([], [])}
    registration = {}
    for i, pair in enumerate(pairs):
        if reporter:
            reporter.progress("data", i / len(pairs), f"{pair.subject}: registering DWI to DTI, slicing")
        x, y, info = load_subject_slices(pair, intensity, grid, register)
        registration[pair.subject] = {k: v for k, v in info.items() if k != "subject"}
        part = "validation" if pair.subject in validation else "train"
        slices[part][0].append(x)
        slices[part][1].append(y)
    if reporter:
        reporter.progress("data", 1.0, f"{len(training)} training, {len(validation)} validation subjects")
    train = (np.concatenate(slices["train"][0]), np.concatenate(slices["train"][1]))
    val = (np.concatenate(slices["validation"][0]), np.concatenate(slices["validation"][1])) if validation else None
    provenance = {"data": str(data_dir), "training_subjects": training, "validation_subjects": validation,
                  "training_slices": int(train[0].shape[0]), "registration": registration,
                  "voxel_size_mm": [float(v) for v in np.linalg.norm(reference.affine[:3, :3], axis=0)],
                  "b_value": round(float(reference.bvals.max()), 1)}
    return train, val, grid, provenance


def run_training(data_dir, out_dir, directions, config, intensity, grid=None, validation_fraction=0.1,
                 register=True, resume=False, weights_dtype="float32", reporter=None):
    """Train the generators of `directions` (1-6) and write (or update) the model package in `out_dir`."""
    out_dir = Path(out_dir)
    world, rank = distributed_context()
    train, validation, grid, provenance = load_training_data(
        data_dir, intensity, config.depth, grid, validation_fraction, config.seed, register, reporter)
    entries = {}
    if (out_dir / "manifest.json").exists():
        entries = {d["index"]: d for d in read_manifest(out_dir)["directions"]}
    for index in directions:
        trainer = Pix2PixTrainer(config, index - 1, train, validation, out_dir, reporter, flip_pair_index(index - 1))
        trainer.run(resume)
        if rank == 0:
            name = f"direction_{index}.safetensors"
            sha = save_generator_weights(out_dir / name, trainer.generator_state("best"), weights_dtype)
            entries[index] = {"index": index, "gradient_ras": SIEMENS_6_RAS[index - 1].round(12).tolist(),
                              "file": name, "sha256": sha, "dtype": weights_dtype,
                              "validation": trainer.best or (trainer.history[-1] if trainer.history else {}),
                              "epochs_trained": trainer.epoch}
    if rank == 0:
        write_manifest(out_dir, {
            "architecture": {"generator": {"in_channels": 3, "out_channels": 1, "ngf": config.ngf,
                                           "depth": config.depth, "dropout": config.dropout},
                             "discriminator": {"ndf": config.ndf, "n_layers": config.n_layers}},
            "intensity": asdict(intensity), "grid": list(grid), "voxel_size_mm": provenance["voxel_size_mm"],
            "b_value": provenance["b_value"], "input_directions": AXES_3_RAS.tolist(),
            "gradient_frame": "RAS world (scanner) unit vectors; input channels x, y, z of the scanner",
            "directions": [entries[k] for k in sorted(entries)],
            "training": {"config": asdict(config), "processes": world, **provenance},
            "created_by": f"DTISynth {__version__}", "format_version": FORMAT_VERSION})
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
    return out_dir / "manifest.json"


def parse_directions(text):
    """'all' or a comma list of 1-6 -> sorted indices."""
    if text == "all":
        return list(range(1, 7))
    values = sorted({int(v) for v in text.split(",")})
    if not values or min(values) < 1 or max(values) > 6:
        raise ValueError(f"directions must be 'all' or numbers 1-6, not {text!r}")
    return values


def describe(out_dir):
    manifest = json.loads((Path(out_dir) / "manifest.json").read_text())
    return ", ".join(f"d{d['index']}: val L1 {d['validation'].get('val_L1', float('nan')):.4f}"
                     for d in manifest["directions"])
