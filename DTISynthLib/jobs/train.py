"""`dtisynth train`: paired data -> a model package of the chosen generator kind (runs under torchrun
too; service.train)."""

from ..service.requests import TrainingRequest, add_arguments as add_request_arguments, from_arguments
from .options import add_jsonl_option

NAME = "train"
HELP = "train a model package: six pix2pix generators (also under torchrun) or one tensor-unet"


def add_arguments(parser):
    add_request_arguments(parser, TrainingRequest)
    add_jsonl_option(parser)


def run(args, reporter):
    from ..service.train import describe, train

    manifest = train(from_arguments(TrainingRequest, args), reporter)
    reporter.result([manifest], f"model package in {args.out}: {describe(args.out)}")
