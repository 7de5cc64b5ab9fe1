"""Qt-free logic behind the Slicer module: export input nodes, run the command line in a child
process, follow its JSON-lines events, cancel it, and load the results through mrml_adapter.

Slicer never imports torch: synthesis runs as `PythonSlicer -m DTISynthLib synthesize ... --jsonl`
(any Python with DTISynthLib outside Slicer). The child runs in its own process group (a new session
on Linux and macOS, a new process group on Windows), so Cancel ends it and everything it started
(killpg, or `taskkill /T`); a reader thread follows its output, which works on every platform (select
on a pipe does not work on Windows). Nothing is loaded into the scene unless the run succeeded.

    job = SynthesisJob(dwi_node, b0_node=None, acquired_node=None, models=None, device="auto")
    job.start(); ...; job.poll() -> new events; job.cancel()      # the panel's timer drives these
    nodes = job.run(scene)                                        # or blocking, for scripts
"""

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from ..core.output_layout import SlicerJobFolder
from ..service.requests import EvaluationRequest, SynthesisRequest
from .dependencies import python_executable
from .job_folders import JOB_PREFIX

CREATE_NEW_PROCESS_GROUP = 0x00000200  # Windows' process creation flags (subprocess defines them only there)
CREATE_NO_WINDOW = 0x08000000  # no console window pops up for the job
LIBRARY_FOLDER = Path(__file__).resolve().parents[2]  # the folder holding DTISynthLib, wherever Slicer found it


def process_group_options(platform=sys.platform):
    """Popen options that start the child in a process group of its own, so that it and its children
    can be stopped together."""
    if platform == "win32":
        return {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
    return {"start_new_session": True}


def child_environment(environment=None):
    """The child's environment: this one with the folder holding DTISynthLib first on PYTHONPATH, so that
    `python -m DTISynthLib` finds the library Slicer loaded (a folder added in Application Settings sets
    Slicer's sys.path, not PYTHONPATH)."""
    environment = dict(os.environ if environment is None else environment)
    paths = [str(LIBRARY_FOLDER)] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep)
                                     if p and p != str(LIBRARY_FOLDER)]
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    return environment


def windows_stop_command(pid):
    """The command that ends a process and all its children on Windows."""
    return ["taskkill", "/PID", str(pid), "/T", "/F"]


def stop_process_tree(process, platform=sys.platform, timeout=10):
    """End a child started with process_group_options and everything it started, and reap it."""
    if platform == "win32":
        subprocess.run(windows_stop_command(process.pid), capture_output=True)
        process.wait()
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def _read_lines(stream, lines):
    """Reader thread: every line of `stream` into the queue, then None at the end of output."""
    for line in stream:
        lines.put(line)
    lines.put(None)


def _is_path(value):
    return isinstance(value, (str, os.PathLike))


class JobFailed(RuntimeError):
    """The command line ended with an error; the message is its own."""


class SynthesisJob:
    """One synthesis (and, with an acquired DTI, evaluation) of Slicer nodes in a child process."""

    def __init__(self, dwi_node, b0_node=None, acquired_node=None, models=None, device="auto", name=None,
                 python=None, bval=None, bvec=None, work_root=None):
        """dwi_node: a DWI node, a sequence of scalar volumes with FSL `bval` / `bvec` files, or a DWI file
        (a path: NIfTI with `bval` / `bvec`, NRRD, a DICOM folder) passed to the child as it is, unexported;
        b0_node: a scalar volume node or a b=0 file (a path). work_root:
        where the job's folder goes (the module passes Slicer's temporary folder, slicer.app.temporaryPath:
        the user's and Slicer's, not the system's shared one; default the system's)."""
        self.dwi_node, self.b0_node, self.acquired_node = dwi_node, b0_node, acquired_node
        self.bval, self.bvec = bval, bvec
        self.models, self.device = models, device
        self.name = name or f"DTISynth {Path(dwi_node).name.split('.')[0] if _is_path(dwi_node) else dwi_node.GetName()}"
        self.python = python or python_executable()
        self.work_root = work_root
        self.work = None
        self.process = None
        self.events = []
        self.commands = []
        self.cancelled = False

    # ------------------------------------------------------------------ steps
    def _export(self):
        from ..io.files import save_dwi, save_volume
        from .mrml_adapter import dwi_from_node, dwi_from_sequence, volume_from_node

        if self.work_root is not None:
            Path(self.work_root).mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix=JOB_PREFIX, dir=self.work_root))
        files = SlicerJobFolder(self.work)
        dwi_file, bval, bvec = files.dwi, None, None
        if _is_path(self.dwi_node):  # the user's file, read by the child as the command line reads it
            dwi_file, bval, bvec = Path(self.dwi_node), self.bval or None, self.bvec or None
        else:
            dwi = dwi_from_sequence(self.dwi_node, self.bval, self.bvec) if self.dwi_node.IsA("vtkMRMLSequenceNode") \
                else dwi_from_node(self.dwi_node)
            save_dwi(files.dwi, dwi, compress_nrrd=False)
        b0 = None
        if self.acquired_node is not None:
            acquired = dwi_from_node(self.acquired_node)
            save_dwi(files.acquired, acquired, compress_nrrd=False)
            save_volume(files.acquired_b0, acquired.mean_b0(), acquired.affine)
            b0 = files.acquired_b0  # register to the acquired DTI's b=0, as the paper did, unless one is given
        if _is_path(self.b0_node):
            b0 = Path(self.b0_node)
        elif self.b0_node is not None:
            volume, affine = volume_from_node(self.b0_node)
            save_volume(files.reference_b0, volume, affine)
            b0 = files.reference_b0
        requests = [SynthesisRequest(dwi=dwi_file, bval=bval, bvec=bvec, out=files.synthesis.folder, models=self.models,
                                     b0=b0, device=self.device)]
        if self.acquired_node is not None:
            requests.append(EvaluationRequest(original=files.acquired, synthetic=files.synthesis.folder,
                                              out=files.evaluation.folder))
        self.commands = [request.command_line() + ["--jsonl"] for request in requests]

    def start(self):
        """Export the inputs and start the first command; a refusal on the way (a bad option, a full disk)
        leaves no temporary folder behind."""
        try:
            self._export()
        except BaseException:
            self.cleanup()
            raise
        self._launch(self.commands.pop(0))

    def _launch(self, arguments):
        # stderr to a file: a full pipe would block the child
        self.stderr_path = SlicerJobFolder(self.work).stderr(len(self.events))
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen([self.python, "-m", "DTISynthLib", *arguments], stdout=subprocess.PIPE,
                                            stderr=stderr, text=True, env=child_environment(),
                                            **process_group_options())
        self._lines = queue.Queue()
        self._reader = threading.Thread(target=_read_lines, args=(self.process.stdout, self._lines), daemon=True)
        self._reader.start()

    def poll(self, wait=0.0):
        """New events ({"event", "stage", "fraction", "message", ...}) since the last call, as they come;
        starts the next command when one finishes. wait: seconds to wait for the first new output when
        there is none yet (0: return at once, as the panel's timer does). Raises JobFailed with the
        command's own error message when one fails."""
        new = []
        while self.process is not None:
            try:
                line = self._lines.get(timeout=wait) if wait and not new else self._lines.get_nowait()
            except queue.Empty:
                break  # nothing (more) yet
            if line is not None:
                if line.startswith("{"):
                    new.append(json.loads(line))
                continue
            self._finish(new)  # end of output: the command has finished
            break
        self.events += new
        return new

    def _finish(self, pending):
        code = self.process.wait()
        self.process.stdout.close()
        self.process = None
        if code != 0:
            errors = [e.get("message", "") for e in self.events + pending if e.get("event") == "error"]
            stderr = Path(self.stderr_path).read_text().strip().splitlines()
            raise JobFailed(errors[-1] if errors else stderr[-1] if stderr else f"exit code {code}")
        if self.commands:
            self._launch(self.commands.pop(0))

    @property
    def running(self):
        return self.process is not None

    def cancel(self, wait=False):
        """End the child process group and remove the temporary files; nothing is loaded. Returns at once
        (Slicer's GUI calls it): a child that ignores SIGTERM is killed after stop_process_tree's timeout by
        a background thread (`self.stopping`), which then removes the files. wait: until that is done."""
        self.cancelled = True
        process, reader, work = self.process, getattr(self, "_reader", None), self.work
        self.process, self.work = None, None

        def stop():
            if process is not None:
                stop_process_tree(process)
                reader.join(timeout=10)  # the pipe closes with the process group: the reader ends
                process.stdout.close()
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)

        self.stopping = threading.Thread(target=stop, daemon=True)
        self.stopping.start()
        if wait:
            self.stopping.join()

    def cleanup(self):
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None

    def load(self, scene):
        """Load the finished results into `scene` (one subject-hierarchy folder); returns {role: node}."""
        from .mrml_adapter import load_results

        files = SlicerJobFolder(self.work)
        evaluation = files.evaluation.folder if files.evaluation.summary.exists() else None
        return load_results(scene, files.synthesis.folder, evaluation, self.name)

    def run(self, scene, progress=None, idle=None, interval=0.05):
        """Blocking: start, follow to the end (progress(event) for each event as it comes: scripts in
        Slicer's console see the progress live), load, clean up. idle(): called at least every `interval`
        seconds while the child works (the module passes slicer.app.processEvents: Slicer keeps repainting
        and the progress can appear; without it the console froze Slicer for the whole run)."""
        self.start()
        try:
            while self.running:
                for event in self.poll(wait=interval):
                    if progress:
                        progress(event)
                if idle is not None:
                    idle()
            return self.load(scene)
        finally:
            self.cleanup()
