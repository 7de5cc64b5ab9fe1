"""`dtisynth simulate cohort | atlas`: paired DWI / DTI data with ground truth on the digital brain
phantom, and the embedded default atlas."""

from ..simulation.cohort import PAPER_GRID
from ..simulation.signals import SCHEMES
from ..service.requests import parse_grid, positive_float, positive_int
from .options import add_jsonl_option

NAME = "simulate"
HELP = "simulate paired DWI / DTI data on the digital brain phantom"


def add_arguments(parser):
    what = parser.add_subparsers(dest="what", required=True)
    cohort = what.add_parser("cohort", help="N subjects: 3-direction DWI, 6-direction DTI and ground truth")
    cohort.add_argument("--n", type=positive_int, required=True, help="number of subjects")
    cohort.add_argument("--out", required=True, help="output folder (BIDS-like layout)")
    cohort.add_argument("--scheme", choices=SCHEMES, default="sampled",
                        help="eigenvalue scheme of paper 2 (default sampled, from the embedded reference subject)")
    cohort.add_argument("--sample-from", help="DWI whose tensor fit supplies the eigenvalues (sampled schemes)")
    cohort.add_argument("--snr", type=positive_float, default=30.0, help="b=0 white-matter SNR (default 30)")
    cohort.add_argument("--grid", type=parse_grid, default=PAPER_GRID,
                        help="voxels, e.g. 128x128x76 (default; the field of view is fixed at 220x220x152 mm)")
    cohort.add_argument("--noise-free", action="store_true",
                        help="no noise (the SNR is still drawn per subject and recorded, unused)")
    cohort.add_argument("--seed", type=int, required=True, help="random seed: the same seed gives the same bytes")
    cohort.add_argument("--no-variation", action="store_true",
                        help="no pose, misregistration, deformation or diffusivity variation between subjects")
    add_jsonl_option(cohort)
    atlas = what.add_parser("atlas", help="the embedded default atlas: ROI labels, T1-like, FA and b=0 templates")
    atlas.add_argument("--out", required=True, help="output folder")
    atlas.add_argument("--grid", type=parse_grid, default=PAPER_GRID, help="voxels (default 128x128x76)")
    add_jsonl_option(atlas)


def run(args, reporter):
    if args.what == "atlas":
        from ..simulation.phantom_atlas import write_atlas

        outputs = write_atlas(args.out, args.grid)
        reporter.result(outputs, f"wrote the atlas ({len(outputs)} files) to {args.out}")
        return
    from ..simulation.cohort import write_cohort

    outputs = write_cohort(args.out, args.n, args.scheme, args.seed, args.snr, args.grid, args.sample_from,
                           vary=not args.no_variation, reporter=reporter,
                           noise=not args.noise_free)
    reporter.result(outputs, f"wrote {args.n} subjects ({len(outputs)} files) to {args.out}")
