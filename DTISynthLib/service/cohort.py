"""The BIDS App, participant level: every session's 3-direction DWIs of a BIDS dataset synthesized into
BIDS derivatives (io.bids names), on Dask: a local cluster of worker processes, or an existing
cluster's scheduler (dask-jobqueue for SLURM / PBS / SGE). Each session is one task.

The raw dataset is read-only. The output folder must lie outside it or under its derivatives/, and may
hold nothing under sub-*/ that DTISynth's records do not name; everything that can be checked is
checked before it is created, and one run at a time holds it (a lock file).

Faults and resume. A session's files are written to a staging folder in its derivatives folder; its
record (`<key>_dtisynth.json`: inputs, models and options with their SHA-256, and the files it
writes) is written before they move in and marked complete after, so every file DTISynth leaves is
named by a record, and only files a record names are ever removed. A session whose input is refused
(bad input) is reported with its message and the others finish; a worker that dies mid-task has its
task run again on another worker (Dask's own retry of lost work), which first clears the dead one's
staging folder and, when it commits, the files the record named. A re-run skips sessions whose
complete record matches their inputs, models and options now, and redoes the rest. Models load once
per worker process (cached), not once per session.
"""

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
import typing
from pathlib import Path

from .. import __version__
from ..core.atomic import make_output_dir, remove_empty_folders, write_text_atomic
from ..core.checksums import sha256_file
from ..core.errors import InputError, refuse_special_file
from ..core.progress import NullReporter
from ..core.output_layout import DTI6, CohortOutput, SynthesisOutput, acquisition_name
from ..core.tables import csv_text
from ..generators.manifest import MANIFEST
from ..generators.package import DEFAULT_MODELS, read_manifest
from ..io import bids
from .requests import SCHEDULER_TIMEOUT, SynthesisRequest, available_cores

PIPELINE_DESCRIPTION = "synthetic 6-direction DTI from 3-direction DWI"  # marks the derivatives as DTISynth's



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


# --------------------------------------------------------------- what the output folder holds, and whose
def _record(path):
    """A session record's content ({} when unreadable: a record being written, or not ours)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _outputs(record):
    """The output file names a record lists (plain names in its folder only: a record is read back from
    disk, so nothing it says may point elsewhere)."""
    names = record.get("outputs", [])
    return {n for n in names if isinstance(n, str) and n not in ("", ".", "..") and "/" not in n and "\\" not in n} \
        if isinstance(names, list) else set()


def _written_by_records(folder):
    """The file names in a session folder of the derivatives that DTISynth wrote: its records and the
    outputs they list (a record lists its outputs before they are moved in, so a run killed while moving
    them leaves only named files)."""
    names = set()
    for path in Path(folder).glob(f"sub-*{CohortOutput.RECORD_SUFFIX}"):
        names |= {path.name} | _outputs(_record(path))
    return names


def _is_own_description(path):
    """Whether a dataset_description.json is the one run_participants writes (the simulated cohorts'
    raw datasets and ground truth are DTISynth's too, but not these derivatives)."""
    try:
        description = json.loads(Path(path).read_text())
        generated = description["GeneratedBy"][0]
        return (description["DatasetType"] == "derivative" and generated["Name"] == "DTISynth"
                and generated["Description"] == PIPELINE_DESCRIPTION)
    except (OSError, UnicodeDecodeError, ValueError, LookupError, TypeError):
        return False


def _foreign_files(out_dir):
    """Files under OUT_DIR/sub-*/ that no DTISynth record names (raw data, another tool's derivatives).
    Hidden names are not data (DTISynth's staging folders and temporary files among them)."""
    foreign = []
    for subject in sorted(Path(out_dir).glob("sub-*")):
        if not subject.is_dir():
            foreign.append(subject)
            continue
        for folder, subfolders, files in os.walk(subject):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            own = _written_by_records(folder)
            foreign += [Path(folder) / name for name in sorted(files) if not name.startswith(".") and name not in own]
    return foreign


def check_output_folder(bids_dir, out_dir):
    """Refuse an output folder that could put derivatives among the raw data or replace what DTISynth
    did not write: the dataset itself, a folder inside it other than under its derivatives/, a folder
    with another dataset's dataset_description.json, or one holding files under sub-*/ that no DTISynth
    record names (a raw dataset, the two folders swapped). Reads only; writes nothing."""
    raw, out = Path(bids_dir).resolve(), Path(out_dir).resolve()
    derivatives = raw / "derivatives"
    suggestion = f"a folder outside the BIDS dataset or inside its derivatives/ (e.g. {derivatives / 'dtisynth'})"
    if out == raw:
        raise InputError(out_dir, suggestion, "the BIDS dataset itself")
    if raw in out.parents and derivatives not in out.parents:
        raise InputError(out_dir, suggestion, f"a folder inside the BIDS dataset {bids_dir}")
    if not out.exists():
        return
    description = out / "dataset_description.json"
    if description.exists() and not _is_own_description(description):
        raise InputError(out_dir, "a new folder or one holding DTISynth's own derivatives",
                         "a dataset_description.json DTISynth did not write (a BIDS dataset: raw data, or "
                         "another tool's derivatives)")
    foreign = _foreign_files(out)
    if foreign:
        shown = ", ".join(str(p.relative_to(out)) for p in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise InputError(out_dir, "a new folder or one holding DTISynth's own derivatives",
                         f"{len(foreign)} file(s) under sub-*/ that DTISynth did not write ({shown})")


@contextlib.contextmanager
def output_lock(out_dir):
    """Hold OUT_DIR/.dtisynth.lock (an exclusive flock, released by the system even when the process is
    killed) for one run; a second run on the same folder is refused naming the holder's pid."""
    path = CohortOutput(out_dir).lock
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise InputError(out_dir, "an output folder no other run is writing to", f"a run of process {holder} "
                             f"holding {path.name} (wait for it, or choose another folder)") from None
        try:  # the holder before us may have removed the file between our open and our lock: lock the new one
            if os.fstat(descriptor).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(descriptor)
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(descriptor)


# --------------------------------------------------------------- sessions
def session_checksum(session, models, options):
    """SHA-256 over what a session's outputs depend on: its input series and acquired DTI (each file's
    SHA-256), the model package (its manifest, which holds its weights' SHA-256), the options and the
    DTISynth version. An unreadable input (a symlink loop, no permission) is an InputError naming it."""
    files = [f for series in session.inputs for f in bids.series_files(series)]
    files += bids.series_files(session.reference) if session.reference else []
    inputs = {}
    for path in files:
        refuse_special_file(path)
        try:
            inputs[Path(path).name] = sha256_file(path)
        except OSError as exc:
            raise InputError(path, "a readable file", exc.strerror or str(exc)) from None
    content = {"inputs": inputs, "models": sha256_file(Path(models) / MANIFEST), "options": options,
               "dtisynth": __version__}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest(), content


def is_done(session, out_dir, checksum):
    """Whether the session's record matches `checksum` and every output it lists is in place."""
    record = _record(CohortOutput(out_dir).record(session.folder, session.key))
    folder = Path(out_dir) / session.folder
    return record.get("checksum") == checksum and record.get("complete") is True and all(
        (folder / name).is_file() for name in _outputs(record))


def _commit(staging, folder, record_path, record):
    """Move a session's staged outputs into its folder: first the files the previous record named (DTISynth's
    own, nothing else), then the new record listing the outputs, then the outputs, then the record marked
    complete. A run killed at any point leaves only files a record names."""
    for name in _outputs(_record(record_path)) - {record_path.name}:
        (folder / name).unlink(missing_ok=True)
    write_text_atomic(record_path, json.dumps(dict(record, complete=False), indent=2, sort_keys=True) + "\n")
    for name in record["outputs"]:
        os.replace(staging / name, folder / name)
    write_text_atomic(record_path, json.dumps(dict(record, complete=True), indent=2, sort_keys=True) + "\n")


@functools.lru_cache(maxsize=2)
def _generators(models, device):
    """The model package's networks, loaded once per process (a Dask worker keeps them between tasks)."""
    from ..generators.runner import TorchGenerators

    return TorchGenerators(models, device)


def _failed(session, message, start):
    return {"key": session.key, "status": "failed", "message": message, "outputs": [],
            "seconds": round(time.perf_counter() - start, 1)}


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
    created = make_output_dir(folder)
    for staging in folder.glob(".dtisynth-staging-*"):  # a stopped run's: DTISynth's own by their name
        shutil.rmtree(staging, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".dtisynth-staging-", dir=folder))
    try:
        if not session.inputs:
            raise InputError(folder, "a 3-direction DWI series (b=0 and three diffusion-weighted volumes)",
                             f"none among {', '.join(p.name for p in session.others) or 'its series'}")
        for series in session.inputs:
            work = staging / f".{bids.series_stem(series)}"
            request = SynthesisRequest(dwi=series, b0=session.reference, models=models, device=device, out=work)
            synthesize(request, generators=_generators(str(models), device))
            for written_file, name in _derivatives(work, series):
                written_file.rename(staging / name)
            sidecar = staging / bids.derivative_name(series, "report")
            sidecar.write_text(json.dumps(_sidecar(json.loads(sidecar.read_text()), session.folder / series.name),
                                          indent=2) + "\n")
            shutil.rmtree(work)
        written = sorted(p.name for p in staging.iterdir())
        record = dict(content, checksum=checksum, outputs=written, seconds=round(time.perf_counter() - start, 1))
        _commit(staging, folder, CohortOutput(out_dir).record(session.folder, session.key), record)
    except InputError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        remove_empty_folders(created)
        return _failed(session, str(exc), start)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"key": session.key, "status": "done", "message": "", "outputs": written, "seconds": record["seconds"]}


def _sidecar(report, series):
    """The synthetic DWI's BIDS sidecar: the keys BIDS derivatives ask for (Sources as BIDS URIs into the
    raw dataset, DatasetLinks' "raw"), then the synthesis report (synthesis.json) unchanged."""
    sources = [f"bids:raw:{path.as_posix()}" for path in map(Path, bids.series_files(series))]
    return {"Description": "Synthetic DTI (b=0 + 6 diffusion directions) synthesized by DTISynth from a "
                           "3-direction DWI", "SkullStripped": False, "Sources": sources, **report}


def _top_files(bids_dir, description):
    """The derivatives' own files at OUT_DIR's top: dataset_description.json, README.md and .bidsignore
    (what the BIDS validator's schema has no rule for: the BEP016 maps, DTISynth's records and tables,
    and the synthetic series' .bval / .bvec, whose desc- entity the raw dwi rule does not allow)."""
    layout = CohortOutput(".")
    raw_uri = Path(bids_dir).resolve().as_uri()
    description = {"Name": f"DTISynth synthetic DTI of {description.get('Name', Path(bids_dir).name)}",
                   "BIDSVersion": "1.10.0", "DatasetType": "derivative",
                   "GeneratedBy": [{"Name": "DTISynth", "Version": __version__, "Description": PIPELINE_DESCRIPTION}],
                   "SourceDatasets": [{"URL": raw_uri}], "DatasetLinks": {"raw": raw_uri}}
    readme = ("# DTISynth derivatives\n\nSynthetic diffusion tensor images (b=0 + 6 directions) synthesized by "
              f"DTISynth {__version__} from the 3-direction DWIs of the BIDS dataset {raw_uri}, with tensor maps named after "
              "the diffusion derivatives proposal (BEP016). Each session's <key>_dtisynth.json records its inputs, "
              "models and options with their SHA-256; dtisynth_sessions.tsv lists every session's outcome.\n")
    bidsignore = "".join(f"{line}\n" for line in (
        f"/{layout.sessions.name}", f"/{layout.group.folder.name}", f"*{CohortOutput.RECORD_SUFFIX}",
        "*_dwimap.nii.gz", "*_dwimap.json", "*_desc-synthetic_dwi.bval", "*_desc-synthetic_dwi.bvec"))
    return {"dataset_description.json": json.dumps(description, indent=2) + "\n", "README.md": readme,
            ".bidsignore": bidsignore}


def check_request(request):
    """Everything about a cohort run that can be checked before anything is written: the dataset (a BIDS
    dataset, not DTISynth's own derivatives), the labels, the output folder, the model package and the
    device. Returns (sessions, dataset description, models folder)."""
    description = bids.dataset_description(request.bids_dir)
    if _is_own_description(Path(request.bids_dir) / "dataset_description.json"):
        raise InputError(request.bids_dir, "a BIDS dataset of acquired DWIs", "DTISynth's own derivatives "
                         "(BIDS_DIR and OUT_DIR swapped?)")
    sessions = bids.find_sessions(request.bids_dir, request.participant_label, request.session_label)
    if not sessions:
        raise InputError(request.bids_dir, "sessions with DWI series (sub-*/[ses-*/]dwi/*_dwi.nii.gz)", "none")
    check_output_folder(request.bids_dir, request.out_dir)
    models = Path(request.models or DEFAULT_MODELS)
    read_manifest(models)
    if request.device == "cuda" and not request.scheduler:  # a scheduler's workers have their own devices
        from ..generators.runner import pick_device

        pick_device(request.device)
    return sessions, description, models


class ParticipantRun(typing.NamedTuple):
    rows: list  # of {key, status: done | skipped | failed, message, outputs, seconds}, by key
    validator_errors: dict  # the BIDS validator's errors in BIDS_DIR (io.bids.validator_errors); None: not run


def run_participants(request, reporter=NullReporter(), client=None):
    """The participant level (requests.BidsRequest): returns a ParticipantRun: the rows of every session
    (done, skipped, failed), written too as the derivatives' table of sessions (dtisynth_sessions.tsv),
    and the official BIDS validator's errors in the input (reported, not refused: a session DTISynth
    cannot read fails on its own). client: a dask.distributed Client to use; default one made from the
    request (--scheduler, else a local cluster of --workers processes, one thread each). workers == 0:
    no Dask, one session after another in this process (the reference the cluster's results must
    equal). Everything is checked before the output folder is made; the raw dataset is only read."""
    sessions, description, models = check_request(request)
    options = {"device": request.device, "models": models.name}
    rows, todo = [], []
    for session in sessions:
        try:
            if session.problem:
                rows.append(_failed(session, session.problem, time.perf_counter()))
                continue
            checksum, content = session_checksum(session, models, options)
        except InputError as exc:
            rows.append(_failed(session, str(exc), time.perf_counter()))
            continue
        todo.append((session, checksum, content))
    layout = CohortOutput(request.out_dir)
    with contextlib.ExitStack() as stack:
        if request.workers != 0 and client is None:
            client = stack.enter_context(_dask_client(request))  # a scheduler refused before anything is written
        validator_errors = None
        if not request.skip_bids_validation:
            reporter.progress("validate", 0.0, f"BIDS validator on {request.bids_dir}")
            validator_errors = bids.validator_errors(request.bids_dir)
            reporter.progress("validate", 1.0, "not installed (pip install 'dtisynth[cohort]')"
                              if validator_errors is None else f"{sum(map(len, validator_errors.values()))} error(s)")
        created = make_output_dir(request.out_dir)
        try:
            stack.enter_context(output_lock(request.out_dir))
        except InputError:
            remove_empty_folders(created)
            raise
        top_files = _top_files(request.bids_dir, description)
        for name, text in top_files.items():
            write_text_atomic(layout.folder / name, text)
        for session, checksum, content in list(todo):
            if is_done(session, request.out_dir, checksum):
                rows.append({"key": session.key, "status": "skipped", "message": "done before with the same "
                             "inputs, models and options", "outputs": [], "seconds": 0.0})
                todo.remove((session, checksum, content))
        reporter.progress("sessions", 0.0, f"{len(todo)} to synthesize, {len(rows)} done before or refused")
        arguments = [(session, request.out_dir, models, request.device, checksum, content)
                     for session, checksum, content in todo]
        if request.workers == 0:
            for k, task in enumerate(arguments):
                rows.append(synthesize_session(*task))
                reporter.progress("sessions", (k + 1) / len(arguments), rows[-1]["key"])
        elif arguments:
            rows += _on_dask(arguments, client, reporter)
        rows.sort(key=lambda row: row["key"])
        write_text_atomic(layout.sessions, csv_text(rows, ("key", "status", "seconds", "message"), delimiter="\t"))
    if created and all(row["status"] == "failed" for row in rows):
        # every session refused: the run leaves nothing, as any refused command (the messages say why)
        for name in (layout.sessions.name, *top_files):
            (layout.folder / name).unlink()
        remove_empty_folders(created)
    return ParticipantRun(rows, validator_errors)


@contextlib.contextmanager
def _dask_client(request):
    """A dask.distributed Client of the request's scheduler (refused when unreachable within
    SCHEDULER_TIMEOUT seconds) or of a local cluster of --workers processes, one thread each."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("dtisynth bids", "Dask: pip install 'dtisynth[cohort]'", "no dask.distributed in this "
                         "Python") from None
    if request.scheduler:
        try:
            client = Client(request.scheduler, timeout=SCHEDULER_TIMEOUT)
        except (OSError, ValueError) as exc:
            raise InputError("--scheduler", f"the address of a Dask scheduler reachable within {SCHEDULER_TIMEOUT} s",
                             f"{request.scheduler}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") \
                from None
        with client:
            yield client
        return
    import dask

    # Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's adaptive mmap
    # threshold: every large numpy temporary is then mapped and page-faulted anew, and a session took 25 %
    # longer than outside Dask (benchmarks/bench_cohort.py). Our workers keep glibc's defaults (None unsets
    # it). The nannies also write their workers' variables (OMP_NUM_THREADS=1, ...) into this process's
    # environment, where every later child process (a Slicer job, a test's command) would inherit them.
    saved = dict(os.environ)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), \
                LocalCluster(n_workers=request.workers or len(available_cores()), threads_per_worker=1,
                             processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
            yield client
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _on_dask(arguments, client, reporter):
    from distributed import as_completed

    reporter.progress("sessions", 0.0, f"Dask dashboard: {client.dashboard_link}")
    futures = [client.submit(synthesize_session, *task, key=f"dtisynth-{task[0].key}", pure=False, retries=0)
               for task in arguments]
    rows = []
    for k, future in enumerate(as_completed(futures)):
        rows.append(future.result())
        reporter.progress("sessions", (k + 1) / len(futures), rows[-1]["key"])
    return rows


def _link(target, link):
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(Path(target).resolve())


def run_group(request, reporter=NullReporter()):
    """The group level: the evaluation (evaluation.comparison.run_evaluation: the paper's Table 2 layout,
    Bland-Altman, PSNR / SSIM, the realism index, report.html) of every session that has an acquired DTI
    and whose participant level is done, written to OUT_DIR/group/, with group/sessions.tsv saying which
    sessions it holds. Returns (written paths, summary)."""
    from ..evaluation.comparison import run_evaluation

    sessions, _, models = check_request(request)
    layout = CohortOutput(request.out_dir)
    options = {"device": request.device, "models": models.name}
    used, left = [], []
    for session in sessions:
        if session.problem:
            left.append((session, session.problem))
        elif session.acquired is None:
            left.append((session, "no acquired DTI"))
        elif len(session.inputs) != 1:
            left.append((session, f"{len(session.inputs)} 3-direction series (the evaluation takes one a session)"))
        else:
            try:
                done = is_done(session, request.out_dir, session_checksum(session, models, options)[0])
            except InputError as exc:
                left.append((session, str(exc)))
                continue
            if done:
                used.append(session)
            else:
                left.append((session, "participant level not done (with these models and options)"))
    if not used:
        raise InputError(request.out_dir, "sessions with an acquired DTI whose participant level is done (run "
                         "`dtisynth bids ... participant` first, with the same --models and --device)", "none")
    with output_lock(request.out_dir), tempfile.TemporaryDirectory(prefix="dtisynth-group-") as view:
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
