"""The realism job: which of paper 2's simulation schemes is closest to a real scan (RealismOutput)."""

import json
from pathlib import Path

from ..core.atomic import atomic_output_dir, write_text_atomic
from ..core.dwi import select_shell
from ..core.json_values import without_nan
from ..core.output_layout import RealismOutput
from ..core.tables import csv_text, new_figure
from ..core.progress import NullReporter
from ..io.files import load_dwi
from ..realism.autoencoder import AutoencoderConfig
from ..realism.schemes import compare_schemes


def rank_schemes(request, reporter=NullReporter()):
    """Compare schemes on one real scan and write the tables, realism.json and the figure
    (requests.RealismRequest); returns the written paths and the comparison."""
    path, out_dir, n_train, n_validation = request.real, request.out, request.train_voxels, request.validation_voxels
    epochs, min_hidden, seed = request.epochs, request.min_hidden, request.seed
    dwi = select_shell(load_dwi(path, request.bval, request.bvec), request.shell)
    config = AutoencoderConfig(epochs=epochs, min_hidden=min_hidden)
    comparison = compare_schemes(dwi, list(request.schemes), n_train, n_validation, config, seed, reporter)
    rows = [dict(scheme=s, **comparison.scores[s].summary(), train_seconds=comparison.training[s]["seconds"])
            for s in comparison.scores]
    with atomic_output_dir(out_dir) as staging:
        layout = RealismOutput(staging)
        write_text_atomic(layout.schemes, csv_text(rows))
        write_text_atomic(layout.tests, csv_text(comparison.tests))
        summary = {"input": str(path), "noise_sigma_over_s0": comparison.noise, "train_voxels": n_train,
                   "validation_voxels": n_validation, "epochs": epochs, "min_hidden": min_hidden, "seed": seed,
                   "schemes": rows,
                   "paired_tests": comparison.tests, "training": comparison.training}
        write_text_atomic(layout.summary, json.dumps(without_nan(summary), indent=2, allow_nan=False))
        _figure(layout.figure, rows)
        names = [p.name for p in (layout.schemes, layout.tests, layout.summary, layout.figure)]
    return [Path(out_dir) / n for n in names], comparison


def _figure(path, rows):
    """Three panels like paper 2's Fig. 1 and 2: attenuation MAE, FA MAE, principal-direction angle."""
    figure, axes = new_figure(1, 3, figsize=(11, 3.2))
    names = [r["scheme"] for r in rows]
    for ax, key, title in zip(axes, ("attenuation_mae", "fa_mae", "direction_degrees"),
                              ("attenuation mean abs error", "FA mean abs error", "V1 deviation (FA 0.5-0.9), deg"),
                              strict=True):
        ax.bar(names, [r[key] if r[key] is not None else 0 for r in rows], color="#4477aa")
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=8, rotation=20)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
