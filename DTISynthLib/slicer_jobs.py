"""Qt-free logic behind the Slicer module: export input nodes, run the command line in a child
process, follow its JSON-lines events, cancel it, and load the results through mrml_adapter.

Slicer never imports torch: synthesis runs as `PythonSlicer -m DTISynthLib synthesize ... --jsonl`
(any Python with DTISynthLib outside Slicer). The child runs in its own process group, so Cancel
ends it and everything it started; nothing is loaded into the scene unless the run succeeded.

    job = SynthesisJob(dwi_node, b0_node=None, acquired_node=None, models=None, device="auto")
    job.start(); ...; job.poll() -> new events; job.cancel()      # the panel's timer drives these
    nodes = job.run(scene)                                        # or blocking, for scripts
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path


def python_executable():
    """PythonSlicer inside Slicer (beside its executable), else this interpreter."""
    for name in ("PythonSlicer", "PythonSlicer.exe"):
        candidate = Path(sys.executable).with_name(name)
        if candidate.exists():
            return str(candidate)
    return sys.executable


class JobFailed(RuntimeError):
    """The command line ended with an error; the message is its own."""


class SynthesisJob:
    """One synthesis (and, with an acquired DTI, evaluation) of Slicer nodes in a child process."""

    def __init__(self, dwi_node, b0_node=None, acquired_node=None, models=None, device="auto", name=None,
                 python=None, bval=None, bvec=None):
        """dwi_node: a DWI node, or a sequence of scalar volumes with FSL `bval` / `bvec` files."""
        self.dwi_node, self.b0_node, self.acquired_node = dwi_node, b0_node, acquired_node
        self.bval, self.bvec = bval, bvec
        self.models, self.device = models, device
        self.name = name or f"DTISynth {dwi_node.GetName()}"
        self.python = python or python_executable()
        self.work = None
        self.process = None
        self.events = []
        self.commands = []
        self.cancelled = False

    # ------------------------------------------------------------------ steps
    def _export(self):
        from .dwi_files import save_dwi, save_volume
        from .mrml_adapter import dwi_from_node, dwi_from_sequence, volume_from_node

        dwi = dwi_from_sequence(self.dwi_node, self.bval, self.bvec) if self.dwi_node.IsA("vtkMRMLSequenceNode") \
            else dwi_from_node(self.dwi_node)
        self.work = Path(tempfile.mkdtemp(prefix="dtisynth-slicer-"))
        save_dwi(self.work / "dwi.nrrd", dwi, compress_nrrd=False)
        synthesize = ["synthesize", "--dwi", str(self.work / "dwi.nrrd"), "--out", str(self.work / "synthetic"),
                      "--device", self.device, "--jsonl"]
        if self.models:
            synthesize += ["--models", str(self.models)]
        if self.acquired_node is not None:
            acquired = dwi_from_node(self.acquired_node)
            save_dwi(self.work / "acquired.nrrd", acquired, compress_nrrd=False)
            save_volume(self.work / "acquired_b0.nii.gz", acquired.mean_b0(), acquired.affine)
        if self.b0_node is not None:
            volume, affine = volume_from_node(self.b0_node)
            save_volume(self.work / "b0.nii.gz", volume, affine)
            synthesize += ["--b0", str(self.work / "b0.nii.gz")]
        elif self.acquired_node is not None:  # register to the acquired DTI's b=0, as the paper did
            synthesize += ["--b0", str(self.work / "acquired_b0.nii.gz")]
        self.commands = [synthesize]
        if self.acquired_node is not None:
            self.commands.append(["evaluate", "--original", str(self.work / "acquired.nrrd"), "--synthetic",
                                  str(self.work / "synthetic"), "--out", str(self.work / "evaluation"), "--jsonl"])

    def start(self):
        """Export the inputs and start the first command."""
        self._export()
        self._launch(self.commands.pop(0))

    def _launch(self, arguments):
        # stderr to a file: a full pipe would block the child
        self.stderr_path = self.work / f"stderr_{len(self.events)}.log"
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen([self.python, "-m", "DTISynthLib", *arguments], stdout=subprocess.PIPE,
                                            stderr=stderr, text=True, start_new_session=True)

    def poll(self, block=False):
        """New events ({"event", "stage", "fraction", "message", ...}) since the last call; starts the
        next command when one finishes. block: wait until all commands have ended. Raises JobFailed
        with the command's own error message when one fails."""
        new = []
        while self.process is not None:
            if not block and not self._readable() and self.process.poll() is None:
                break  # nothing new yet
            line = self.process.stdout.readline()
            if line:
                if line.startswith("{"):
                    new.append(json.loads(line))
                continue
            self._finish(new)  # end of output: the command has finished
            if not block:
                break
        self.events += new
        return new

    def _readable(self):
        import select

        return bool(select.select([self.process.stdout], [], [], 0)[0])

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

    def cancel(self):
        """End the child process group and remove the temporary files. Nothing was loaded."""
        self.cancelled = True
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait()
            self.process = None
        self.cleanup()

    def cleanup(self):
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None

    def load(self, scene):
        """Load the finished results into `scene` (one subject-hierarchy folder); returns {role: node}."""
        from .mrml_adapter import load_results

        evaluation = self.work / "evaluation" if (self.work / "evaluation" / "evaluation.json").exists() else None
        return load_results(scene, self.work / "synthetic", evaluation, self.name)

    def run(self, scene, progress=None):
        """Blocking: start, follow to the end (progress(event) for each event), load, clean up."""
        self.start()
        try:
            while self.running:
                for event in self.poll(block=True):
                    if progress:
                        progress(event)
            return self.load(scene)
        finally:
            self.cleanup()
