"""The architecture, checked: package layering, the generator-kind seam (a test-only kind through the
real train and synthesize jobs), one output layout, one reporter, and the job runner's Windows path."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from DTISynthLib import cli
from DTISynthLib.core.gradient_schemes import SIEMENS_6_RAS
from DTISynthLib.core.progress import NullReporter
from DTISynthLib.fit.tensor_fit import fit_tensors
from DTISynthLib.fit.tensor_maps import compute_maps
from DTISynthLib.generators import registry
from DTISynthLib.generators.package import read_manifest
from DTISynthLib.io.files import load_dwi
from DTISynthLib.simulation.cohort import write_cohort

REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "DTISynthLib"
PACKAGES = sorted(p.name for p in LIB.iterdir() if (p / "__init__.py").exists())
TORCH_MODULES = {"generators.networks", "training.pix2pix", "training.tensor_unet", "training.distributed",
                 "training.checkpoints"}
GUI = {"slicer", "vtk", "qt", "ctk"}


def _module_name(path):
    return ".".join(path.relative_to(LIB).with_suffix("").parts).removesuffix(".__init__")


def _imports(path):
    """[(imported DTISynthLib module or a top-level third-party name, module level?)] of one file."""
    tree = ast.parse(path.read_text())
    module_level = {id(node) for node in tree.body}
    parts = path.relative_to(LIB).with_suffix("").parts
    package = ["DTISynthLib", *parts[:-1]] if parts[-1] != "__init__" else ["DTISynthLib", *parts[:-1]]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in module_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if not node.module:  # from . import a, b: each name is a module or a package attribute
                    folder = LIB.parent.joinpath(*target.split("."))
                    found += [(f"{target}.{a.name}" if (folder / f"{a.name}.py").exists() or (folder / a.name).is_dir()
                               else target, id(node) in module_level) for a in node.names]
                    continue
            else:
                target = node.module
            found.append((target, id(node) in module_level))
    return found


def _package_of(module):
    """'DTISynthLib.io.files' -> 'io'; top-level modules (cli, __main__, the package) -> the module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "DTISynthLib"


def _allowed(package):
    doc = ast.get_docstring(ast.parse((LIB / package / "__init__.py").read_text())) or ""
    match = re.search(r"May import: ([^\n]+?)\.?$", doc, re.M)
    assert match, f"{package}/__init__.py: its docstring must say 'May import: ...'"
    text = match.group(1)
    if text.startswith("every package"):
        return set(PACKAGES)
    if text.startswith("nothing"):
        return set()
    return {name.strip() for name in text.split(",")}


def _library_files():
    return sorted(LIB.rglob("*.py"))


def test_packages_import_only_what_their_docstrings_allow():
    assert {"core", "io", "fit", "registration", "simulation", "evaluation", "training", "generators", "synthesis",
            "slicer", "jobs"} <= set(PACKAGES)
    assert not [p.name for p in LIB.glob("*.py") if p.stem not in {"__init__", "__main__", "cli"}], \
        "every module lives in a package; only cli.py and __main__.py sit at the top"
    allowed = {package: _allowed(package) | {package} for package in PACKAGES}
    assert allowed["core"] == {"core"}
    allowed["cli"] = {"core", "jobs", "cli", "DTISynthLib"}
    allowed["__main__"] = {"cli", "__main__"}
    violations = []
    for path in _library_files():
        module = _module_name(path)
        own = module.split(".")[0] if module else "DTISynthLib"
        for target, _ in _imports(path):
            if not target.startswith("DTISynthLib"):
                continue
            used = _package_of(target)
            if used == "DTISynthLib" and target == "DTISynthLib":
                continue  # __version__ from the package itself
            if own != "DTISynthLib" and used not in allowed[own]:
                violations.append(f"{module} imports {target}")
    assert not violations, violations


def test_package_and_module_graphs_have_no_cycles():
    package_graph, module_graph = {}, {}
    for path in _library_files():
        module = "DTISynthLib" + ("." + _module_name(path) if _module_name(path) else "")
        for target, module_level in _imports(path):
            if not target.startswith("DTISynthLib."):
                continue
            source_package, target_package = _package_of(module), _package_of(target)
            if source_package != target_package:
                package_graph.setdefault(source_package, set()).add(target_package)
            if module_level:
                module_graph.setdefault(module, set()).add(target)

    def cycle(graph):
        state = {}

        def visit(node, trail):
            state[node] = "open"
            for nxt in graph.get(node, ()):
                if state.get(nxt) == "open":
                    return trail + [nxt]
                if nxt not in state:
                    found = visit(nxt, trail + [nxt])
                    if found:
                        return found
            state[node] = "done"
            return None

        for node in list(graph):
            if node not in state:
                found = visit(node, [node])
                if found:
                    return found
        return None

    assert cycle(package_graph) is None, cycle(package_graph)
    assert cycle(module_graph) is None, cycle(module_graph)
    # and the checker finds a cycle when there is one
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_only_the_slicer_package_imports_slicer_and_only_the_named_modules_import_torch_at_load():
    for path in _library_files():
        module = _module_name(path)
        for target, module_level in _imports(path):
            top = target.split(".")[0]
            if top in GUI:
                assert module.startswith("slicer."), f"{module} imports {target}"
                assert not module_level, f"{module} imports {target} at module level: import it inside functions"
            if top == "torch" and module_level:
                assert module in TORCH_MODULES, f"{module} imports torch at module level"


def test_nothing_the_slicer_panel_imports_pulls_in_torch():
    panel = ast.parse((REPO / "DTISynth" / "DTISynth.py").read_text())
    ours = {n.module for n in ast.walk(panel) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("DTISynthLib")}
    ours |= {"DTISynthLib." + _module_name(p) for p in (LIB / "slicer").glob("*.py")}
    code = "import sys\n" + "".join(f"import {m}\n" for m in sorted(ours)) + "print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False", sorted(ours)


def test_the_fit_command_given_a_mask_starts_without_scipy_ndimage_or_torch():
    """Start-up is part of every command's time: building a command's parser imports service.requests,
    which names every option (simulation, training, review); scipy.ndimage (0.17 s) and torch are
    imported only where used, so `fit --mask` (numpy, nibabel, the fit) does without them."""
    code = ("import sys\nfrom DTISynthLib.cli import build_parser\nimport DTISynthLib.service.fit\n"
            "build_parser(['fit'])\nprint(sorted(m for m in ('scipy.ndimage', 'torch') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


OUTPUT_NAMES = ("synthetic_dti", "synthesis.json", "fit.json", "evaluation.json", "table2.csv", "roi_statistics.csv",
                "bland_altman.csv", "similarity.csv", "report.html", "montage_", "_rois", "rois.tsv", "roi_values.tsv",
                "color_fa", "_acq-", "pairs.json", "manifest.json", "study.sqlite", "noisier.csv", "analysis.json",
                "realism.json", "scheme_scores.", "paired_tests.", "realism_index.")


def test_output_file_names_are_defined_in_the_output_layout_only():
    offenders = []
    for path in _library_files():
        if path.name == "output_layout.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                text = node.value
                if not re.search(r"\s", text) and any(name in text for name in OUTPUT_NAMES):
                    offenders.append(f"{_module_name(path)}: {text!r}")
    allowed = {"generators.manifest: 'manifest.json'"}  # the package format's own file name
    assert set(offenders) <= allowed, sorted(set(offenders) - allowed)


def test_a_missing_reporter_is_handled_one_way():
    for path in _library_files():
        text = path.read_text()
        assert not re.search(r"reporter=None|if reporter\b|reporter or ", text), path
        assert "lambda *a, **k: None" not in text, path
    quiet = NullReporter()
    assert quiet.progress("stage", 0.5, "x") is None and quiet.result([]) is None and quiet.error("x") is None


def test_no_issue_numbers_in_library_docstrings():
    for path in _library_files():
        assert not re.search(r"\b[Ii]ssue \d+", path.read_text()), path


# ----------------------------------------------------------------------------- the generator seam

def test_a_test_only_kind_is_one_module_and_one_registry_line_through_train_and_synthesize(tmp_path, monkeypatch):
    cohort = tmp_path / "cohort"
    write_cohort(cohort, 2, "sampled", seed=1, grid=(32, 32, 19))
    models = tmp_path / "models"
    train = ["train", "--kind", "test-linear", "--data", str(cohort), "--out", str(models), "--intensity", "relative",
             "--validation-fraction", "0.5"]
    assert cli.main(train) == 2  # not registered: argparse refuses the kind
    monkeypatch.setitem(registry.KINDS, "test-linear", "tiny_generator_kind")  # the one registry line
    assert cli.main(train) == 0
    manifest = read_manifest(models)
    assert manifest.data["architecture"] == {"kind": "test-linear"} and [n["name"] for n in manifest.data["networks"]] == ["linear"]

    dwi3 = cohort / "sub-001" / "dwi" / "sub-001_acq-dwi3_dwi.nii.gz"
    dti6 = cohort / "sub-001" / "dwi" / "sub-001_acq-dti6_dwi.nii.gz"
    out = tmp_path / "synthetic"
    assert cli.main(["synthesize", "--dwi", str(dwi3), "--b0", str(dti6), "--models", str(models), "--out", str(out),
                     "--precision", "fp32"]) == 0
    synthetic, acquired = load_dwi(out / "synthetic_dti.nii.gz"), load_dwi(dti6)
    np.testing.assert_allclose(synthetic.gradients[1:], SIEMENS_6_RAS, atol=1e-9)
    # The kind's least-squares map of x, y, z attenuations to the six directions (one training subject
    # at 32 x 32 x 19) predicts the acquired directions to about 21 % and MD to about 17 %; a pipeline
    # that lost the kind's outputs (zeros, wrong axes or intensity) is off by 100 % or more.
    brain = acquired.data[..., 0] > 0.3 * acquired.data[..., 0].max()
    for k in range(1, 7):
        error = np.abs(synthetic.data[..., k] - acquired.data[..., k])[brain].mean()
        assert error < 0.3 * acquired.data[..., k][brain].mean(), (k, error)
    md = [compute_maps(fit_tensors(dwi, brain).tensor, brain, ("md",))["md"][brain] for dwi in (synthetic, acquired)]
    assert 0.8 < np.median(md[0]) / np.median(md[1]) < 1.25

    # Without its registry line the package is refused with a message naming the manifest and the kind.
    monkeypatch.delitem(registry.KINDS, "test-linear")
    run = subprocess.run([sys.executable, "-m", "DTISynthLib", "synthesize", "--dwi", str(dwi3), "--models",
                          str(models), "--out", str(tmp_path / "refused"), "--jsonl"], capture_output=True, text=True,
                         cwd=REPO)
    assert run.returncode == 2
    message = json.loads(run.stdout.splitlines()[-1])["message"]
    assert f"manifest.json: expected architecture.kind one of {sorted(registry.KINDS)}; found 'test-linear'" in message
    assert not (tmp_path / "refused").exists()


def test_a_manifest_without_a_kind_is_the_per_direction_kind():
    from DTISynthLib.generators.package import SHIPPED_MODELS

    from DTISynthLib.generators.manifest import Manifest

    data = read_manifest(SHIPPED_MODELS / "pix2pix").data
    assert data["architecture"].pop("kind") == "pix2pix-per-direction"  # as packages before kinds had names
    manifest = Manifest(data)
    assert manifest.kind == registry.DEFAULT_KIND and registry.kind_of(manifest).name == registry.DEFAULT_KIND == "pix2pix-per-direction"
    with pytest.raises(ValueError, match="generator kind must be one of"):
        registry.kind_named("no-such-kind")


# ----------------------------------------------------------------------------- the job runner on Windows

def test_job_runner_stops_the_process_tree_on_windows_with_taskkill(monkeypatch):
    from DTISynthLib.slicer import job_runner

    # its own process group, and no console window popping up for the job
    assert job_runner.process_group_options("win32") == {"creationflags": 0x00000200 | 0x08000000}
    assert job_runner.process_group_options("linux") == {"start_new_session": True}
    assert job_runner.process_group_options("darwin") == {"start_new_session": True}
    ran = []

    class Child:
        pid = 4321
        waited = False

        def wait(self, timeout=None):
            self.waited = True
            return 1

    monkeypatch.setattr(job_runner.subprocess, "run", lambda command, **kwargs: ran.append(command))
    child = Child()
    job_runner.stop_process_tree(child, platform="win32")
    assert ran == [["taskkill", "/PID", "4321", "/T", "/F"]] and child.waited


def test_every_library_name_the_panel_and_the_benchmarks_import_exists():
    """The panel cannot run here and the benchmarks run only by hand: their imports are checked here."""
    import importlib
    import importlib.util

    files = [REPO / "DTISynth" / "DTISynth.py", *sorted((REPO / "benchmarks").glob("*.py"))]
    checked = 0
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("DTISynthLib"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):  # a submodule is an attribute once imported
                        importlib.util.find_spec(f"{node.module}.{alias.name}") and \
                            importlib.import_module(f"{node.module}.{alias.name}")
                    assert hasattr(module, alias.name), f"{path.name}: {node.module} has no {alias.name}"
                    checked += 1
    assert checked > 20


def test_the_child_finds_the_library_slicer_loaded_whatever_its_pythonpath():
    """Folders added in Slicer's Application Settings extend Slicer's sys.path, not PYTHONPATH: the job's
    child gets the folder holding this DTISynthLib first on its PYTHONPATH (and every child is started so)."""
    import os

    from DTISynthLib.slicer import job_runner

    environment = job_runner.child_environment({"PYTHONPATH": os.pathsep.join(["/a", str(job_runner.LIBRARY_FOLDER)]),
                                                "HOME": "/h"})
    assert environment["PYTHONPATH"].split(os.pathsep) == [str(job_runner.LIBRARY_FOLDER), "/a"]
    assert environment["HOME"] == "/h"
    assert job_runner.child_environment({})["PYTHONPATH"] == str(job_runner.LIBRARY_FOLDER)
    assert (job_runner.LIBRARY_FOLDER / "DTISynthLib" / "__init__.py").is_file()
    tree = ast.parse(Path(job_runner.__file__).read_text())
    popens = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "subprocess.Popen"]
    assert popens and all(any(k.arg == "env" and ast.unparse(k.value) == "child_environment()" for k in n.keywords)
                          for n in popens)
