"""`dtisynth review create | serve | analyze | export | lock`: blinded noise-review studies of original and
synthetic maps (the seed paper's reader study)."""

import csv
import sys

from .options import add_jsonl_option, port

NAME = "review"
HELP = "blinded noise-review studies: create, serve (browser review), analyze, export (unblinded), lock"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765
EXPORT_COLUMNS = ("reader", "subject", "map", "position", "choice", "synthetic_side", "synthetic_chosen",
                  "confidence", "comment", "shown_at", "answered_at", "seconds")


def add_arguments(parser):
    what = parser.add_subparsers(dest="what", required=True)
    create = what.add_parser("create", help="a study from original and synthetic DTIs; prints each reader's link")
    create.add_argument("--original", required=True,
                        help="the acquired DTI, or a cohort folder of <subject>_acq-dti6_dwi files (as evaluate)")
    create.add_argument("--synthetic", required=True,
                        help="a `dtisynth synthesize` output folder, or a folder of one per subject (as evaluate)")
    create.add_argument("--out", required=True, help="the study folder (new)")
    create.add_argument("--maps", default="color,fa,md,ad,rd", help="maps to review (default color,fa,md,ad,rd)")
    create.add_argument("--readers", default="2", help="number of readers, or a comma list of their names (default 2)")
    create.add_argument("--seed", type=int, default=0, help="seed of every reader's case order and sides")
    create.add_argument("--name", help="study name (default: the folder's name)")
    create.add_argument("--host", default=DEFAULT_HOST, help="host of the printed links (review serve's)")
    create.add_argument("--port", type=port, default=DEFAULT_PORT, help="port of the printed links")
    add_jsonl_option(create)
    serve = what.add_parser("serve", help="serve the study's review page to its readers (until Ctrl-C)")
    serve.add_argument("study", help="the study folder")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}: this "
                       "machine only; 0.0.0.0 to let readers on the network in)")
    serve.add_argument("--port", type=port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    add_jsonl_option(serve)
    analyze = what.add_parser("analyze", help="proportions, binomial tests, kappa: CSV, HTML report")
    analyze.add_argument("study", help="the study folder")
    analyze.add_argument("--out", required=True, help="output folder")
    add_jsonl_option(analyze)
    export = what.add_parser("export", help="CSV of every answer, unblinded (for the study's organiser only)")
    export.add_argument("study", help="the study folder")
    export.add_argument("--out", help="CSV file (default: standard output)")
    add_jsonl_option(export)
    lock = what.add_parser("lock", help="accept no more answers")
    lock.add_argument("study", help="the study folder")
    add_jsonl_option(lock)


def reader_link(host, port, token):
    return f"http://{host}:{port}/r/{token}"


def run(args, reporter):
    from ..review.store import StudyStore

    if args.what == "create":
        from ..review.study import create_study

        tokens = create_study(args.original, args.synthetic, args.out, [m.strip() for m in args.maps.split(",")],
                              args.readers, args.seed, args.name, reporter)
        lines = [f"{name}: {reader_link(args.host, args.port, token)}" for name, token in tokens.items()]
        reporter.result([args.out], "study written to {}; each reader's link (shown once, keep it):\n{}".format(
            args.out, "\n".join(lines)))
        return
    store = StudyStore(args.study)
    if args.what == "serve":
        from ..review.server import serve

        reporter.result([args.study], f"serving {args.study} on http://{args.host}:{args.port}/r/<reader token> "
                        "(Ctrl-C stops)")
        serve(args.study, args.host, args.port)
    elif args.what == "analyze":
        from ..review.analysis import write_analysis

        tables = write_analysis(store, args.out)
        pooled = tables["noisier"][-1]
        reporter.result([args.out], f"{pooled['answers']} answers; synthetic judged noisier in "
                        f"{pooled['synthetic_noisier']} ({pooled['proportion']:.1%}), P = {pooled['p_binomial']:.3g}; "
                        f"report in {args.out}")
    elif args.what == "export":
        answers = store.unblinded_answers()
        if args.out:
            import io

            from ..core.atomic import write_output_file

            text = io.StringIO(newline="")
            _write_answers(text, answers)
            write_output_file(args.out, text.getvalue())
            reporter.result([args.out], f"{len(answers)} answers written to {args.out}")
        else:
            _write_answers(sys.stdout, answers)
    elif args.what == "lock":
        store.lock()
        reporter.result([args.study], f"{args.study} is locked: no more answers")


def _write_answers(handle, answers):
    writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(answers)
