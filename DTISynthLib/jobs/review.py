"""`dtisynth review create | serve | add-reader | reissue | analyze | export | lock`: blinded noise-review
studies of original and synthetic maps (the seed paper's reader study)."""

import sys

from ..core.tables import csv_text
from ..service.requests import REVIEW_HOST, REVIEW_PORT, ReviewStudyRequest, from_arguments, port
from ..service.requests import add_arguments as add_request_arguments
from .options import add_jsonl_option

NAME = "review"
HELP = ("blinded noise-review studies: create, serve (browser review), add-reader, reissue (a lost link), analyze, "
        "export (unblinded), lock")
EXPORT_COLUMNS = ("reader", "subject", "map", "position", "training", "choice", "synthetic_side", "synthetic_chosen",
                  "confidence", "comment", "shown_at", "answered_at", "paused_seconds", "seconds")


def add_arguments(parser):
    what = parser.add_subparsers(dest="what", required=True)
    create = what.add_parser("create", help="a study from original and synthetic DTIs; prints each reader's link")
    add_request_arguments(create, ReviewStudyRequest)
    add_jsonl_option(create)
    serve = what.add_parser("serve", help="serve the study's review page to its readers (until Ctrl-C)")
    serve.add_argument("study", help="the study folder")
    serve.add_argument("--host", help="address to listen on (default: the study's, as its links were printed; "
                       "0.0.0.0 lets readers on the network in)")
    serve.add_argument("--port", type=port, help="port (default: the study's, as its links were printed)")
    add_jsonl_option(serve)
    add = what.add_parser("add-reader", help="add a reader to a study; prints their link")
    add.add_argument("study", help="the study folder")
    add.add_argument("--name", required=True, help="the new reader's name")
    add_jsonl_option(add)
    reissue = what.add_parser("reissue", help="a new link for a reader who lost theirs (the old one stops working)")
    reissue.add_argument("study", help="the study folder")
    reissue.add_argument("--reader", required=True, help="the reader's name")
    add_jsonl_option(reissue)
    analyze = what.add_parser("analyze", help="proportions, binomial tests, kappa: CSV, HTML report")
    analyze.add_argument("study", help="the study folder")
    analyze.add_argument("--out", required=True, help="output folder")
    add_jsonl_option(analyze)
    export = what.add_parser("export", help="CSV of every answer (practice cases flagged training), unblinded (for the "
                             "study's organiser only)")
    export.add_argument("study", help="the study folder")
    export.add_argument("--out", help="CSV file (default: standard output)")
    add_jsonl_option(export)
    lock = what.add_parser("lock", help="accept no more answers")
    lock.add_argument("study", help="the study folder")
    add_jsonl_option(lock)


def study_address(store):
    """(host, port) the study's links were printed for (create's --host / --port)."""
    info = store.info()
    return info.get("host", REVIEW_HOST), int(info.get("port", REVIEW_PORT))


def print_links(reporter, lines):
    """Reader links on standard output (`review create ... > links.txt` keeps them), one per line, and
    True; the progress and the message stay on standard error. With --jsonl nothing is printed (False):
    the result event carries them."""
    if getattr(reporter, "jsonl", False):
        return False
    print("\n".join(lines), flush=True)
    return True


def run(args, reporter):
    from ..review.store import StudyStore

    if args.what == "create":
        from ..service.review import create_review_study

        links = create_review_study(from_arguments(ReviewStudyRequest, args), reporter)
        lines = [f"{name}: {link}" for name, link in links.items()]
        if print_links(reporter, lines):
            reporter.result([args.out], f"study written to {args.out}; each reader's link is on standard output "
                                        "(shown once, keep it)")
        else:
            reporter.result([args.out], "study written to {}; each reader's link (shown once, keep it):\n{}".format(
                args.out, "\n".join(lines)))
        return
    store = StudyStore(args.study)
    if args.what == "serve":
        from ..review.server import bind, serve

        printed = study_address(store)
        host, listen = args.host or printed[0], args.port or printed[1]
        warning = "" if (host, listen) == printed else (
            f"\nwarning: the study's links were printed for http://{printed[0]}:{printed[1]}; readers must change "
            f"them to http://{host}:{listen} (or serve without --host / --port)")
        sock = bind(host, listen)  # a port in use is an error event and exit 2, before anything is announced
        reporter.result([args.study], f"serving {args.study} on http://{host}:{listen}/r/<reader token> "
                        f"(Ctrl-C stops){warning}")
        try:
            serve(args.study, sock=sock)
        except KeyboardInterrupt:
            # Ctrl-C is how serve is meant to stop, so a success (exit 0), not a traceback. uvicorn re-raises
            # the SIGINT it caught only after its graceful shutdown (requests in flight finished); and each
            # answer is one transaction, so even a forced stop (a second Ctrl-C) leaves the store whole.
            reporter.result([args.study], "review server stopped")
    elif args.what in ("add-reader", "reissue"):
        from ..review.store import reader_name
        from ..service.review import reader_link

        if args.what == "add-reader":
            name = reader_name(args.name)  # the name as stored (add_reader takes it the same way)
            token = store.add_reader(name)
        else:
            name, token = args.reader, store.reissue_token(args.reader)
        host, listen = study_address(store)
        line = f"{name}: {reader_link(host, listen, token)}"
        note = " (shown once, keep it)" if args.what == "add-reader" else " (the old link no longer works)"
        reporter.result([args.study], f"{name}: link on standard output{note}" if print_links(reporter, [line])
                        else line + note)
    elif args.what == "analyze":
        from ..review.analysis import write_analysis

        tables = write_analysis(store, args.out)
        pooled = tables["noisier"][-1]
        counted = len(tables["counted"]["readers"])
        reporter.result([args.out], f"{pooled['answers']} answers of {counted} counted reader(s) of "
                        f"{len(tables['readers'])}; synthetic judged noisier in "
                        f"{pooled['synthetic_noisier']} ({pooled['proportion']:.1%}; 95 % interval clustered by reader "
                        f"and case {pooled['ci95_low_clustered']:.1%}-{pooled['ci95_high_clustered']:.1%}; "
                        f"P = {pooled['p_binomial']:.3g} if answers were independent); report in {args.out}")
    elif args.what == "export":
        answers = store.unblinded_answers(training=True)  # training answers too, flagged (analyze leaves them out)
        if args.out:
            import io

            from ..core.atomic import write_output_file

            text = io.StringIO(newline="")
            _write_answers(text, answers)
            write_output_file(args.out, text.getvalue())
            reporter.result([args.out], f"{len(answers)} answers written to {args.out}")
        else:
            try:
                _write_answers(sys.stdout, answers)
                sys.stdout.flush()
            except BrokenPipeError:  # `review export STUDY | head`: the reader of the pipe had enough
                import os

                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    elif args.what == "lock":
        store.lock()
        reporter.result([args.study], f"{args.study} is locked: no more answers")


def _write_answers(handle, answers):
    handle.write(csv_text(answers, EXPORT_COLUMNS))
