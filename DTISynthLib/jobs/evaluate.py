"""`dtisynth evaluate`: synthetic against original DTI (atlas ROIs, statistics, report; EvaluationOutput)."""

from .options import add_jsonl_option, non_negative_int, positive_int

NAME = "evaluate"
HELP = "compare synthetic with original DTI: atlas ROIs, statistics, report"


def add_arguments(parser):
    parser.add_argument("--original", required=True,
                        help="the acquired DTI (b=0 + 6 or more directions), or a cohort folder of "
                             "<subject>_acq-dti6_dwi files")
    parser.add_argument("--synthetic", required=True,
                        help="a `dtisynth synthesize` output folder (or its synthetic_dti file); for a cohort, "
                             "a folder with one such folder per subject")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--atlas", action="append", default=[],
                        help="atlas folder (atlas_dseg.nii.gz, atlas_b0 / atlas_FA.nii.gz, labels.tsv); repeat "
                             "for several; 'embedded' is the phantom atlas (the default)")
    parser.add_argument("--rois", type=lambda text: [r for r in text.split(",") if r],
                        help="comma-separated ROIs (default: the seed paper's five)")
    parser.add_argument("--jobs", type=positive_int, default=1, help="subjects evaluated in parallel (cohort mode)")
    parser.add_argument("--realism-voxels", type=positive_int, default=250_000,
                        help="training voxels of each realism-index autoencoder (paper 2: 250000)")
    parser.add_argument("--realism-epochs", type=non_negative_int, default=50,
                        help="epochs of each realism-index autoencoder (paper 2: 50; 0: no realism index)")
    add_jsonl_option(parser)


def run(args, reporter):
    from ..core.output_layout import EvaluationOutput
    from ..evaluation.comparison import run_evaluation

    outputs, summary = run_evaluation(args.original, args.synthetic, args.out, args.atlas, args.rois, args.jobs,
                                      reporter, args.realism_voxels, args.realism_epochs)
    flagged = sum(1 for row in summary["table2"] if row["flag"])
    reporter.result(outputs, f"evaluation of {len(summary['subjects'])} subject(s) in {args.out}; report "
                    f"{EvaluationOutput(args.out).report}"
                    + "".join(f"\nrealism index (synthetic / acquired autoencoder error) {r['subject']}: "
                              f"{r['realism_index']:.2f}" for r in summary["realism_index"]["rows"][-1:])
                    + (f"\nwarning: {flagged} flagged row(s) in table2.csv" if flagged else ""))
