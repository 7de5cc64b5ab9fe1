"""The BIDS App, participant level: every session's 3-direction DWIs of a BIDS dataset synthesized into
BIDS derivatives (io.bids names), on Dask: a local cluster of worker processes, or an existing
cluster's scheduler (dask-jobqueue for SLURM / PBS / SGE). Each session is one task.

Faults and resume. A session's files go to its derivatives folder through a staging folder, and its
record (`<key>_dtisynth.json`: inputs, models and options with their SHA-256, and what was written)
is written last: a session without a matching record is not done. A session whose input is refused
(bad input) is reported with its message and the others finish; a worker that dies mid-task has its
task run again on another worker (Dask's own retry of lost work), and whatever the dead one left of
the session (its staging folder, files without a record) is removed before the session is redone. A
re-run skips sessions whose record matches their inputs, models and options now, and redoes the rest.
Models load once per worker process (cached), not once per session.
"""

import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from .. import __version__
from ..core.atomic import atomic_output_dir, make_output_dir, write_text_atomic
from ..core.checksums import sha256_file
from ..core.errors import InputError
from ..core.progress import NullReporter
from ..core.output_layout import DTI6, CohortOutput, SynthesisOutput, acquisition_name
from ..core.tables import csv_text
from ..generators.manifest import MANIFEST
from ..generators.package import DEFAULT_MODELS
from ..io import bids
from .requests import SynthesisRequest



def _derivatives(work, series):
    """[(file synthesize wrote in `work`, its BIDS derivative name)] (io.bids names; SynthesisOutput's files)."""
    layout = SynthesisOutput(work)
    stem = layout.dti_nifti.name.removesuffix(".nii.gz")
    pairs = [(layout.dti_nifti, bids.derivative_name(series, "synthetic")),
             (layout.folder / f"{stem}.bval", bids.derivative_name(series, "synthetic", ".bval")),
             (layout.folder / f"{stem}.bvec", bids.derivative_name(series, "synthetic", ".bvec")),
             (layout.report, bids.derivative_name(series, "report"))]
    pairs += [(layout.maps.tensor, bids.derivative_name(series, "tensor"))]
    pairs += [(layout.maps.map(name), bids.derivative_name(series, name))
              for name in bids.MAP_NAMES if name != "tensor" and layout.maps.map(name).exists()]
    return pairs


def session_checksum(session, models, options):
    """SHA-256 over what a session's outputs depend on: its input series and acquired DTI (each file's
    SHA-256), the model package (its manifest, which holds its weights' SHA-256), the options and the
    DTISynth version."""
    files = [f for series in session.inputs for f in bids.series_files(series)]
    files += bids.series_files(session.reference) if session.reference else []
    content = {"inputs": {Path(f).name: sha256_file(f) for f in files},
               "models": sha256_file(Path(models) / MANIFEST), "options": options, "dtisynth": __version__}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest(), content


def is_done(session, out_dir, checksum):
    record = CohortOutput(out_dir).record(session.folder, session.key)
    try:
        return json.loads(record.read_text()).get("checksum") == checksum
    except (OSError, ValueError):
        return False


def _clear_unfinished(folder, key):
    """What a stopped run left of a session: staging folders, and its derivatives without a record."""
    for staging in folder.glob(".dtisynth-staging-*"):
        shutil.rmtree(staging, ignore_errors=True)
    for path in folder.glob(f"{key}_*"):
        if path.is_file():
            path.unlink()


@functools.lru_cache(maxsize=2)
def _generators(models, device):
    """The model package's networks, loaded once per process (a Dask worker keeps them between tasks)."""
    from ..generators.runner import TorchGenerators

    return TorchGenerators(models, device)


def synthesize_session(session, out_dir, models, device, checksum, content):
    """One session's synthesis into its derivatives folder (the Dask task). Returns its row: {key,
    status: done | failed, message, outputs, seconds}; bad input is a failed row, anything else raises."""
    import torch

    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Dask worker of one thread: the same arithmetic, so the same bytes, wherever it runs
    try:
        return _synthesize_session(session, out_dir, models, device, checksum, content, start)
    finally:
        torch.set_num_threads(threads)


def _synthesize_session(session, out_dir, models, device, checksum, content, start):
    from .synthesize import synthesize

    folder = Path(out_dir) / session.folder
    make_output_dir(folder)
    _clear_unfinished(folder, session.key)
    written = []
    try:
        if not session.inputs:
            raise InputError(folder, "a 3-direction DWI series (b=0 and three diffusion-weighted volumes)",
                             f"none among {', '.join(p.name for p in session.others) or 'its series'}")
        with atomic_output_dir(folder) as staging:
            for series in session.inputs:
                work = staging / f".{bids.series_stem(series)}"
                request = SynthesisRequest(dwi=series, b0=session.reference, models=models, device=device, out=work)
                synthesize(request, generators=_generators(str(models), device))
                for written_file, name in _derivatives(work, series):
                    written_file.rename(staging / name)
                shutil.rmtree(work)
            written = sorted(p.name for p in staging.iterdir())
    except InputError as exc:
        return {"key": session.key, "status": "failed", "message": str(exc), "outputs": [],
                "seconds": round(time.perf_counter() - start, 1)}
    record = dict(content, checksum=checksum, outputs=written, seconds=round(time.perf_counter() - start, 1))
    write_text_atomic(CohortOutput(out_dir).record(session.folder, session.key),
                      json.dumps(record, indent=2, sort_keys=True) + "\n")
    return {"key": session.key, "status": "done", "message": "", "outputs": written, "seconds": record["seconds"]}


def write_dataset_description(bids_dir, out_dir):
    source = Path(bids_dir) / "dataset_description.json"
    try:
        name = json.loads(source.read_text()).get("Name", Path(bids_dir).name)
    except ValueError:
        raise InputError(source, "a JSON object", "unreadable content") from None
    description = {"Name": f"DTISynth synthetic DTI of {name}", "BIDSVersion": "1.10.0", "DatasetType": "derivative",
                   "GeneratedBy": [{"Name": "DTISynth", "Version": __version__,
                                    "Description": "synthetic 6-direction DTI from 3-direction DWI"}],
                   "SourceDatasets": [{"URL": Path(bids_dir).resolve().as_uri()}]}
    write_text_atomic(CohortOutput(out_dir).description, json.dumps(description, indent=2) + "\n")


def run_participants(request, reporter=NullReporter(), client=None):
    """The participant level (requests.BidsRequest): returns the rows of every session (done, skipped,
    failed), written too as the derivatives' participants table (dtisynth_sessions.tsv). client: a
    dask.distributed Client to use; default one made from the request (--scheduler, else a local
    cluster of --workers processes, one thread each). workers == 0: no Dask, one session after another
    in this process (the reference the cluster's results must equal)."""
    sessions = bids.find_sessions(request.bids_dir, request.participant_label, request.session_label)
    if not sessions:
        raise InputError(request.bids_dir, "sessions with DWI series (sub-*/[ses-*/]dwi/*_dwi.nii.gz)", "none")
    models = Path(request.models or DEFAULT_MODELS)
    options = {"device": request.device, "models": models.name}
    make_output_dir(request.out_dir)
    write_dataset_description(request.bids_dir, request.out_dir)
    rows, todo = [], []
    for session in sessions:
        checksum, content = session_checksum(session, models, options)
        if is_done(session, request.out_dir, checksum):
            rows.append({"key": session.key, "status": "skipped", "message": "done before with the same inputs, "
                         "models and options", "outputs": [], "seconds": 0.0})
        else:
            todo.append((session, checksum, content))
    reporter.progress("sessions", 0.0, f"{len(todo)} to synthesize, {len(rows)} done before")
    arguments = [(session, request.out_dir, models, request.device, checksum, content)
                 for session, checksum, content in todo]
    if request.workers == 0:
        for k, task in enumerate(arguments):
            rows.append(synthesize_session(*task))
            reporter.progress("sessions", (k + 1) / len(arguments), rows[-1]["key"])
    elif arguments:
        rows += _on_dask(arguments, request, reporter, client)
    rows.sort(key=lambda row: row["key"])
    write_text_atomic(CohortOutput(request.out_dir).sessions,
                      csv_text(rows, ("key", "status", "seconds", "message"), delimiter="\t"))
    return rows


def _on_dask(arguments, request, reporter, client):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise InputError("dtisynth bids", "Dask: pip install 'dtisynth[cohort]'", "no dask.distributed in this "
                         "Python") from None
    own = client is None
    if own:
        cluster = None if request.scheduler else LocalCluster(
            n_workers=request.workers or os.cpu_count(), threads_per_worker=1, processes=True,
            dashboard_address=":0")
        client = Client(request.scheduler or cluster)
    try:
        reporter.progress("sessions", 0.0, f"Dask dashboard: {client.dashboard_link}")
        futures = [client.submit(synthesize_session, *task, key=f"dtisynth-{task[0].key}", pure=False, retries=0)
                   for task in arguments]
        rows = []
        for k, future in enumerate(as_completed(futures)):
            rows.append(future.result())
            reporter.progress("sessions", (k + 1) / len(futures), rows[-1]["key"])
        return rows
    finally:
        if own:
            client.close()
            if not request.scheduler:
                cluster.close()


def _link(target, link):
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(Path(target).resolve())


def run_group(request, reporter=NullReporter()):
    """The group level: the evaluation (evaluation.comparison.run_evaluation: the paper's Table 2 layout,
    Bland-Altman, PSNR / SSIM, the realism index, report.html) of every session that has an acquired DTI
    and whose participant level is done, written to OUT_DIR/group/, with group/sessions.tsv saying which
    sessions it holds. Returns (written paths, summary)."""
    from ..evaluation.comparison import run_evaluation

    sessions = bids.find_sessions(request.bids_dir, request.participant_label, request.session_label)
    layout = CohortOutput(request.out_dir)
    models = Path(request.models or DEFAULT_MODELS)
    options = {"device": request.device, "models": models.name}
    used, left = [], []
    for session in sessions:
        if session.acquired is None:
            left.append((session, "no acquired DTI"))
        elif len(session.inputs) != 1:
            left.append((session, f"{len(session.inputs)} 3-direction series (the evaluation takes one a session)"))
        elif not is_done(session, request.out_dir, session_checksum(session, models, options)[0]):
            left.append((session, "participant level not done (with these models and options)"))
        else:
            used.append(session)
    if not used:
        raise InputError(request.out_dir, "sessions with an acquired DTI whose participant level is done (run "
                         "`dtisynth bids ... participant` first, with the same --models and --device)", "none")
    with tempfile.TemporaryDirectory(prefix="dtisynth-group-") as view:
        # the cohort layout evaluate reads, as links to the dataset and the derivatives
        view = Path(view)
        for session in used:
            for source, suffix in zip(bids.series_files(session.acquired), (".nii.gz", ".bval", ".bvec"), strict=True):
                _link(source, view / "original" / acquisition_name(session.key, DTI6, suffix))
            folder, series = Path(request.out_dir) / session.folder, session.inputs[0]
            synthesized = SynthesisOutput(view / "synthetic" / session.key)
            for written_file, name in _derivatives(synthesized.folder, series):
                if (folder / name).exists():
                    _link(folder / name, written_file)
        outputs, summary = run_evaluation(view / "original", view / "synthetic", layout.group.folder,
                                          reporter=reporter, realism_voxels=request.realism_voxels,
                                          realism_epochs=request.realism_epochs)
    rows = [{"session": s.key, "evaluated": "yes", "reason": ""} for s in used]
    rows += [{"session": s.key, "evaluated": "no", "reason": reason} for s, reason in left]
    write_text_atomic(layout.group_sessions, csv_text(rows, delimiter="\t"))
    return outputs, summary
