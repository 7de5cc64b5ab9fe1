"""`dtisynth realism`: which of paper 2's simulation schemes is closest to a real scan (RealismOutput)."""

import csv
import io
import json
from pathlib import Path

from ..core.atomic import atomic_output_dir, write_text_atomic
from ..core.json_values import without_nan
from ..core.output_layout import RealismOutput
from ..core.progress import NullReporter
from ..simulation.signals import SCHEMES
from .options import add_jsonl_option, positive_int

NAME = "realism"
HELP = "rank paper 2's simulation schemes by how well an autoencoder trained on each reconstructs a real scan"


def _schemes(text):
    import argparse

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or set(names) - set(SCHEMES):
        raise argparse.ArgumentTypeError(f"expected a comma list from {','.join(SCHEMES)}, not {text!r}")
    return names


def add_arguments(parser):
    parser.add_argument("--real", required=True, help="a real multi-direction DWI (NIfTI + bval/bvec, NRRD, DICOM)")
    parser.add_argument("--bval")
    parser.add_argument("--bvec")
    parser.add_argument("--shell", type=float, help="shell to use in multi-shell data (s/mm^2)")
    parser.add_argument("--schemes", type=_schemes, default=list(SCHEMES),
                        help="comma list (default all four: syn,sampled,sample-and-mean,random-wm)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--train-voxels", type=positive_int, default=250_000, help="per scheme (paper 2: 250000)")
    parser.add_argument("--validation-voxels", type=positive_int, default=50_000, help="per scheme (paper 2: 50000)")
    parser.add_argument("--epochs", type=positive_int, default=50, help="paper 2: 50")
    parser.add_argument("--min-hidden", type=positive_int, default=1,
                        help="units in each hidden layer at least (paper 2: 1; 6, a tensor's degrees of freedom, "
                             "keeps the 1/8 bottleneck of 15-32 directions from losing the tensor)")
    parser.add_argument("--seed", type=int, default=0)
    add_jsonl_option(parser)


def run(args, reporter):
    outputs, comparison = run_realism(args.real, args.out, args.schemes, args.train_voxels, args.validation_voxels,
                                      args.epochs, args.seed, args.bval, args.bvec, args.shell, reporter,
                                      args.min_hidden)
    ranked = sorted(comparison.scores, key=lambda s: comparison.scores[s].attenuation_error.mean())
    reporter.result(outputs, f"schemes by attenuation error on {args.real}: " + ", ".join(
        f"{s} {comparison.scores[s].attenuation_error.mean():.4f}" for s in ranked))


def run_realism(path, out_dir, schemes=SCHEMES, n_train=250_000, n_validation=50_000, epochs=50, seed=0,
                bval=None, bvec=None, shell=None, reporter=NullReporter(), min_hidden=1):
    """Compare schemes on one real scan and write the tables, realism.json and the figure."""
    from ..core.dwi import select_shell
    from ..io.files import load_dwi
    from ..realism.autoencoder import AutoencoderConfig
    from ..realism.schemes import compare_schemes

    dwi = select_shell(load_dwi(path, bval, bvec), shell)
    config = AutoencoderConfig(epochs=epochs, min_hidden=min_hidden)
    comparison = compare_schemes(dwi, schemes, n_train, n_validation, config, seed, reporter)
    rows = [dict(scheme=s, **comparison.scores[s].summary(), train_seconds=comparison.training[s]["seconds"])
            for s in comparison.scores]
    with atomic_output_dir(out_dir) as staging:
        layout = RealismOutput(staging)
        write_text_atomic(layout.schemes, _csv(rows))
        write_text_atomic(layout.tests, _csv(comparison.tests))
        summary = {"input": str(path), "noise_sigma_over_s0": comparison.noise, "train_voxels": n_train,
                   "validation_voxels": n_validation, "epochs": epochs, "min_hidden": min_hidden, "seed": seed,
                   "schemes": rows,
                   "paired_tests": comparison.tests, "training": comparison.training}
        write_text_atomic(layout.summary, json.dumps(without_nan(summary), indent=2, allow_nan=False))
        _figure(layout.figure, rows)
        names = [p.name for p in (layout.schemes, layout.tests, layout.summary, layout.figure)]
    return [Path(out_dir) / n for n in names], comparison


def _csv(rows):
    text = io.StringIO(newline="")
    if rows:
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return text.getvalue()


def _figure(path, rows):
    """Three panels like paper 2's Fig. 1 and 2: attenuation MAE, FA MAE, principal-direction angle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    names = [r["scheme"] for r in rows]
    for ax, key, title in zip(axes, ("attenuation_mae", "fa_mae", "direction_degrees"),
                              ("attenuation mean abs error", "FA mean abs error", "V1 deviation (FA 0.5-0.9), deg"),
                              strict=True):
        ax.bar(names, [r[key] if r[key] is not None else 0 for r in rows], color="#4477aa")
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=8, rotation=20)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
