"""The Python packages DTISynth needs in Slicer's Python, installed with the user's consent and in
sight. Imports nothing beyond the standard library and `slicer` / `qt` (inside functions): it runs
before those packages are there.

On Slicer 5.10, `slicer.util.pip_install` shows nothing and processes GUI events only between pip's
output lines: during PyTorch's multi-GB download Slicer stopped repainting, a second click started a
second install into the same site-packages, and an offline failure never reached the screen. So pip
runs here as a child process followed by follow_process: a progress dialog with pip's last line (the
download and its size), Slicer repainting, Cancel, one install at a time (`installing`), and a failure
raised with pip's last lines and the way out. Slicer 5.11+ (slicer.pydeps) installs with its own dialogs.
"""

import importlib
import importlib.util
import queue
import re
import sys
import threading
import time
from pathlib import Path

# distribution name -> import name, where they differ
IMPORT_NAMES = {"pynrrd": "nrrd"}
WAY_OUT = ("Without internet access, or behind a proxy: set HTTPS_PROXY before starting Slicer, or install the "
           "wheels from a folder with PythonSlicer -m pip install --no-index --find-links FOLDER PACKAGE.")
installing = False  # an installation is running (a second request meanwhile is refused, not started)


def python_executable():
    """PythonSlicer inside Slicer (beside its executable), else this interpreter."""
    for name in ("PythonSlicer", "PythonSlicer.exe"):
        candidate = Path(sys.executable).with_name(name)
        if candidate.exists():
            return str(candidate)
    return sys.executable


def follow_process(process, on_line, idle, interval=0.05):
    """Follow a child process started with its output piped (text): each line to on_line(line) as it
    comes, idle() between polls every `interval` seconds, whether or not the child prints (a reader thread
    holds the pipe, so a silent multi-minute download never blocks the caller); idle() returning False
    stops the child. Returns (exit code, True if stopped by idle)."""
    lines = queue.Queue()

    def read():
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    finished = False
    while not finished:
        try:
            while True:
                line = lines.get_nowait()
                if line is None:
                    finished = True
                    break
                on_line(line)
        except queue.Empty:
            pass
        if not finished and idle() is False:
            process.kill()
            process.wait()
            return process.returncode, True
        if not finished:
            time.sleep(interval)
    return process.wait(), False


def pip_install_visibly(requirements, title):
    """`pip install requirements` (a list of requirement strings) in PythonSlicer, with a progress dialog
    showing pip's last line, Slicer repainting, and Cancel. RuntimeError with pip's last lines and WAY_OUT
    when pip fails or is cancelled (tryWithErrorDisplay shows it)."""
    import slicer

    process = slicer.util.launchConsoleProcess([python_executable(), "-m", "pip", "install", *requirements])
    dialog = slicer.util.createProgressDialog(labelText=f"pip install {' '.join(requirements)}", windowTitle=title,
                                              maximum=0)  # no maximum: a busy bar, with pip's own words above it
    tail = []

    def line(text):
        tail.append(text)
        del tail[:-8]
        dialog.labelText = text[:200]

    def idle():
        slicer.app.processEvents()
        return not dialog.wasCanceled

    try:
        code, stopped = follow_process(process, line, idle)
    finally:
        dialog.close()
    if stopped or code != 0:
        reason = "cancelled" if stopped else f"pip exited with code {code}"
        raise RuntimeError(f"Installing {', '.join(requirements)} failed ({reason}). pip said:\n"
                           + "\n".join(tail[-4:]) + f"\n{WAY_OUT}")


def pip_ensure_module():
    """Slicer's module with pip_ensure and load_requirements (slicer.pydeps; slicer.packaging in some
    previews), or None on a Slicer without them (5.10): then requirements are checked here."""
    for name in ("slicer.pydeps", "slicer.packaging"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "pip_ensure") and hasattr(module, "load_requirements"):
            return module
    return None


def _version(text):
    """A version's leading numbers as a tuple ("2.1.0rc1" -> (2, 1, 0)) for a >= comparison."""
    return tuple(int(part) for part in re.findall(r"\d+", re.split(r"[^\d.]", text, maxsplit=1)[0]))


def missing_requirements(requirements):
    """The lines of a requirements file ("name" or "name>=version") not satisfied here: the distribution
    not installed, or older than the version asked for (Slicer's own packaging helpers do this on 5.11+;
    on 5.10 an old nibabel that imports would otherwise pass)."""
    from importlib import metadata

    needed = []
    for line in (line.split("#")[0].strip() for line in requirements.read_text().splitlines()):
        if not line:
            continue
        name, _, minimum = (part.strip() for part in line.partition(">="))
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed is None and importlib.util.find_spec(IMPORT_NAMES.get(name, name)) is None:
            needed.append(line)
        elif installed is not None and minimum and _version(installed) < _version(minimum):
            needed.append(line)
    return needed


def ensure_dependencies(requirements, confirm=True, torch=True):
    """Install what DTISynth needs, after the user agrees; False when they decline, or when an
    installation is already running (a second click). `requirements` (the module's
    Resources/requirements.txt: nibabel, isal, pynrrd, ... with which Slicer's process reads results,
    studies and the phantom) always; with `torch`, PyTorch for the child process that runs the networks.
    Checked with find_spec and installed with pip, so torch is never imported into Slicer (PyTorchUtils'
    installTorch imports it to report its version). A failed installation raises RuntimeError (call it
    inside slicer.util.tryWithErrorDisplay)."""
    global installing
    if installing:
        return False
    installing = True
    try:
        return _ensure(requirements, confirm, torch)
    finally:
        installing = False


def _ensure(requirements, confirm, torch):
    import slicer
    from slicer.i18n import tr as _

    packaging = pip_ensure_module()
    if torch and importlib.util.find_spec("torch") is None:
        if packaging is not None:  # Slicer 5.11+: its own confirmation and progress
            from packaging.requirements import Requirement

            try:
                packaging.pip_ensure([Requirement("torch")], requester="DTISynth", prompt_install=confirm)
            except RuntimeError:  # declined
                return False
        else:
            if confirm and not slicer.util.confirmOkCancelDisplay(
                    _("DTISynth needs PyTorch (a download of about 1-3 GB, a few minutes). Install it now?")):
                return False
            pip_install_visibly(["torch"], _("Installing PyTorch for DTISynth"))
    if packaging is not None:
        try:
            packaging.pip_ensure(packaging.load_requirements(requirements), requester="DTISynth",
                                 prompt_install=confirm)
        except RuntimeError:  # "User declined package installation" (Slicer's pip_ensure raises it)
            return False
        return True
    needed = missing_requirements(requirements)
    if needed:
        if confirm and not slicer.util.confirmOkCancelDisplay(
                _("DTISynth needs {packages}. Install them now?").format(packages=", ".join(needed))):
            return False
        pip_install_visibly(needed, _("Installing DTISynth's Python packages"))
    return True
