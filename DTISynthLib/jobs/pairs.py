"""`dtisynth pairs`: a 3-direction input and a 6-direction target from a multi-direction scan (service.pairs)."""

from ..service.requests import PairsRequest, add_arguments as add_request_arguments, from_arguments
from .options import add_jsonl_option

NAME = "pairs"
HELP = "3-direction input and 6-direction target from a multi-direction scan"


def add_arguments(parser):
    add_request_arguments(parser, PairsRequest)
    add_jsonl_option(parser)


def run(args, reporter):
    from ..service.pairs import write_pairs

    outputs, report = write_pairs(from_arguments(PairsRequest, args), reporter)
    angles = report["dwi3_angle_degrees"] + report["dti6_angle_degrees"]
    reporter.result(outputs, f"wrote {args.out}; largest angle from nominal {max(angles):.1f} degrees"
                    + "".join(f"\nwarning: {w}" for w in report["warnings"]))
