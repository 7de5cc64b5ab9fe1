"""The Python packages DTISynth needs in Slicer's Python, installed with the user's consent. Imports
nothing beyond the standard library and `slicer` (inside functions): it runs before those packages
are there."""

import importlib
import importlib.util
import re

# distribution name -> import name, where they differ
IMPORT_NAMES = {"pynrrd": "nrrd"}


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


def missing_requirements(requirements):
    """The lines of a requirements file whose package cannot be imported here."""
    lines = [line.split("#")[0].strip() for line in requirements.read_text().splitlines()]
    names = {line: re.split(r"[<>=!~ ]", line)[0] for line in lines if line}
    return [line for line, name in names.items() if importlib.util.find_spec(IMPORT_NAMES.get(name, name)) is None]


def ensure_dependencies(requirements, confirm=True, torch=True):
    """Install what DTISynth needs, after the user agrees; False when they decline. `requirements`
    (the module's Resources/requirements.txt: nibabel, isal, pynrrd, ... with which Slicer's process reads
    results, studies and the phantom) always; with `torch`, PyTorch for the child process that runs the
    networks. Checked with find_spec and installed with pip, so torch is never imported into Slicer
    (PyTorchUtils' installTorch imports it to report its version)."""
    import slicer
    from slicer.i18n import tr as _

    if torch and importlib.util.find_spec("torch") is None:
        if confirm and not slicer.util.confirmOkCancelDisplay(
                _("DTISynth needs PyTorch (a large download). Install it now?")):
            return False
        slicer.util.pip_install("torch")
    packaging = pip_ensure_module()
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
        slicer.util.pip_install(needed)
    return True
