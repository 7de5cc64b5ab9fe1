"""Paper 2's scheme comparison (`dtisynth realism`) on every shared real scan: the README's table.

For each scan under DATA (a folder per scan holding NAME.nii.gz + .bval + .bvec), runs the comparison
with the given options, keeps each scan's output folder under OUT, and prints one markdown row per
scan: attenuation MAE / FA abs error / V1 angle (voxels of FA 0.5-0.9) per scheme; (rN): N restarts,
(dK): K bottleneck units dead after training.
3.5-5 minutes per scan on 2 CPU cores at the defaults.

    .venv/bin/python benchmarks/realism_scheme_table.py --out DIR [--data ../shared/data/real]
                     [--min-hidden 1] [--train-voxels 250000] [--validation-voxels 50000] [--epochs 50]
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from DTISynthLib.generators.runner import cpu_model  # noqa: E402
from DTISynthLib.service.realism import rank_schemes  # noqa: E402
from DTISynthLib.service.requests import RealismRequest  # noqa: E402
from DTISynthLib.simulation.signals import SCHEMES  # noqa: E402


def scans(data):
    found = sorted(p for p in Path(data).iterdir() if (p / f"{p.name}.nii.gz").exists())
    if not found:
        raise SystemExit(f"{data}: expected folders NAME/NAME.nii.gz (+ .bval, .bvec), found none")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "real"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--min-hidden", type=int, default=1)
    parser.add_argument("--train-voxels", type=int, default=250_000)
    parser.add_argument("--validation-voxels", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=50)
    args = parser.parse_args()
    print(f"# {os.cpu_count()} CPUs ({cpu_model()}); min hidden units {args.min_hidden}, "
          f"{args.train_voxels} + {args.validation_voxels} voxels, {args.epochs} epochs")
    print("| scan | noise sigma/S0 | layers | " + " | ".join(SCHEMES) + " |")
    print("|---" * (len(SCHEMES) + 3) + "|")
    for folder in scans(args.data):
        start = time.perf_counter()
        _, comparison = rank_schemes(RealismRequest(
            real=folder / f"{folder.name}.nii.gz", out=Path(args.out) / folder.name, schemes=tuple(SCHEMES),
            train_voxels=args.train_voxels, validation_voxels=args.validation_voxels, epochs=args.epochs,
            min_hidden=args.min_hidden))
        cells = []
        for scheme in SCHEMES:
            s = comparison.scores[scheme].summary()
            record = comparison.training[scheme]
            marks = [f"r{record['restarts']}"] * bool(record["restarts"]) + [f"d{record['dead_units']}"] * bool(
                record["dead_units"])
            cells.append(f"{s['attenuation_mae']:.4f} / {s['fa_mae']:.3f} / {s['direction_degrees']:.1f}°"
                         + (f" ({', '.join(marks)})" if marks else ""))
        layers = "-".join(map(str, comparison.training[SCHEMES[0]]["layers"]))
        name = folder.name.removeprefix("dev_")
        print(f"| {name} | {comparison.noise:.4f} | {layers} | " + " | ".join(cells)
              + f" |  <!-- {time.perf_counter() - start:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
