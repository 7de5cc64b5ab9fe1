"""The jobs behind the command line, one module each, each with add_arguments(parser) and
run(args, reporter); cli.py builds the parser from them and dispatches. Heavy imports (torch, the
science) happen inside run(), so that `dtisynth --help` and `dtisynth fit` start fast.

May import: every package.
"""
