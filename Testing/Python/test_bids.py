"""`dtisynth bids`: a tiny BIDS dataset (four phantom subjects, one with two sessions, one with a DWI
whose directions are coplanar) synthesized into BIDS derivatives by a real local Dask cluster of two
worker processes: the same bytes as one session after another, the bad session reported while the
others finish, a re-run redoing only what is missing."""

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from DTISynthLib import cli
from DTISynthLib.core.dwi import DWI
from DTISynthLib.io import bids
from DTISynthLib.io.files import load_dwi, save_dwi
from DTISynthLib.service.cohort import run_participants
from DTISynthLib.service.requests import BidsRequest
from DTISynthLib.simulation.cohort import write_cohort

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("bids") / "raw"
    write_cohort(root, 4, "sampled", seed=6, grid=(32, 32, 19))
    shutil.rmtree(root / "derivatives")
    # sub-002 scanned twice: two sessions
    for session in ("1", "2"):
        folder = root / "sub-002" / f"ses-{session}" / "dwi"
        folder.mkdir(parents=True)
        for path in (root / "sub-002" / "dwi").iterdir():
            shutil.copy(path, folder / path.name.replace("sub-002_", f"sub-002_ses-{session}_"))
    shutil.rmtree(root / "sub-002" / "dwi")
    # sub-004's three directions lie in one plane: synthesize refuses it
    path = root / "sub-004" / "dwi" / "sub-004_acq-dwi3_dwi.nii.gz"
    dwi = load_dwi(path)
    weighted = np.flatnonzero(dwi.bvals > 50)
    gradients = dwi.gradients.copy()
    gradients[weighted] = [[1, 0, 0], [0, 1, 0], [np.sqrt(0.5), np.sqrt(0.5), 0]]
    save_dwi(path, DWI(dwi.data, dwi.affine, dwi.bvals, gradients))
    return root


def _request(dataset, out, tiny_models, **options):
    return BidsRequest(bids_dir=dataset, out_dir=out, level="participant", models=tiny_models, device="cpu", **options)


def _content(path):
    """A derivative's bytes (a .nii.gz's decompressed: gzip headers hold a time), records without timing."""
    if path.name.endswith(".gz"):
        return gzip.decompress(path.read_bytes())
    if path.name.endswith("_dtisynth.json"):
        return json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "seconds"})
    if path.suffix == ".tsv":
        return [line.split("\t")[:2] for line in path.read_text().splitlines()]
    return path.read_bytes()


def test_sessions_and_their_series_are_found_by_the_bids_layout(dataset):
    sessions = bids.find_sessions(dataset)
    assert [s.key for s in sessions] == ["sub-001", "sub-002_ses-1", "sub-002_ses-2", "sub-003", "sub-004"]
    second = sessions[2]
    assert second.folder == Path("sub-002/ses-2/dwi") and second.acquired.name == "sub-002_ses-2_acq-dti6_dwi.nii.gz"
    assert [p.name for p in second.inputs] == ["sub-002_ses-2_acq-dwi3_dwi.nii.gz"]
    assert [s.key for s in bids.find_sessions(dataset, ["002"], ["ses-2"])] == ["sub-002_ses-2"]
    assert bids.derivative_name(second.inputs[0], "fa") == "sub-002_ses-2_acq-dwi3_model-tensor_param-fa_dwimap.nii.gz"
    with pytest.raises(Exception, match="--participant-label"):
        bids.find_sessions(dataset, ["009"])


def test_runs_are_series_of_their_session_and_a_misnamed_file_fails_its_session_only(dataset, tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(dataset / "sub-001", copy / "sub-001")
    shutil.copy(dataset / "dataset_description.json", copy)
    folder = copy / "sub-001" / "dwi"
    for suffix in (".nii.gz", ".bval", ".bvec"):
        (folder / f"sub-001_acq-dwi3_dwi{suffix}").rename(folder / f"sub-001_acq-dwi3_run-1_dwi{suffix}")
        shutil.copy(folder / f"sub-001_acq-dwi3_run-1_dwi{suffix}", folder / f"sub-001_acq-dwi3_run-2_dwi{suffix}")
    (session,) = bids.find_sessions(copy)
    assert [p.name for p in session.inputs] == [f"sub-001_acq-dwi3_run-{k}_dwi.nii.gz" for k in (1, 2)]
    assert bids.entities(session.inputs[1]) == {"sub": "001", "acq": "dwi3", "run": "2"}
    assert session.reference == session.acquired  # the acquired DTI's b=0 is the one to register to
    dti = load_dwi(folder / "sub-001_acq-dti6_dwi.nii.gz")  # without it, a series of b=0 volumes only
    keep = dti.bvals < 50
    save_dwi(folder / "sub-001_acq-b0_dwi.nii.gz", DWI(dti.data[..., keep], dti.affine, dti.bvals[keep],
                                                       dti.gradients[keep]))
    for suffix in (".nii.gz", ".bval", ".bvec", ".json"):
        (folder / f"sub-001_acq-dti6_dwi{suffix}").unlink(missing_ok=True)
    (session,) = bids.find_sessions(copy)
    assert session.acquired is None and session.reference.name == "sub-001_acq-b0_dwi.nii.gz"
    for suffix in (".nii.gz", ".bval", ".bvec"):
        shutil.copy(folder / f"sub-001_acq-dwi3_run-1_dwi{suffix}", folder / f"sub-002_acq-dwi3_dwi{suffix}")
    (session,) = bids.find_sessions(copy)
    assert session.key == "sub-001" and not session.inputs
    assert session.problem == (f"{folder / 'sub-002_acq-dwi3_dwi.nii.gz'}: expected a name starting sub-001; "
                               "found sub-002_acq-dwi3_dwi.nii.gz")


def test_two_dask_workers_write_what_one_session_after_another_writes_and_report_the_bad_one(dataset, tiny_models,
                                                                                          tmp_path):
    serial = run_participants(_request(dataset, tmp_path / "serial", tiny_models, workers=0)).rows
    parallel = run_participants(_request(dataset, tmp_path / "dask", tiny_models, workers=2)).rows
    for rows in (serial, parallel):
        assert {r["key"]: r["status"] for r in rows} == {"sub-001": "done", "sub-002_ses-1": "done",
                                                        "sub-002_ses-2": "done", "sub-003": "done", "sub-004": "failed"}
    (bad,) = [r for r in parallel if r["status"] == "failed"]
    assert "sub-004_acq-dwi3_dwi.nii.gz" in bad["message"] and "well-conditioned" in bad["message"], bad["message"]
    files = sorted(p.relative_to(tmp_path / "serial") for p in (tmp_path / "serial").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "dask") for p in (tmp_path / "dask").rglob("*") if p.is_file())
    for name in files:
        assert _content(tmp_path / "serial" / name) == _content(tmp_path / "dask" / name), name
    session = tmp_path / "dask" / "sub-002" / "ses-1" / "dwi"
    stem = "sub-002_ses-1_acq-dwi3"
    for part in ("desc-synthetic_dwi.nii.gz", "desc-synthetic_dwi.bval", "desc-synthetic_dwi.bvec",
                 "desc-synthetic_dwi.json", "model-tensor_param-fa_dwimap.nii.gz",
                 "model-tensor_param-tensor_dwimap.nii.gz", "model-tensor_param-fa_desc-dec_dwimap.nii.gz"):
        assert (session / f"{stem}_{part}").is_file(), part
    assert load_dwi(session / f"{stem}_desc-synthetic_dwi.nii.gz").data.shape[3] == 7
    assert not list((tmp_path / "dask").glob("sub-004/dwi/*"))  # nothing partial of the refused session
    description = json.loads((tmp_path / "dask" / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "DTISynth"
    sidecar = json.loads((session / f"{stem}_desc-synthetic_dwi.json").read_text())
    assert sidecar["Sources"][0] == f"bids:raw:sub-002/ses-1/dwi/{stem}_dwi.nii.gz" and "registration" in sidecar
    # the official BIDS validator (schema-based) passes the derivatives, sessions and a failed session included
    assert bids.validator_errors(tmp_path / "dask") == {}


def test_local_workers_keep_glibc_s_malloc_and_this_process_s_environment_is_left_as_it_was(dataset, tiny_models,
                                                                                             tmp_path, monkeypatch):
    """Dask's MALLOC_TRIM_THRESHOLD_=65536 made every session 25 % slower in a worker than outside Dask
    (benchmarks/bench_cohort.py); its nannies also left OMP_NUM_THREADS=1 and the rest in this process's
    environment, for every later child process to inherit."""
    import os

    from DTISynthLib.service.cohort import _dask_client

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    before = dict(os.environ)
    with _dask_client(_request(dataset, tmp_path / "out", tiny_models, workers=1)) as client:
        seen = list(client.run(lambda: [os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")])
                    .values())
    assert seen == [[None, "1"]]  # glibc's malloc; one thread per worker, as Dask sets it
    assert dict(os.environ) == before


def test_a_rerun_skips_what_is_done_and_redoes_the_rest_and_the_command_says_what_failed(dataset, tiny_models,
                                                                                      tmp_path):
    out = tmp_path / "out"
    first = run_participants(_request(dataset, out, tiny_models, workers=0, participant_label=["001", "003"])).rows
    assert [r["status"] for r in first] == ["done", "done"]
    kept = (out / "sub-001" / "dwi" / "sub-001_acq-dwi3_model-tensor_param-fa_dwimap.nii.gz").stat().st_mtime_ns
    # as a run killed while moving sub-003's outputs in: its record lists them, not yet complete
    record_path = out / "sub-003" / "dwi" / "sub-003_dtisynth.json"
    record_path.write_text(json.dumps(dict(json.loads(record_path.read_text()), complete=False)))
    (out / "sub-003" / "dwi" / "sub-003_acq-dwi3_model-tensor_param-fa_dwimap.nii.gz").unlink()
    (out / "sub-003" / "dwi" / ".dtisynth-staging-left").mkdir()
    again = run_participants(_request(dataset, out, tiny_models, workers=0, participant_label=["001", "003"])).rows
    assert {r["key"]: r["status"] for r in again} == {"sub-001": "skipped", "sub-003": "done"}
    assert (out / "sub-001" / "dwi" / "sub-001_acq-dwi3_model-tensor_param-fa_dwimap.nii.gz").stat().st_mtime_ns == kept
    assert not (out / "sub-003" / "dwi" / ".dtisynth-staging-left").exists()
    # other options are other outputs: done again
    record = json.loads((out / "sub-001" / "dwi" / "sub-001_dtisynth.json").read_text())
    assert record["options"] == {"device": "cpu", "models": Path(tiny_models).name}
    code = cli.main(["bids", str(dataset), str(out), "participant", "--workers", "0", "--models", str(tiny_models),
                     "--device", "cpu", "--participant-label", "sub-003", "sub-004"])
    assert code == 2  # sub-004 refused; sub-003 skipped
    table = (out / "dtisynth_sessions.tsv").read_text().splitlines()
    assert table[1].startswith("sub-003\tskipped") and table[2].startswith("sub-004\tfailed")


def test_a_worker_killed_mid_session_loses_nothing(dataset, tiny_models, tmp_path):
    """kill -9 of the worker process running a session: Dask runs the session again on a worker (the
    nanny restarts the killed one), which first clears what the dead one left; the derivatives equal a
    run without the kill and no staging folder is left."""
    import os
    import signal
    import threading
    import time

    from distributed import Client, LocalCluster

    labels = ["001", "003"]
    reference = run_participants(_request(dataset, tmp_path / "reference", tiny_models, workers=0,
                                          participant_label=labels)).rows
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        rows, killed = [], []
        run = threading.Thread(target=lambda: rows.extend(run_participants(
            _request(dataset, tmp_path / "killed", tiny_models, workers=2, participant_label=labels),
            client=client).rows))
        run.start()
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            busy = [address for address, keys in client.processing().items()
                    if any(str(k).startswith("dtisynth-") for k in keys)]
            if busy:
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                time.sleep(0.3)  # inside the session: the models are loading or running
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.01)
        run.join(120)
    assert killed and not run.is_alive()
    assert [r["status"] for r in rows] == [r["status"] for r in reference] == ["done", "done"]
    files = sorted(p.relative_to(tmp_path / "reference") for p in (tmp_path / "reference").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "killed") for p in (tmp_path / "killed").rglob("*") if p.is_file())
    for name in files:
        assert _content(tmp_path / "reference" / name) == _content(tmp_path / "killed" / name), name
    assert not list((tmp_path / "killed").rglob(".dtisynth-staging-*"))


def test_the_group_level_evaluates_the_sessions_that_are_done_against_their_acquired_dtis(dataset, tiny_models,
                                                                                        tmp_path):
    import csv

    out = tmp_path / "out"
    run_participants(_request(dataset, out, tiny_models, workers=0, participant_label=["001", "003"]))
    code = cli.main(["bids", str(dataset), str(out), "group", "--models", str(tiny_models), "--device", "cpu",
                     "--realism-voxels", "20000", "--realism-epochs", "5"])
    assert code == 0
    with open(out / "group" / "table2.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 20 and {r["subjects"] for r in table} <= {"1", "2"}
    assert sum(r["subjects"] == "2" for r in table) >= 12, [(r["roi"], r["map"], r["subjects"]) for r in table]
    summary = json.loads((out / "group" / "evaluation.json").read_text())
    assert summary["subjects"] == ["sub-001", "sub-003"]
    sessions = dict(line.split("\t")[:2] for line in (out / "group" / "sessions.tsv").read_text().splitlines()[1:])
    assert sessions == {"sub-001": "yes", "sub-003": "yes", "sub-002_ses-1": "no", "sub-002_ses-2": "no",
                        "sub-004": "no"}
    assert (out / "group" / "report.html").stat().st_size > 10_000
    assert bids.validator_errors(out) == {}  # the group level's folder too
    assert summary["realism_index"]["rows"][-1]["subject"] == "all subjects"


def _small_dataset(dataset, folder, subjects=("sub-001", "sub-003")):
    """A copy of the module's dataset with only `subjects`."""
    for subject in subjects:
        shutil.copytree(dataset / subject, folder / subject)
    shutil.copy(dataset / "dataset_description.json", folder)
    return folder


def _raw_files(root):
    """{path: SHA-256} of every file of a raw dataset, its derivatives/ left out."""
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and "derivatives" not in p.relative_to(root).parts}


def test_a_run_never_writes_into_or_deletes_from_the_raw_dataset(dataset, tiny_models, tmp_path, capsys):
    """The output as the dataset itself, the two folders swapped, an output inside a subject, another raw
    dataset as the output: each refused (exit 2) before anything is written; the raw dataset's files
    and their hashes are unchanged. Under its derivatives/ the run writes (and only there)."""
    raw = _small_dataset(dataset, tmp_path / "raw")
    derivatives = raw / "derivatives" / "dtisynth"
    options = ["participant", "--workers", "0", "--models", str(tiny_models), "--device", "cpu", "--jsonl"]
    before = _raw_files(raw)
    assert cli.main(["bids", str(raw), str(derivatives), *options]) == 0
    assert _raw_files(raw) == before and (derivatives / "sub-001" / "dwi" / "sub-001_dtisynth.json").is_file()
    other = _small_dataset(dataset, tmp_path / "other", ("sub-002",))
    other_before = _raw_files(other)
    capsys.readouterr()
    for bids_dir, out, found in ((raw, raw, "found the BIDS dataset itself"),
                                 (derivatives, raw, "found DTISynth's own derivatives (BIDS_DIR and OUT_DIR swapped?)"),
                                 (raw, raw / "sub-001" / "derivatives",
                                  f"found a folder inside the BIDS dataset {raw}"),
                                 (raw, raw / "derivatives", f"found a folder inside the BIDS dataset {raw}"),
                                 (raw, other, "found a dataset_description.json DTISynth did not write"),
                                 (derivatives, other, "DTISynth's own derivatives")):
        assert cli.main(["bids", str(bids_dir), str(out), *options]) == 2, (bids_dir, out)
        message = json.loads(capsys.readouterr().out.splitlines()[-1])["message"]
        assert found in message, message
        assert _raw_files(raw) == before and _raw_files(other) == other_before, (bids_dir, out)
    assert not (raw / "sub-001" / "derivatives").exists()
    assert sorted(p.name for p in raw.iterdir()) == ["dataset_description.json", "derivatives", "sub-001", "sub-003"]


def test_a_second_run_on_one_output_folder_is_refused_naming_the_first_and_a_killed_run_frees_it(dataset, tiny_models,
                                                                                               tmp_path, capsys):
    import subprocess
    import sys

    raw = _small_dataset(dataset, tmp_path / "raw", ("sub-001",))
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from DTISynthLib.service.cohort import "
                               "output_lock\nwith output_lock(sys.argv[1]):\n    print('held', flush=True)\n"
                               "    time.sleep(600)", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        options = ["participant", "--workers", "0", "--models", str(tiny_models), "--device", "cpu", "--jsonl"]
        capsys.readouterr()
        assert cli.main(["bids", str(raw), str(out), *options]) == 2
        message = json.loads(capsys.readouterr().out.splitlines()[-1])["message"]
        assert message == (f"{out}: expected an output folder no other run is writing to; found a run of process "
                           f"{holder.pid} holding .dtisynth.lock (wait for it, or choose another folder)")
        assert sorted(p.name for p in out.iterdir()) == [".dtisynth.lock"]
    finally:
        holder.kill()  # as kill -9: the system releases its lock, its lock file stays
        holder.wait()
    assert cli.main(["bids", str(raw), str(out), *options]) == 0
    assert (out / "sub-001" / "dwi" / "sub-001_dtisynth.json").is_file() and not (out / ".dtisynth.lock").exists()


def test_a_bad_file_fails_its_own_session_and_the_others_finish(dataset, tiny_models, tmp_path, capsys):
    """A garbled .bval, a symlink loop as a DWI, DWI files beside a subject's ses-* folders: each fails its
    session with its message (listed in the sessions table and the exit message); the good session is
    synthesized; a failed session leaves no folder."""
    raw = _small_dataset(dataset, tmp_path / "raw", ("sub-001", "sub-003", "sub-004"))
    (raw / "sub-003" / "dwi" / "sub-003_acq-dti6_dwi.bval").write_text("0 1000 x\n")
    dwi = raw / "sub-004" / "dwi" / "sub-004_acq-dwi3_dwi.nii.gz"
    dwi.unlink()
    dwi.symlink_to(dwi.with_name("loop.nii.gz"))
    dwi.with_name("loop.nii.gz").symlink_to(dwi)
    shutil.copytree(raw / "sub-001" / "dwi", raw / "sub-005" / "ses-1" / "dwi")  # named sub-001: refused too
    shutil.copytree(raw / "sub-001" / "dwi", raw / "sub-005" / "dwi")
    out = tmp_path / "out"
    capsys.readouterr()
    assert cli.main(["bids", str(raw), str(out), "participant", "--workers", "0", "--models", str(tiny_models),
                     "--device", "cpu", "--jsonl"]) == 2
    message = json.loads(capsys.readouterr().out.splitlines()[-1])["message"]
    rows = {line.split("\t")[0]: line.split("\t") for line in (out / "dtisynth_sessions.tsv").read_text().splitlines()}
    assert {key: row[1] for key, row in rows.items() if key != "key"} == {
        "sub-001": "done", "sub-003": "failed", "sub-004": "failed", "sub-005": "failed", "sub-005_ses-1": "failed"}
    assert "1 session(s) synthesized, 0 done before, 4 failed" in message
    assert f"sub-003: {raw / 'sub-003/dwi/sub-003_acq-dti6_dwi.bval'}: expected an FSL .bval file of numbers" in message
    assert f"sub-004: {dwi}: expected a readable file; found Too many levels of symbolic links" in message
    assert (f"sub-005: {raw / 'sub-005/dwi'}: expected the DWI series of a subject with sessions inside its ses-* "
            "folders (as BIDS keeps them); found 2 series beside ses-1") in message
    assert "sub-005_ses-1: " in message and "expected a name starting sub-005_ses-1" in message
    # the official validator's errors in the input are reported too; the sessions it could read ran
    assert f"warning: the BIDS validator found errors in {raw} (DTISynth ran every session it could read)" in message
    for line in ("INVALID_LOCATION (24): /sub-005/dwi/sub-001_acq-dti6_dwi.bval, "
                 "/sub-005/dwi/sub-001_acq-dti6_dwi.bvec",
                 "SYMLINK_CYCLE (2): /sub-004/dwi/loop.nii.gz, /sub-004/dwi/sub-004_acq-dwi3_dwi.nii.gz",
                 "VOLUME_COUNT_MISMATCH (1): /sub-003/dwi/sub-003_acq-dti6_dwi.nii.gz"):
        assert f"\n  {line}" in message, (line, message)
    assert sorted(p.name for p in out.iterdir()) == [".bidsignore", "README.md", "dataset_description.json",
                                                    "dtisynth_sessions.tsv", "sub-001"]


def test_only_files_a_record_names_are_ever_removed_and_a_folder_holding_others_is_refused(dataset, tiny_models,
                                                                                         tmp_path, capsys):
    raw = _small_dataset(dataset, tmp_path / "raw", ("sub-001",))
    out = tmp_path / "out"
    options = ["participant", "--workers", "0", "--models", str(tiny_models), "--device", "cpu", "--jsonl"]
    assert cli.main(["bids", str(raw), str(out), *options]) == 0
    folder = out / "sub-001" / "dwi"
    record_path = folder / "sub-001_dtisynth.json"
    record = json.loads(record_path.read_text())
    # a record edited to name files elsewhere, or the folder itself: none of them is removed by a redo
    (tmp_path / "precious.txt").write_text("keep")
    record_path.write_text(json.dumps(dict(record, checksum="stale", outputs=record["outputs"] + [
        "../../../precious.txt", "..", ""])))
    assert cli.main(["bids", str(raw), str(out), *options]) == 0
    assert (tmp_path / "precious.txt").read_text() == "keep"
    assert json.loads(record_path.read_text())["outputs"] == record["outputs"]
    (folder / "sub-001_notes.txt").write_text("mine")  # the user's own file among the derivatives
    capsys.readouterr()
    assert cli.main(["bids", str(raw), str(out), *options]) == 2
    message = json.loads(capsys.readouterr().out.splitlines()[-1])["message"]
    assert "found 1 file(s) under sub-*/ that DTISynth did not write (sub-001/dwi/sub-001_notes.txt)" in message
    assert (folder / "sub-001_notes.txt").read_text() == "mine"
