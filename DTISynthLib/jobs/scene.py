"""`dtisynth scene`: a Slicer scene bundle (.mrb) of synthesis (and evaluation) results."""

from .options import add_jsonl_option

NAME = "scene"
HELP = "write a Slicer scene bundle (.mrb) of synthesis (and evaluation) results"


def add_arguments(parser):
    parser.add_argument("--results", required=True, help="a `dtisynth synthesize` output folder")
    parser.add_argument("--evaluation", help="a `dtisynth evaluate` output folder for the same subject")
    parser.add_argument("--out", required=True, help="the scene file (.mrb)")
    parser.add_argument("--name", default="DTISynth", help="name of the subject-hierarchy folder and node prefix")
    add_jsonl_option(parser)


def run(args, reporter):
    from ..slicer.mrml_adapter import write_scene_bundle

    reporter.progress("scene", 0.0, f"nodes from {args.results}")
    out, roles = write_scene_bundle(args.results, args.out, args.evaluation, args.name)
    reporter.result([out], f"Slicer scene {out} with {len(roles)} nodes: open it in Slicer (File > Add Data)")
