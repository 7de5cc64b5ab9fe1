"""`dtisynth models`: the model packages this installation has (shipped, and any other folders of
packages given), each with its kind and a one-line description; the default is marked. With
--import, a package (folder or .zip) is verified and copied into the --into folder first. With
--fit-input-check, a package gains the out-of-distribution check of its training inputs (its
training data folder given by --data; service/input_check.py)."""

from pathlib import Path

from ..service.requests import positive_float, positive_int
from .options import add_jsonl_option

NAME = "models"
HELP = "list the model packages (shipped and given folders) with a one-line description; import one; fit its input check"


def add_arguments(parser):
    parser.add_argument("--root", action="append", default=[],
                        help="a further folder of model packages (repeatable), e.g. imported ones")
    parser.add_argument("--import", dest="package", metavar="PACKAGE",
                        help="a model package (folder or .zip) to verify and copy into --into")
    parser.add_argument("--into", help="the folder of model packages --import copies into")
    parser.add_argument("--fit-input-check", metavar="PACKAGE",
                        help="fit the out-of-distribution check of PACKAGE's training inputs (the 3-direction DWIs of "
                             "its manifest's training and validation subjects, found under --data) and add it to it")
    parser.add_argument("--data", help="the training data folder of the --fit-input-check package")
    parser.add_argument("--epochs", type=positive_int,
                        help="of the input-check autoencoder (default: realism.input_check.EPOCHS, 20)")
    parser.add_argument("--warning-ratio", type=positive_float,
                        help="error ratio above which synthesize warns (default: realism.input_check.WARNING_RATIO, "
                             "3.5); calibrate it on real scans and a non-brain input when the validation subjects "
                             "are real scans, whose own error sets the ratio's unit")
    add_jsonl_option(parser)


def run(args, reporter):
    from ..core.errors import InputError
    from ..generators.package import (
        DEFAULT_MODELS,
        SHIPPED_MODELS,
        import_package,
        installed_packages,
    )

    if args.fit_input_check:
        from ..service.input_check import add_input_check

        if not args.data:
            raise InputError("--fit-input-check", "--data DIR, the package's training data", "no --data")
        entry = add_input_check(args.fit_input_check, args.data, args.epochs, reporter, args.warning_ratio)
        reporter.result([str(Path(args.fit_input_check) / entry["file"])],
                        f"input check of {args.fit_input_check}: reference error {entry['reference_error']:.4g} on "
                        f"{', '.join(entry['validation_subjects'])}; warning above {entry['warning_ratio']:g} x")
        return
    if args.package:
        if not args.into:
            raise InputError("--import", "--into DIR, the folder to copy the package into", "no --into")
        target = import_package(args.package, args.into)
        reporter.progress("import", 1.0, f"{args.package} verified and copied to {target}")
        args.root.append(args.into)
    packages = installed_packages([SHIPPED_MODELS, *args.root])
    lines = []
    for folder, manifest, description in packages:
        default = " (default)" if Path(folder).resolve() == Path(DEFAULT_MODELS).resolve() else ""
        kind = manifest.kind if manifest else "?"
        lines.append(f"{folder.name}{default}  [{kind}]  {description}\n    {folder}")
    listing = "\n".join(lines) or "no model packages found"
    if args.jsonl:
        reporter.result([str(folder) for folder, _, _ in packages], listing)
    else:
        print(listing)  # a listing is the command's output: stdout, not the progress stream
