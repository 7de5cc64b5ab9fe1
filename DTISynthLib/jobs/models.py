"""`dtisynth models`: the model packages this installation has (shipped, and any other folders of
packages given), each with its kind and a one-line description; the default is marked."""

from pathlib import Path

from .options import add_jsonl_option

NAME = "models"
HELP = "list the model packages (shipped and given folders) with a one-line description"


def add_arguments(parser):
    parser.add_argument("--root", action="append", default=[],
                        help="a further folder of model packages (repeatable), e.g. imported ones")
    add_jsonl_option(parser)


def run(args, reporter):
    from ..generators.package import DEFAULT_MODELS, SHIPPED_MODELS, installed_packages
    from ..generators.registry import kind_name

    packages = installed_packages([SHIPPED_MODELS, *args.root])
    lines = []
    for folder, manifest, description in packages:
        default = " (default)" if Path(folder).resolve() == Path(DEFAULT_MODELS).resolve() else ""
        kind = kind_name(manifest) if manifest else "?"
        lines.append(f"{folder.name}{default}  [{kind}]  {description}\n    {folder}")
    listing = "\n".join(lines) or "no model packages found"
    if args.jsonl:
        reporter.result([str(folder) for folder, _, _ in packages], listing)
    else:
        print(listing)  # a listing is the command's output: stdout, not the progress stream
