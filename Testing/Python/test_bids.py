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


def test_runs_are_series_of_their_session_and_a_misnamed_file_is_refused(dataset, tmp_path):
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
    with pytest.raises(Exception, match="a name starting sub-001"):
        bids.find_sessions(copy)


def test_two_dask_workers_write_what_one_session_after_another_writes_and_report_the_bad_one(dataset, tiny_models,
                                                                                          tmp_path):
    serial = run_participants(_request(dataset, tmp_path / "serial", tiny_models, workers=0))
    parallel = run_participants(_request(dataset, tmp_path / "dask", tiny_models, workers=2))
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
                 "desc-synthesis_dwi.json", "model-tensor_param-fa_dwimap.nii.gz",
                 "model-tensor_param-tensor_dwimap.nii.gz", "model-tensor_param-fa_desc-dec_dwimap.nii.gz"):
        assert (session / f"{stem}_{part}").is_file(), part
    assert load_dwi(session / f"{stem}_desc-synthetic_dwi.nii.gz").data.shape[3] == 7
    assert not list((tmp_path / "dask").glob("sub-004/dwi/*"))  # nothing partial of the refused session
    description = json.loads((tmp_path / "dask" / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "DTISynth"


def test_a_rerun_skips_what_is_done_and_redoes_the_rest_and_the_command_says_what_failed(dataset, tiny_models,
                                                                                      tmp_path):
    out = tmp_path / "out"
    first = run_participants(_request(dataset, out, tiny_models, workers=0, participant_label=["001", "003"]))
    assert [r["status"] for r in first] == ["done", "done"]
    kept = (out / "sub-001" / "dwi" / "sub-001_acq-dwi3_model-tensor_param-fa_dwimap.nii.gz").stat().st_mtime_ns
    (out / "sub-003" / "dwi" / "sub-003_dtisynth.json").unlink()  # as a run stopped before the record
    (out / "sub-003" / "dwi" / ".dtisynth-staging-left").mkdir()
    again = run_participants(_request(dataset, out, tiny_models, workers=0, participant_label=["001", "003"]))
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
                                          participant_label=labels))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        rows, killed = [], []
        run = threading.Thread(target=lambda: rows.extend(run_participants(
            _request(dataset, tmp_path / "killed", tiny_models, workers=2, participant_label=labels),
            client=client)))
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
    assert summary["realism_index"]["rows"][-1]["subject"] == "all subjects"
