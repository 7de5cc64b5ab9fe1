"""`dtisynth evaluate`: synthetic against original DTI (atlas ROIs, statistics, report; service.evaluate)."""

from ..service.requests import EvaluationRequest, add_arguments as add_request_arguments, from_arguments
from .options import add_jsonl_option

NAME = "evaluate"
HELP = "compare synthetic with original DTI: atlas ROIs, statistics, report"


def add_arguments(parser):
    add_request_arguments(parser, EvaluationRequest)
    add_jsonl_option(parser)


def run(args, reporter):
    from ..core.output_layout import EvaluationOutput
    from ..service.evaluate import evaluate

    outputs, summary = evaluate(from_arguments(EvaluationRequest, args), reporter)
    flagged = sum(1 for row in summary["table2"] if row["flag"])
    reporter.result(outputs, f"evaluation of {len(summary['subjects'])} subject(s) in {args.out}; report "
                    f"{EvaluationOutput(args.out).report}"
                    + "".join(f"\nrealism index (synthetic / acquired autoencoder error) {r['subject']}: "
                              f"{r['realism_index']:.2f}" for r in summary["realism_index"]["rows"][-1:])
                    + (f"\nwarning: {flagged} flagged row(s) in table2.csv" if flagged else ""))
