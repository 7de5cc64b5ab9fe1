"""`dtisynth realism`: which of paper 2's simulation schemes is closest to a real scan (service.realism)."""

from ..service.requests import RealismRequest, add_arguments as add_request_arguments, from_arguments
from .options import add_jsonl_option

NAME = "realism"
HELP = "rank paper 2's simulation schemes by how well an autoencoder trained on each reconstructs a real scan"


def add_arguments(parser):
    add_request_arguments(parser, RealismRequest)
    add_jsonl_option(parser)


def run(args, reporter):
    from ..service.realism import rank_schemes

    outputs, comparison = rank_schemes(from_arguments(RealismRequest, args), reporter)
    ranked = sorted(comparison.scores, key=lambda s: comparison.scores[s].attenuation_error.mean())
    reporter.result(outputs, f"schemes by attenuation error on {args.real}: " + ", ".join(
        f"{s} {comparison.scores[s].attenuation_error.mean():.4f}" for s in ranked))
