"""`dtisynth demo`, the README's main job: simulate brain-phantom subjects, synthesize their DTIs with the
default model set, compare and evaluate (service.demo)."""

from .options import add_jsonl_option

NAME = "demo"
HELP = "simulate phantom subjects, synthesize their DTIs with the shipped models, compare and evaluate"


def add_arguments(parser):
    parser.add_argument("--out", required=True, help="output folder")
    add_jsonl_option(parser)


def run(args, reporter):
    from ..service.demo import run_demo
    from .process import keep_freed_heap_memory

    keep_freed_heap_memory()
    outputs, message = run_demo(args.out, reporter)
    reporter.result(outputs, message)
