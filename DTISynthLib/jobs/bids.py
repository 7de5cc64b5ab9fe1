"""`dtisynth bids BIDS_DIR OUT_DIR participant | group`: a BIDS App: every session's 3-direction DWIs of a
BIDS dataset synthesized into BIDS derivatives, on Dask; the group level evaluates them (service.cohort)."""

from ..service.requests import BidsRequest, add_arguments as add_request_arguments, from_arguments
from .options import add_jsonl_option

NAME = "bids"
HELP = "a BIDS dataset's sessions synthesized into BIDS derivatives, on a local or existing Dask cluster"


def add_arguments(parser):
    add_request_arguments(parser, BidsRequest)
    add_jsonl_option(parser)


def run(args, reporter):
    from ..core.errors import InputError
    from ..core.output_layout import CohortOutput
    from ..io import bids
    from ..service.cohort import run_group, run_participants

    layout = CohortOutput(args.out_dir)
    if args.level == "group":
        outputs, summary = run_group(from_arguments(BidsRequest, args), reporter)
        reporter.result(outputs, f"evaluation of {len(summary['subjects'])} session(s) in {layout.group.folder} "
                        f"({layout.group_sessions.name}: which, and why not the others)")
        return
    rows, validator_errors = run_participants(from_arguments(BidsRequest, args), reporter)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "skipped", "failed")}
    failed = [r for r in rows if r["status"] == "failed"]
    summary = (f"{counts['done']} session(s) synthesized, {counts['skipped']} done before, {counts['failed']} failed; "
               f"derivatives in {args.out_dir} ({layout.sessions.name} lists them)")
    if validator_errors:
        summary += (f"\nwarning: the BIDS validator found errors in {args.bids_dir} (DTISynth ran every session it "
                    "could read):" + "".join(f"\n  {line}" for line in bids.describe_validator_errors(validator_errors)))
    elif validator_errors is None and not args.skip_bids_validation:
        summary += "\nnote: BIDS_DIR not validated (the BIDS validator is not installed: pip install 'dtisynth[cohort]')"
    if failed:  # the others are written: the exit code still says something failed
        raise InputError(args.bids_dir, "sessions DTISynth can synthesize",
                         summary + "".join(f"\n{r['key']}: {r['message']}" for r in failed))
    reporter.result([str(args.out_dir)], summary)
