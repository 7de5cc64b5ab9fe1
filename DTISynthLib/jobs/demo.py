"""`dtisynth demo`, the README's main job: simulate brain-phantom subjects, synthesize their DTIs with the
default model set, compare and evaluate (service.demo)."""

from ..service.requests import DemoRequest, add_arguments as add_request_arguments, from_arguments
from .options import add_jsonl_option

NAME = "demo"
HELP = "simulate phantom subjects, synthesize their DTIs with the shipped models, compare and evaluate"


def add_arguments(parser):
    add_request_arguments(parser, DemoRequest)
    add_jsonl_option(parser)


def run(args, reporter):
    from ..service.demo import run_demo
    from .process import keep_freed_heap_memory

    keep_freed_heap_memory()
    outputs, message = run_demo(from_arguments(DemoRequest, args), reporter)
    reporter.result(outputs, message)
