"""`dtisynth synthesize`: a synthetic DTI from a 3-direction DWI, with its maps (service.synthesize)."""

from ..service.requests import SynthesisRequest, add_arguments as add_request_arguments, from_arguments
from .options import add_jsonl_option

NAME = "synthesize"
HELP = "synthesize a 6-direction DTI from a 3-direction DWI, with maps"


def add_arguments(parser):
    add_request_arguments(parser, SynthesisRequest)
    add_jsonl_option(parser)


def run(args, reporter):
    from ..service.synthesize import synthesize
    from .process import keep_freed_heap_memory

    keep_freed_heap_memory()
    outputs, report = synthesize(from_arguments(SynthesisRequest, args), reporter)
    reporter.result(outputs, f"synthetic DTI in {args.out}" + "".join(f"\nwarning: {w}" for w in report["warnings"]))
