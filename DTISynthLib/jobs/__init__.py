"""The jobs behind the command line, one module each, each with add_arguments(parser) and
run(args, reporter); cli.py builds the parser from them and dispatches. torch is imported only inside
run() (and what it calls), so that `dtisynth --help` and `dtisynth fit` start without it.

May import: every package.
"""
