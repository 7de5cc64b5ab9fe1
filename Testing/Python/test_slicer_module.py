"""Static checks of the Slicer module (its Qt panel cannot run here): the .ui and the module agree,
every input widget is bound to the parameter node, CMake lists the resources, and nothing the
module imports pulls torch into Slicer."""

import ast
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "DTISynth" / "DTISynth.py"
# the module's Qt glue that lives in the library (imported by the module only)
WIDGETS = REPO / "DTISynth" / "DTISynthWidgets"
# the module's Qt glue beside it (DTISynthWidgets/) and its Qt-free helpers in the library
PANEL = {"review_panel": WIDGETS / "review_panel.py", "model_sets_panel": WIDGETS / "model_sets_panel.py",
         "results_panel": WIDGETS / "results_panel.py",
         "results_display": REPO / "DTISynthLib" / "slicer" / "results_display.py",
         "dependencies": REPO / "DTISynthLib" / "slicer" / "dependencies.py"}
UI = REPO / "DTISynth" / "Resources" / "UI" / "DTISynth.ui"
INPUT_CLASSES = {"qMRMLNodeComboBox", "QComboBox", "QCheckBox", "ctkPathLineEdit"}


def _widgets():
    root = ElementTree.parse(UI).getroot()
    widgets = {}
    for widget in root.iter("widget"):
        bound = [p.find("string").text for p in widget.findall("property") if p.get("name") == "SlicerParameterName"]
        widgets[widget.get("name")] = (widget.get("class"), bound[0] if bound else None)
    return widgets


def _parameters():
    tree = ast.parse(MODULE.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DTISynthParameterNode")
    return {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)}


def test_every_widget_the_module_uses_exists_in_the_ui():
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE.read_text()))
    for path in PANEL.values():
        used |= set(re.findall(r"\bui\.(\w+)", path.read_text()))
    assert {"applyButton", "reviewStartButton", "modelSetsListWidget", "showPlotButton"} <= used
    missing = used - set(_widgets())
    assert not missing, missing


def _path_fields():
    """PATH_FIELDS of the module: {ctkPathLineEdit name: str parameter} bound by hand."""
    tree = ast.parse(MODULE.read_text())
    (assign,) = [n for n in tree.body if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "PATH_FIELDS"]
    return ast.literal_eval(assign.value)


def test_every_input_widget_is_bound_to_a_parameter_and_every_parameter_to_a_widget():
    widgets = _widgets()
    parameters = _parameters()
    by_hand = _path_fields()
    for name, (cls, bound) in widgets.items():
        if name in by_hand:
            widgets[name] = (cls, by_hand[name])
    unbound = [name for name, (cls, bound) in widgets.items() if cls in INPUT_CLASSES and not bound]
    assert not unbound, unbound
    bound = [b for _, b in widgets.values() if b]
    assert sorted(bound) == sorted(set(bound)), "a parameter bound twice"
    assert set(bound) == parameters, (set(bound) ^ parameters)


def test_no_path_field_shows_a_dot_when_empty():
    """Slicer's ctkPathLineEdit connector writes str(value): a Path parameter that may be empty is Path(".")
    and the field shows "." (the bval / bvec fields did). Such fields are str parameters bound by hand (PATH_FIELDS,
    with an empty default); a Path parameter connected by connectGui must have a default that is a real path."""
    tree = ast.parse(MODULE.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DTISynthParameterNode")
    annotations = {s.target.id: s for s in node.body if isinstance(s, ast.AnnAssign)}
    for widget, (cls, bound) in _widgets().items():
        if cls == "ctkPathLineEdit" and bound:
            field = annotations[bound]
            assert ast.unparse(field.annotation) == "Path" and field.value is not None, ast.unparse(field)
            assert ast.unparse(field.value) not in ("Path()", "Path('')", "Path('.')"), ast.unparse(field)
    for widget, name in _path_fields().items():
        assert _widgets()[widget] == ("ctkPathLineEdit", None), widget  # not also bound by connectGui
        field = annotations[name]
        assert ast.unparse(field.annotation) == "str" and ast.unparse(field.value) == "''", ast.unparse(field)
    text = MODULE.read_text()
    assert '"currentPathChanged(QString)"' in text and "for widget, name in PATH_FIELDS.items()" in text


def test_ui_selectors_get_the_scene_and_take_the_right_node_classes():
    root = ElementTree.parse(UI).getroot()
    receivers = {c.find("receiver").text for c in root.iter("connection")
                 if c.find("slot").text == "setMRMLScene(vtkMRMLScene*)"}
    selectors = {n for n, (cls, _) in _widgets().items() if cls == "qMRMLNodeComboBox"}
    assert receivers == selectors
    text = MODULE.read_text()
    assert "inputDWI: vtkMRMLDiffusionWeightedVolumeNode" in text and "referenceB0: vtkMRMLScalarVolumeNode" in text


def test_cmake_lists_every_module_script():
    """DTISynth.py and its Qt glue (DTISynthWidgets/): an unlisted file would be missing from the extension."""
    cmake = (REPO / "DTISynth" / "CMakeLists.txt").read_text()
    block = re.search(r"set\(MODULE_PYTHON_SCRIPTS\s+(.*?)\)", cmake, re.S).group(1)
    listed = {line.strip().replace("${MODULE_NAME}", "DTISynth") for line in block.splitlines() if line.strip()}
    present = {p.relative_to(REPO / "DTISynth").as_posix() for p in (REPO / "DTISynth").rglob("*.py")}
    assert listed == present and "DTISynthWidgets/review_panel.py" in listed, (listed ^ present)


def test_cmake_lists_every_module_resource():
    cmake = (REPO / "DTISynth" / "CMakeLists.txt").read_text()
    block = re.search(r"set\(MODULE_PYTHON_RESOURCES\s+(.*?)\)", cmake, re.S).group(1)
    listed = {line.strip().replace("${MODULE_NAME}", "DTISynth") for line in block.splitlines() if line.strip()}
    present = {p.relative_to(REPO / "DTISynth").as_posix() for p in (REPO / "DTISynth" / "Resources").rglob("*")
               if p.is_file()}
    assert listed == present, (listed ^ present)


def test_requirements_cover_the_runtime_dependencies_slicer_lacks():
    pyproject = (REPO / "pyproject.toml").read_text()
    runtime = set(re.findall(r'^\s+"([A-Za-z0-9_.-]+)==', pyproject.split("[project.optional-dependencies]")[0], re.M))
    listed = {re.split(r"[<>=]", line)[0].strip() for line in
              (REPO / "DTISynth" / "Resources" / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert listed == runtime - {"torch", "numpy", "SimpleITK"}, (listed, runtime)


def test_what_the_module_imports_keeps_torch_out_of_slicer():
    tree = ast.parse(MODULE.read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "torch" not in imported
    ours = sorted(m for m in imported if m.startswith("DTISynthLib"))
    assert "DTISynthLib.slicer.job_runner" in ours and "DTISynthLib.slicer.mrml_adapter" in ours
    code = "import sys\n" + "".join(f"import {m}\n" for m in ours + ["DTISynthLib.evaluation.comparison", "DTISynthLib.evaluation.atlas"]) + \
        "print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


PYENV = Path("/root/.pyenv/versions")


def _python(version):
    found = sorted(PYENV.glob(f"{version}.*/bin/python"))
    if not found:
        pytest.skip(f"no Python {version} on this machine (pyenv)")
    return found[-1]


def test_the_slicer_floor_is_stated_once_and_held_to():
    """Slicer 5.10 (Python 3.12) is the floor: the extension's description and README say so, pyproject
    agrees, and on Slicer 5.8's Python 3.9 the module refuses to load with that message, before it imports
    anything of DTISynthLib; the library is valid Python 3.10."""
    assert 'requires-python = ">=3.10"' in (REPO / "pyproject.toml").read_text()
    assert "Needs 3D Slicer 5.10 or later" in (REPO / "CMakeLists.txt").read_text()
    assert "3D Slicer 5.10 or later" in (REPO / "README.md").read_text()
    tree = ast.parse(MODULE.read_text())
    first_library_import = min(n.lineno for n in tree.body if isinstance(n, ast.ImportFrom)
                               and (n.module or "").startswith("DTISynthLib"))
    guard = next(n for n in tree.body if isinstance(n, ast.If) and "version_info" in ast.unparse(n.test))
    assert guard.lineno < first_library_import
    old = subprocess.run([str(_python("3.9")), str(MODULE)], capture_output=True, text=True, timeout=60)
    assert old.returncode == 1 and "ImportError: DTISynth needs 3D Slicer 5.10 or later" in old.stderr, old.stderr
    files = [str(p) for p in sorted((REPO / "DTISynthLib").rglob("*.py"))] + [str(MODULE)]
    check = "import sys\nfor f in sys.argv[1:]:\n    compile(open(f).read(), f, 'exec')"  # no .pyc written
    compiled = subprocess.run([str(_python("3.10")), "-c", check, *files], capture_output=True, text=True, timeout=300)
    assert compiled.returncode == 0, compiled.stderr[-2000:]


def _calls(name, path=MODULE):
    """Calls in a file whose function ends with `name` (attribute or plain)."""
    tree = ast.parse(path.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func).split(".")[-1] == name]


def _functions(path):
    return {n.name: n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}


def test_no_shortcut_or_event_filter_on_the_main_window():
    """The review keys (left / right, 1-5) once sat on Slicer's main window from setup on: slice views
    lost their arrow keys, Segment Editor's 1-5 became ambiguous, and every Reload added a set. They are
    the panel's own now (ReviewPanel's `panel`: the module's self.parent), active while focus is in it."""
    shortcuts = [call for path in [MODULE, *PANEL.values()] for call in _calls("QShortcut", path)]
    assert shortcuts, "the review keys are QShortcuts"
    for call in shortcuts:
        assert ast.unparse(call.args[1]) == "self.panel", ast.unparse(call)
    (panel,) = _calls("ReviewPanel")
    assert ast.unparse(panel.args[1]) == "self.parent"
    text = PANEL["review_panel"].read_text()
    assert text.count("setContext(qt.Qt.WidgetWithChildrenShortcut)") == text.count("qt.QShortcut(") == 1
    assert "self._add_shortcut(" in text and "mainWindow" not in text
    for path in [MODULE, *PANEL.values()]:
        for call in _calls("installEventFilter", path):
            assert "mainWindow" not in ast.unparse(call), ast.unparse(call)


# SampleData.SampleDataLogic.registerCustomSampleDataSource and SampleDataSource, from Slicer's
# Modules/Scripted/SampleData/SampleData.py (Slicer/Slicer main, commit 01c2def0e79b, read 2026-12-05):
# the parameters, and those that SampleDataSource takes len() of whatever the downloader.
REGISTER_CUSTOM_SAMPLE_DATA_SOURCE = {"category", "sampleName", "uris", "fileNames", "nodeNames", "customDownloader",
                                      "thumbnailFileName", "loadFileTypes", "loadFiles", "loadFileProperties",
                                      "checksums", "loadFileType"}
SAMPLE_DATA_SOURCE_NEEDS = {"uris", "fileNames"}


def test_sample_data_is_registered_as_sample_data_takes_it():
    (call,) = _calls("registerCustomSampleDataSource")
    keywords = {k.arg for k in call.keywords}
    unknown = keywords - REGISTER_CUSTOM_SAMPLE_DATA_SOURCE
    assert not call.args and not unknown, unknown
    assert SAMPLE_DATA_SOURCE_NEEDS <= keywords and "customDownloader" in keywords
    values = {k.arg: k.value for k in call.keywords}
    assert all(isinstance(values[k], ast.Constant) and isinstance(values[k].value, str)
               for k in SAMPLE_DATA_SOURCE_NEEDS)


def test_a_result_that_fails_to_load_stops_the_poll():
    """onPoll catches every error of loading results, not only a failed command: otherwise the 200 ms timer
    retries, adding the nodes again on every tick."""
    tree = ast.parse(MODULE.read_text())
    poll = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "onPoll")
    (handled,) = [n for n in poll.body if isinstance(n, ast.Try)]
    caught = [ast.unparse(h.type) for h in handled.handlers]
    assert caught[-1] == "Exception" and "JobFailed" in caught
    assert ast.unparse(poll.body[-1]) == "self._stop()"


def test_closing_the_scene_forgets_its_nodes_and_ends_the_review_display():
    functions = {name: ast.unparse(node) for name, node in _functions(MODULE).items()}
    close = functions["onSceneStartClose"]
    for step in ("self.review.close()", "self.results.set_nodes({})", "self.setParameterNode(None)"):
        assert step in close, step
    assert "self.review.close()" in functions["cleanup"] and "self.job.cancel(wait=True)" in functions["cleanup"]
    forget = ast.unparse(_functions(PANEL["results_panel"])["set_nodes"])
    assert "self.nodes = nodes" in forget and "resultsCollapsibleButton.enabled = bool(nodes)" in forget
    stop = ast.unparse(_functions(MODULE)["_stop"])
    assert "self.job.cleanup()" in stop  # temporary files go whether the job succeeded, failed or failed to load


def test_dependencies_are_ensured_wherever_the_library_runs_in_slicer_and_torch_stays_out():
    """Sample Data, the Review section and scripted logic.synthesize need the library's packages as much as
    Apply does; PyTorchUtils' installTorch imports torch into Slicer, against the design; Slicer's
    pip_ensure raises RuntimeError when the user declines, which means "do not go on", not a crash."""
    functions = _functions(MODULE)
    for name in ("onApplyButton", "loadPhantomSample", "synthesize"):
        body = functions[name].body
        first = next(k for k, node in enumerate(body) if "ensureDependencies" in ast.unparse(node))
        assert not any(isinstance(n, (ast.Import, ast.ImportFrom)) for node in body[:first] for n in ast.walk(node)
                       if "DTISynthLib" in ast.unparse(n)), name
    (panel,) = _calls("ReviewPanel")
    assert ast.unparse(panel.args[2]) == "lambda: self.logic.ensureDependencies(torch=False)"
    start = _functions(PANEL["review_panel"])["start"].body
    assert "self.ensure_dependencies()" in ast.unparse(next(n for n in start if isinstance(n, ast.If)))
    assert "torch=False" in ast.unparse(functions["loadPhantomSample"])
    library = PANEL["dependencies"].read_text()
    imported = {a.name for path in [MODULE, *PANEL.values()] for n in ast.walk(ast.parse(path.read_text()))
                if isinstance(n, ast.Import) for a in n.names}
    assert "PyTorchUtils" not in imported and "except RuntimeError" in library
    assert {n.module for n in ast.walk(ast.parse(library)) if isinstance(n, ast.ImportFrom)} <= {"slicer.i18n"}


def test_the_dwi_selector_has_none_the_map_list_survives_reentry_and_the_category_is_translated():
    """Without "None" the DWI selector kept a DWI whenever one existed, so the 4D-sequence route was
    unusable; re-entering the module refilled the map list through "" (KeyError ''); the category is
    translated as Slicer's template does it."""
    ui = ElementTree.parse(REPO / "DTISynth" / "Resources" / "UI" / "DTISynth.ui")
    selector = ui.find(".//widget[@name='inputDWISelector']")
    none = selector.find("property[@name='noneEnabled']/bool")
    assert none is not None and none.text == "true"
    assert "in MAP_ROLES" in ast.unparse(_functions(PANEL["results_panel"])["update"])
    assert "not self._parameterNode.inputSequence" in ast.unparse(_functions(MODULE)["initializeParameterNode"])
    assert 'self.parent.categories = [translate("qSlicerAbstractCoreModule", "Diffusion")]' in MODULE.read_text()


def test_reload_and_test_skips_without_torch_instead_of_failing():
    """Slicer's Reload and Test calls runTest() itself: a unittest.SkipTest raised there is reported as a
    failure, so runTest checks for torch first and says it skipped."""
    tree = ast.parse(MODULE.read_text())
    run = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "runTest")
    text = ast.unparse(run)
    assert "find_spec('torch') is None" in text and "skipTest" not in text
    guard = next(k for k, node in enumerate(run.body) if "find_spec" in ast.unparse(node))
    first_test = next(k for k, node in enumerate(run.body) if "self.test_" in ast.unparse(node))
    assert guard < first_test


def test_the_plot_button_shows_the_map_on_show():
    text = PANEL["results_panel"].read_text()
    connect = text[text.index('ui.showPlotButton.connect'):].split("\n")[:2]
    assert "MAP_ROLES.get(ui.mapComboBox.currentText" in " ".join(connect)


def test_every_slicer_util_call_binds_to_slicer_util_as_slicer_core_ships_it():
    """The module's calls into slicer.util against the real functions (slicer-core 5.13's slicer.util, the
    same Python code as the application's): each exists and takes the arguments given (count and keyword
    names), so a renamed keyword or a removed helper fails here, not in a user's Slicer."""
    import inspect

    util = pytest.importorskip("slicer.util")
    calls = [n for path in [MODULE, *PANEL.values()] for n in ast.walk(ast.parse(path.read_text()))
             if isinstance(n, ast.Call) and re.fullmatch(r"slicer\.util\.\w+", ast.unparse(n.func))]
    assert len(calls) >= 10
    for call in calls:
        name = ast.unparse(call.func).split(".")[-1]
        function = getattr(util, name, None)
        assert function is not None, f"slicer.util.{name} does not exist"
        keywords = {k.arg: None for k in call.keywords if k.arg}
        inspect.signature(function).bind(*[None] * len(call.args), **keywords)  # TypeError if they do not fit
