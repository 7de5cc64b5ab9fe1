"""The Slicer module's Qt-free logic: the real command line in a child process on tiny models,
progress events, results loaded through the adapter, Cancel, and failures (slicer-core scene)."""

import os
import time

import numpy as np
import pytest

from DTISynthLib.core.dwi import DWI, check_dwi
from DTISynthLib.core.output_layout import SlicerJobFolder
from DTISynthLib.simulation.cohort import draw_subject, simulate_subject

slicer = pytest.importorskip("slicer")
adapter = pytest.importorskip("DTISynthLib.slicer.mrml_adapter")
from DTISynthLib.slicer.job_runner import JobFailed, SynthesisJob  # noqa: E402


@pytest.fixture
def scene():
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    return scene


@pytest.fixture(scope="module")
def subject():
    return simulate_subject(draw_subject("sub-004", 4), "sampled", grid=(64, 64, 38))


def test_job_runs_the_command_line_and_loads_the_results(scene, subject, tiny_models, tmp_path):
    dwi_node = adapter.add_dwi_volume(scene, "input DWI", check_dwi(subject.dwi))
    acquired_node = adapter.add_dwi_volume(scene, "acquired DTI", check_dwi(subject.dti))
    events, live = [], []

    def progress(event):
        events.append(event)
        live.append(job.running)  # a script in Slicer's console sees progress while the child works
        assert job.work.parent == tmp_path / "slicer temp"

    job = SynthesisJob(dwi_node, acquired_node=acquired_node, models=tiny_models, device="cpu", name="sub-004",
                       work_root=tmp_path / "slicer temp")  # Slicer's temporary folder, not the system's
    idle = []  # Slicer's processEvents: called while the child works, however quiet it is
    started = time.monotonic()
    nodes = job.run(scene, progress=progress, idle=lambda: idle.append(time.monotonic()))
    assert live[0] and sum(live) > len(live) / 2, live  # once delivered all at the end, after the last command
    gaps = np.diff([started, *idle])
    assert len(idle) > 20 and gaps.max() < 1.0, (len(idle), gaps.max())  # the GUI never waits a second
    stages = [e["stage"] for e in events if e["event"] == "progress"]
    assert {"register", "synthesize", "fit", "evaluate", "report"} <= set(stages)
    assert [e["event"] for e in events].count("result") == 2  # synthesize, then evaluate
    assert nodes["dwi"].IsA("vtkMRMLDiffusionWeightedVolumeNode") and nodes["dwi"].GetNumberOfGradients() == 7
    assert nodes["tensor"].IsA("vtkMRMLDiffusionTensorVolumeNode") and nodes["table"].GetNumberOfRows() == 20
    np.testing.assert_allclose(adapter.volume_from_node(nodes["fa"])[1], subject.dti.affine, atol=1e-5)
    assert job.work is None and not job.running  # temporary files gone, no child left
    assert list((tmp_path / "slicer temp").iterdir()) == []


def test_job_folders_a_crashed_slicer_left_are_removed_and_others_kept(tmp_path):
    from DTISynthLib.slicer.job_folders import JOB_PREFIX, STALE_AFTER, remove_stale_job_folders

    old, running, other = tmp_path / f"{JOB_PREFIX}old", tmp_path / f"{JOB_PREFIX}now", tmp_path / "someone-elses"
    for folder in (old, running, other):
        (folder / "inputs").mkdir(parents=True)
        (folder / "inputs" / "dwi.nrrd").write_bytes(b"patient data")
    past = time.time() - STALE_AFTER - 60
    for folder in (old, other):
        os.utime(folder, (past, past))
    assert remove_stale_job_folders(tmp_path) == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running.name, other.name])
    assert remove_stale_job_folders(tmp_path / "absent") == []


def test_cancel_ends_the_child_and_loads_nothing(scene, subject, tiny_models):
    dwi_node = adapter.add_dwi_volume(scene, "input DWI", check_dwi(subject.dwi))
    before = scene.GetNumberOfNodes()
    job = SynthesisJob(dwi_node, models=tiny_models, device="cpu")
    job.start()
    pid, work = job.process.pid, job.work
    while not any(e["event"] == "progress" for e in job.events):
        job.poll()
    job.cancel(wait=True)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone
    assert not job.running and not work.exists() and scene.GetNumberOfNodes() == before


STUBBORN = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
            "time.sleep(120)")


def test_cancel_returns_at_once_and_a_child_that_ignores_sigterm_is_killed_behind_it(scene, subject, tmp_path,
                                                                                       monkeypatch):
    """Cancel used to wait for the child in the GUI thread (up to 10 s for SIGTERM, 10 more for the reader):
    now the panel gets control back at once and a background thread reaps the child and its files."""
    import queue
    import subprocess
    import sys
    import threading

    from DTISynthLib.slicer import job_runner

    stop = job_runner.stop_process_tree
    monkeypatch.setattr(job_runner, "stop_process_tree", lambda process: stop(process, timeout=1))
    job = SynthesisJob(adapter.add_dwi_volume(scene, "input DWI", check_dwi(subject.dwi)))
    job.work = tmp_path / "work"
    job.work.mkdir()
    job.process = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True,
                                   **job_runner.process_group_options())
    assert job.process.stdout.readline().strip() == "ready"  # SIGTERM is ignored from here on
    job._lines = queue.Queue()
    job._reader = threading.Thread(target=job_runner._read_lines, args=(job.process.stdout, job._lines), daemon=True)
    job._reader.start()
    child, work = job.process, job.work
    job.cancel()
    assert not job.running and child.poll() is None  # control is back while the child still runs
    job.stopping.join(30)
    assert child.returncode == -9 and not work.exists()  # killed after the timeout, files removed
    with pytest.raises(ProcessLookupError):
        os.killpg(child.pid, 0)


def test_a_failing_run_reports_the_command_lines_message(scene, subject, tiny_models):
    dwi = check_dwi(subject.dwi)
    two = DWI(dwi.data[..., :3], dwi.affine, dwi.bvals[:3], dwi.gradients[:3])  # b=0 and two directions
    dwi_node = adapter.add_dwi_volume(scene, "two directions", check_dwi(two))
    before = scene.GetNumberOfNodes()
    with pytest.raises(JobFailed, match="three diffusion-weighted volumes"):
        SynthesisJob(dwi_node, models=tiny_models, device="cpu").run(scene)
    assert scene.GetNumberOfNodes() == before


def test_a_4d_sequence_with_fsl_gradients_is_accepted(scene, subject, tiny_models, tmp_path):
    from DTISynthLib.io.nifti import write_nifti_dwi

    dwi = check_dwi(subject.dwi)
    write_nifti_dwi(tmp_path / "dwi.nii.gz", dwi)  # writes the FSL bval / bvec beside it
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "4D DWI")
    for i in range(dwi.data.shape[3]):
        volume = adapter.add_scalar_volume(scene, f"volume {i}", dwi.data[..., i], dwi.affine)
        sequence.SetDataNodeAtValue(volume, str(i))
    exported = adapter.dwi_from_sequence(sequence, tmp_path / "dwi.bval", tmp_path / "dwi.bvec")
    np.testing.assert_allclose(exported.gradients, dwi.gradients, atol=1e-6)  # FSL image frame -> RAS
    np.testing.assert_array_equal(exported.data, dwi.data)
    nodes = SynthesisJob(sequence, models=tiny_models, device="cpu", bval=tmp_path / "dwi.bval",
                         bvec=tmp_path / "dwi.bvec").run(scene)
    assert nodes["tensor"].IsA("vtkMRMLDiffusionTensorVolumeNode")


def test_a_nifti_dwi_file_goes_straight_to_the_child_and_is_shown_as_dtisynth_reads_it(scene, subject, tiny_models,
                                                                                        tmp_path):
    """The most common export of a clinical DWI (dcm2niix's NIfTI + bval / bvec) could not be brought into the
    panel in core Slicer. A file path is passed to the child as it is (nothing exported, the user's files
    untouched), and the node shown has the gradients DTISynth reads (FSL's voxel-frame bvecs in RAS), on a
    NIfTI whose voxel-to-world matrix has a positive determinant (FSL's x flip applies) and is oblique."""
    from DTISynthLib.core.checksums import sha256_file
    from DTISynthLib.core.frames import rotation_matrix
    from DTISynthLib.io.files import load_dwi
    from DTISynthLib.io.nifti import write_nifti_dwi

    dwi = check_dwi(subject.dwi)
    tilt = np.eye(4)
    tilt[:3, :3] = rotation_matrix((12.0, 0.0, 5.0))
    affine = tilt @ np.diag([1.7, 1.7, 2.0, 1.0])
    rotated = DWI(dwi.data, affine, dwi.bvals, dwi.gradients, "tilted")  # the same RAS gradients
    assert np.linalg.det(affine[:3, :3]) > 0
    folder = tmp_path / "patient data"
    folder.mkdir()
    write_nifti_dwi(folder / "dwi.nii.gz", rotated)  # writes dwi.bval / dwi.bvec beside it, as dcm2niix does
    before = {p.name: sha256_file(p) for p in folder.iterdir()}
    node = adapter.add_dwi_file(scene, folder / "dwi.nii.gz")
    shown = adapter.dwi_from_node(node)
    read = load_dwi(folder / "dwi.nii.gz")
    np.testing.assert_allclose(shown.gradients, read.gradients, atol=1e-6)
    np.testing.assert_allclose(shown.gradients, dwi.gradients, atol=1e-5)  # RAS, as simulated
    np.testing.assert_allclose(shown.affine, affine, atol=1e-5)
    job = SynthesisJob(str(folder / "dwi.nii.gz"), models=tiny_models, device="cpu", bval=str(folder / "dwi.bval"),
                       bvec=str(folder / "dwi.bvec"), work_root=tmp_path / "jobs")
    job.start()
    arguments = [str(a) for a in job.process.args]
    try:
        while job.running:
            job.poll(wait=0.2)
        assert not SlicerJobFolder(job.work).dwi.exists()  # nothing exported: the child read the user's file
        nodes = job.load(scene)
    finally:
        job.cleanup()
    assert nodes["tensor"].IsA("vtkMRMLDiffusionTensorVolumeNode") and job.name == "DTISynth dwi"
    assert arguments[arguments.index("--dwi") + 1] == str(folder / "dwi.nii.gz")
    assert arguments[arguments.index("--bvec") + 1] == str(folder / "dwi.bvec")
    assert {p.name: sha256_file(p) for p in folder.iterdir()} == before  # the user's files as they were


def test_the_default_tensor_set_gives_the_tensor_node_maps_and_evaluation(scene, subject):
    """The shipped default (kind tensor-unet) through the job runner and the adapter, as the panel runs
    it: a tensor node whose FA is the written FA map, maps that separate white from grey matter, and
    the evaluation table."""
    from DTISynthLib.fit.tensor_maps import compute_maps
    from DTISynthLib.generators.package import DEFAULT_MODELS, read_manifest

    assert read_manifest(DEFAULT_MODELS).data["architecture"]["kind"] == "tensor-unet"
    dwi_node = adapter.add_dwi_volume(scene, "input DWI", check_dwi(subject.dwi))
    acquired_node = adapter.add_dwi_volume(scene, "acquired DTI", check_dwi(subject.dti))
    nodes = SynthesisJob(dwi_node, acquired_node=acquired_node, device="cpu", name="sub-004").run(scene, progress=None)
    assert nodes["tensor"].IsA("vtkMRMLDiffusionTensorVolumeNode") and nodes["table"].GetNumberOfRows() == 20
    fa = adapter.volume_from_node(nodes["fa"])[0]
    from DTISynthLib.core.tensor_layout import matrix_to_tensor6

    tensor = matrix_to_tensor6(np.transpose(slicer.util.arrayFromVolume(nodes["tensor"]), (2, 1, 0, 3, 4)))
    brain = fa > 0
    np.testing.assert_allclose(compute_maps(tensor, brain, ("fa",))["fa"][brain], fa[brain], atol=2e-3)
    white, grey = subject.tissue[..., 0] > 0.8, subject.tissue[..., 1] > 0.8
    # positive semi-definite tensors in tissue (FA above 1 is left only where noise made the measured
    # signal exceed its b=0 at the brain's edge)
    assert fa[white | grey].max() <= 1.0 + 1e-6
    assert np.mean(fa[white]) > np.mean(fa[grey]) + 0.2


def test_a_bad_option_is_refused_before_anything_runs_and_leaves_no_temporary_folder(scene, subject, monkeypatch,
                                                                                     tmp_path):
    import tempfile

    from DTISynthLib.core.errors import InputError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the job's temporary folder would be
    job = SynthesisJob(adapter.add_dwi_volume(scene, "input DWI", check_dwi(subject.dwi)), device="tpu")
    with pytest.raises(InputError, match="--device"):
        job.start()
    assert not job.running and job.work is None and not list(tmp_path.iterdir())
