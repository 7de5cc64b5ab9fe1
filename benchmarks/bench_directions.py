"""Direction sweep: what the measured triple's orientation costs, on a real scan no shipped set saw.

Truth: the IWLS fit of every direction of the scan (default the Siemens Prisma XA30 PA scan, b=2500).
Input: noise-free projections of that tensor onto a triple, S = S0 exp(-b g^T D g), on the scan's own
grid (no registration, so only the triple changes): the scanner's x, y, z; orthogonal triples rotated
about the scanner's x axis (a slab tilted for AC-PC alignment) by 10 to 45 degrees; x and y exact
with z skewed toward y by 15 to 45 degrees (the nearest volumes of a multi-direction scheme).
Each package synthesizes the DTI (physics assembly), its fit is scored as benchmarks/bench_quality.py
scores real scans; every row also shows its difference from the straight triple of the same package,
and a triple `synthesize` refuses is listed with its message (the refusal is the product's answer).

Frames: gradient vectors are RAS world unit vectors (DWI in memory); tilts are rotations about RAS x.

    .venv/bin/python benchmarks/bench_directions.py [--scan dev_siemens_prisma_xa30_PA_b2500] [--models DIR ...]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_quality import score, tensor_and_maps  # noqa: E402

from DTISynthLib.core.dwi import DWI, check_dwi  # noqa: E402
from DTISynthLib.core.errors import InputError  # noqa: E402
from DTISynthLib.generators.package import DEFAULT_MODELS  # noqa: E402

REAL = REPO.parent / "shared" / "data" / "real"


def triples():
    """[(label, (3, 3) RAS rows)]: the straight triple, tilts about x, z skewed toward y."""
    out = [("straight x, y, z", np.eye(3))]
    for degrees in (10, 15, 20, 25, 30, 45):
        t = np.radians(degrees)
        rotation = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
        out.append((f"tilted {degrees} deg about x", np.eye(3) @ rotation.T))
    for degrees in (15, 20, 25, 30, 35, 45):
        t = np.radians(degrees)
        out.append((f"z skewed {degrees} deg", np.array([[1.0, 0, 0], [0, 1.0, 0], [0, np.sin(t), np.cos(t)]])))
    return out


def projected_dwi(b0, tensor, affine, b, directions, source):
    """b=0 + the three noise-free projections (float32) of `tensor` (x, y, z, 6; mm^2/s, RAS)."""
    from DTISynthLib.core.tensor_layout import tensor6_to_matrix

    adc = np.einsum("id,...de,ie->...i", directions, tensor6_to_matrix(tensor), directions)
    weighted = b0[..., None] * np.exp(-b * np.clip(adc, 0.0, None))
    data = np.concatenate([b0[..., None], weighted], -1).astype(np.float32)
    return DWI(data, affine, np.r_[0.0, np.full(3, b)], np.r_[[np.zeros(3)], directions], source)


def main():
    from DTISynthLib.fit.brain_mask import brain_mask
    from DTISynthLib.fit.tensor_fit import fit_tensors
    from DTISynthLib.fit.tensor_maps import compute_maps
    from DTISynthLib.generators.runner import TorchGenerators
    from DTISynthLib.io.files import load_dwi
    from DTISynthLib.synthesis.pipeline import synthesize_dwi

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", default="dev_siemens_prisma_xa30_PA_b2500")
    parser.add_argument("--models", nargs="+", default=[str(DEFAULT_MODELS)])
    args = parser.parse_args()
    started = time.perf_counter()
    full = load_dwi(REAL / args.scan / f"{args.scan}.nii.gz")
    brain = brain_mask(full.mean_b0())
    fitted = fit_tensors(full, brain).tensor
    truth = compute_maps(fitted, brain, ("fa", "md", "ad", "rd", "v1"), policy="clip")
    masks = {"brain": brain, "wm": brain & (truth["fa"] > 0.3),
             "gm": brain & (truth["fa"] < 0.2) & (truth["md"] < 1.5e-3) & (truth["md"] > 0)}
    b = float(np.round(full.bvals.max()))
    b0 = np.where(brain, full.mean_b0(), 0.0)
    print(f"Direction sweep on {args.scan} (b={b:g}; truth: the fit of all {int((~full.is_b0).sum())} directions; "
          "input: its noise-free projections onto each triple)")
    print("| package | triple | FA abs WM | vs straight | FA bias WM | V1 angle | vs straight | MD err med | "
          "FA bias >0.4 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for folder in args.models:
        runner = TorchGenerators(folder, "cpu", precision="fp32")
        straight = None
        for label, directions in triples():
            dwi = projected_dwi(b0, fitted, full.affine, b, directions, f"{args.scan} {label}")
            try:
                result = synthesize_dwi(check_dwi(dwi), runner, runner.manifest)
            except InputError as exc:
                print(f"| {Path(folder).name} | {label} | refused: {exc} | | | | | | |")
                continue
            entry = score(tensor_and_maps(result.dti, brain), truth, masks)
            straight = straight or entry
            print(f"| {Path(folder).name} | {label} | {entry['fa_abs_wm']:.3f} | "
                  f"{entry['fa_abs_wm'] - straight['fa_abs_wm']:+.3f} | {entry['fa_bias_wm']:+.3f} | "
                  f"{entry['v1_angle_median']:.1f} | {entry['v1_angle_median'] - straight['v1_angle_median']:+.1f} | "
                  f"{entry['md_rel_median']:.1%} | {entry['fa_bias_above_04']:+.3f} |", flush=True)
    print(f"\n{(time.perf_counter() - started) / 60:.1f} min on this machine")


if __name__ == "__main__":
    main()
