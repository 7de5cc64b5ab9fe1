"""Command line: `dtisynth ...` and `python -m DTISynthLib ...`.

Each job is a module of jobs/ with add_arguments(parser) and run(args, reporter); this file only builds
the parser from them and dispatches. Each job prints a progress bar on stderr, or with --jsonl
JSON-lines events on stdout (core/progress.py). Exit codes: 0 success, 2 bad input or usage,
1 unexpected failure, 130 interrupted (Ctrl-C).
"""

import argparse
import atexit
import importlib
import os
import sys

from . import __version__
from .core.errors import InputError
from .core.progress import ProgressReporter

# jobs/<name>.py each, in the order `dtisynth --help` lists them. Only the job a command names is
# imported: start-up is part of every command's time (numpy, nibabel and our modules for `fit`, not
# scipy, torch or FastAPI).
JOBS = ("fit", "simulate", "pairs", "train", "synthesize", "evaluate", "scene", "demo", "models", "review",
        "realism", "bids")


class UsageError(Exception):
    """A command line argparse refused (unknown option, bad value): exit code 2, like bad input."""

    def __init__(self, prog, message):
        super().__init__(f"{prog}: {message} (see {prog} --help)")


class _ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors come back to main instead of exiting (its sub-parsers are of this
    class too), so that --jsonl gets an error event for them as for any other refusal."""

    def error(self, message):
        raise UsageError(self.prog, message)


def build_parser(jobs=JOBS):
    """The parser with sub-parsers for `jobs` (names from JOBS)."""
    parser = _ArgumentParser(prog="dtisynth", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"dtisynth {__version__}")
    subparsers = parser.add_subparsers(dest="job", required=True)
    for name in jobs:
        job = importlib.import_module(f"{__package__}.jobs.{name}")
        job_parser = subparsers.add_parser(job.NAME, help=job.HELP)
        job.add_arguments(job_parser)
        job_parser.set_defaults(run=job.run)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    named = [argv[0]] if argv and argv[0] in JOBS else JOBS
    try:
        args = build_parser(named).parse_args(argv)
    except UsageError as exc:
        ProgressReporter(jsonl="--jsonl" in argv).error(str(exc))
        return 2
    reporter = ProgressReporter(jsonl=args.jsonl)
    try:
        args.run(args, reporter)
    except InputError as exc:  # bad input only: any other exception is a bug, with its traceback and exit 1
        reporter.error(str(exc))
        return 2
    except KeyboardInterrupt:  # Ctrl-C: outputs being written were already undone on the way out
        reporter.error("interrupted (Ctrl-C)")
        return 130
    return 0


def command():
    """The `dtisynth` process: main(), then its exit code without Python's teardown of every module, which
    takes 0.4 s once torch is imported (every synthesis, training and demo; measured: `import torch`
    alone exits in 0.39 s, 0.02 s this way). What a normal exit does that matters still happens: atexit
    handlers run (temporary-file cleanup, logging's flush, multiprocessing's), and the output streams are
    flushed. Outputs are complete by then: every job writes atomically before main returns."""
    code = main()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
