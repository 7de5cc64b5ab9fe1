"""`dtisynth fit`: load a DWI, mask, fit tensors, compute maps, write them atomically (service.fit)."""

from ..service.requests import FitRequest, add_arguments as add_request_arguments, from_arguments
from .options import add_jsonl_option

NAME = "fit"
HELP = "fit diffusion tensors and write FA / MD / AD / RD / colour maps"


def add_arguments(parser):
    add_request_arguments(parser, FitRequest)
    add_jsonl_option(parser)


def run(args, reporter):
    from ..service.fit import fit

    outputs = fit(from_arguments(FitRequest, args), reporter)
    reporter.result(outputs, f"wrote {len(outputs)} files to {args.out}")
