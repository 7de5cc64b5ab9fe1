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
    # FastAPI and uvicorn serve the browser review, which the extension cannot (its NiiVue bundle is npm's,
    # not installed into Slicer): they stayed out of every Slicer that installs DTISynth
    assert listed == runtime - {"torch", "numpy", "SimpleITK", "fastapi", "uvicorn"}, (listed, runtime)


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
    assert "self.review.cleanup()" in functions["cleanup"] and "self.job.cancel(wait=True)" in functions["cleanup"]
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
    assert ast.unparse(panel.args[2]) == "lambda: self.ensureDependencies(torch=False)"
    start = _functions(PANEL["review_panel"])["start"]
    assert "self.ensure_dependencies()" in ast.unparse(next(n for n in ast.walk(start) if isinstance(n, ast.If)))
    assert "torch=False" in ast.unparse(functions["loadPhantomSample"])
    library = PANEL["dependencies"].read_text()
    imported = {a.name for path in [MODULE, *PANEL.values()] for n in ast.walk(ast.parse(path.read_text()))
                if isinstance(n, ast.Import) for a in n.names}
    assert "PyTorchUtils" not in imported and "except RuntimeError" in library
    # the standard library and Slicer's own (packaging ships with slicer.pydeps, on 5.11+ where it is used)
    assert {n.module for n in ast.walk(ast.parse(library)) if isinstance(n, ast.ImportFrom)} <= {
        "slicer.i18n", "pathlib", "importlib", "packaging.requirements"}


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


def _inside_error_display(function, name):
    """Every call of `name` in `function` lies inside a `with slicer.util.tryWithErrorDisplay(...)` block."""
    covered = set()
    for node in ast.walk(function):
        if isinstance(node, ast.With) and any("tryWithErrorDisplay" in ast.unparse(i.context_expr) for i in node.items):
            covered |= {id(n) for n in ast.walk(node)}
    calls = [n for n in ast.walk(function) if isinstance(n, ast.Call) and ast.unparse(n.func).endswith(name)]
    return calls and all(id(c) in covered for c in calls)


def test_installing_dependencies_is_in_sight_once_and_its_failure_reaches_the_screen():
    """On 5.10 the first Apply looked like a hang and could run twice: ensureDependencies ran before and
    outside the error display (an offline CalledProcessError never reached the screen), slicer.util.pip_install
    showed nothing for a multi-GB download, and a second click started a second pip install."""
    module, panel = _functions(MODULE), _functions(PANEL["review_panel"])
    for function, name in ((module["onApplyButton"], "ensureDependencies"),
                           (module["loadPhantomSample"], "ensureDependencies"),
                           (panel["start"], "ensure_dependencies")):
        assert _inside_error_display(function, name), function.name
    dependencies = PANEL["dependencies"].read_text()
    calls = [ast.unparse(n.func) for n in ast.walk(ast.parse(dependencies)) if isinstance(n, ast.Call)]
    assert "slicer.util.pip_install" not in calls and "pip_install_visibly" in calls
    ensure = _functions(PANEL["dependencies"])["ensure_dependencies"]
    assert "if installing:" in ast.unparse(ensure) and "installing = False" in ast.unparse(ensure)


def test_the_review_shortcuts_are_deleted_when_the_module_goes():
    """Reload and Reload and Test left the review's QShortcuts on the panel: the reloaded module added a
    second set, Qt sent every key as ambiguous, and arrows and 1-5 stopped working until Slicer restarted."""
    cleanup = ast.unparse(_functions(PANEL["review_panel"])["cleanup"])
    assert "for shortcut in self.shortcuts" in cleanup and "deleteLater()" in cleanup and "setParent(None)" in cleanup
    assert "self.review.cleanup()" in ast.unparse(_functions(MODULE)["cleanup"])


def test_ctest_skips_without_torch_in_setup_and_never_installs_it():
    """slicer.testing.runUnitTest runs the test_ methods through unittest (setUp first), never runTest: the
    skip must be in setUp, or the test installs PyTorch (dialogs auto-accept in testing mode)."""
    setup = _functions(MODULE)["setUp"]
    first = ast.unparse(setup.body[0])
    assert first.startswith("if importlib.util.find_spec('torch') is None") and "self.skipTest(" in first
    assert "self.setUp()" in ast.unparse(_functions(MODULE)["runTest"])


def test_the_parameter_node_keeps_a_model_package_name_not_a_folder():
    """A saved scene pinned the models folder to the install path of the Slicer that saved it: after an
    upgrade Apply failed or used the old extension's weights. It keeps the package's name, found at Apply."""
    tree = ast.parse(MODULE.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DTISynthParameterNode")
    fields = {ast.unparse(s.target): ast.unparse(s.annotation) for s in node.body if isinstance(s, ast.AnnAssign)}
    assert fields["modelSet"] == "str" and "Path" not in fields.values()
    assert "models=model_folder(p.modelSet)" in ast.unparse(_functions(MODULE)["onApplyButton"])


class FakeWidget:
    """A fake of the Qt widgets ResultsPanel touches (no Qt here): attributes, and connect() recording the
    slot so that a test can emit the signal."""

    def __init__(self, **attributes):
        self.__dict__.update(attributes)
        self.slots = {}

    def connect(self, signal, slot):
        self.slots[signal] = slot


def test_the_results_leave_the_views_alone_while_a_review_owns_them_or_the_widgets_are_being_filled(monkeypatch):
    """Re-entering the module repainted every slice view (the parameter node's binding refills the map list,
    and each change showed a map and fitted): zoom and pan were lost, and during a review the two review
    images were replaced by a result map, so the next arrow key answered a case no longer on screen."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("results_panel", PANEL["results_panel"])
    results_panel = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results_panel)
    shown = []
    for name in ("show_results", "show_table", "show_plot"):
        monkeypatch.setattr(results_panel, name, lambda *args, name=name: shown.append(name))
    ui = {name: FakeWidget() for name in ("showTableButton", "showPlotButton", "resultsCollapsibleButton",
                                          "reliabilityTextEdit")}
    ui.update(mapComboBox=FakeWidget(currentText="FA"), roiOverlayCheckBox=FakeWidget(checked=True),
              hideGuessCheckBox=FakeWidget(checked=False))
    ui = type("FakeUi", (), ui)
    review = {"session": None}
    panel = results_panel.ResultsPanel(ui, views_taken=lambda: review["session"] is not None)
    panel.set_nodes({"fa": object(), "table": object()})
    assert shown == ["show_results", "show_table", "show_plot"] and ui.showTableButton.enabled
    assert not ui.showPlotButton.enabled  # no Bland-Altman chart in these results
    shown.clear()
    with panel.holding():  # connectGui filling the widgets on entering the module
        ui.mapComboBox.slots["currentIndexChanged(int)"](0)
    review["session"] = "a reader's case"
    ui.mapComboBox.slots["currentIndexChanged(int)"](1)
    ui.roiOverlayCheckBox.slots["toggled(bool)"](False)
    ui.showTableButton.slots["clicked(bool)"]()
    assert shown == []
    review["session"] = None
    ui.mapComboBox.slots["currentIndexChanged(int)"](1)  # the user chose a map
    assert shown == ["show_results"]
    shown.clear()  # a reopened scene: its results and their reliability lines, its views as saved
    panel.set_nodes({"fa": object(), "reliability": FakeWidget(GetText=lambda: "Directions used: x 0.4°")}, show=False)
    assert shown == [] and ui.reliabilityTextEdit.plainText == "Directions used: x 0.4°"
    reopen = ast.unparse(_functions(MODULE)["onSceneEndImport"])
    assert "find_results(slicer.mrmlScene)" in reopen and "show=False" in reopen
    assert "self.onSceneEndImport" in MODULE.read_text()


def test_pip_is_followed_without_blocking_the_gui_and_stops_on_cancel(tmp_path):
    """follow_process (what pip_install_visibly runs the dialog with): Slicer's event processing (idle) is
    called all the while a child is silent, as pip is for minutes downloading PyTorch; each line reaches
    the dialog as it comes; Cancel (idle returning False) stops the child."""
    import time

    from DTISynthLib.slicer.dependencies import follow_process

    script = "import time; print('Downloading torch-2.13.0.whl (912.4 MB)', flush=True); time.sleep(1.5); print('done')"
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    lines, idle = [], []
    code, stopped = follow_process(child, lines.append, lambda: idle.append(time.monotonic()))
    assert (code, stopped) == (0, False) and lines == ["Downloading torch-2.13.0.whl (912.4 MB)", "done"]
    assert len(idle) > 15 and max(b - a for a, b in zip(idle, idle[1:])) < 0.5  # the GUI repaints meanwhile
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    started = time.monotonic()
    code, stopped = follow_process(child, lines.append, lambda: time.monotonic() - started < 0.5)
    assert stopped and code != 0 and time.monotonic() - started < 5


def test_the_510_fallback_checks_versions_not_only_imports(tmp_path):
    """On Slicer 5.10 (no slicer.pydeps) requirements were checked by import name alone: an old nibabel that
    imports passed, and the library then failed inside the child."""
    from importlib import metadata

    from DTISynthLib.slicer.dependencies import missing_requirements

    installed = metadata.version("nibabel")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"# a comment\nnibabel>={installed}\nnibabel>=999.0\npynrrd\nnot-a-package-at-all>=1\n")
    assert missing_requirements(requirements) == ["nibabel>=999.0", "not-a-package-at-all>=1"]


def test_a_running_job_never_outlives_its_scene_or_an_error_while_following_it():
    """A job running at scene close loaded its results into the next scene; an exception in onPoll stopped
    the polling and left the child running unobserved. Apply and Start are disabled while installing."""
    functions = {name: ast.unparse(node) for name, node in _functions(MODULE).items()}
    close = functions["onSceneStartClose"]
    assert close.index("self.job.cancel()") < close.index("self.setParameterNode(None)")
    assert "if self.job.running:\n        self.job.cancel()" in functions["_stop"]
    (text,) = [ast.unparse(n) for n in ast.walk(ast.parse(MODULE.read_text())) if isinstance(n, ast.FunctionDef)
               and n.name == "ensureDependencies" and "applyButton" in ast.unparse(n)]  # the widget's
    assert "self.ui.applyButton, self.ui.reviewStartButton" in text and "button.enabled = False" in text
    assert text.index("button.enabled = False") < text.index("self.logic.ensureDependencies(") < text.index("finally")


def test_the_module_loads_from_its_source_tree_and_names_the_modules_it_calls(tmp_path):
    """Loaded from the source tree (Additional module paths: .../DTISynth) the module failed: DTISynthLib is
    one folder up there. Its prelude (what runs before `import qt`) now finds it, run where nothing else would;
    and `dependencies` names the Slicer modules whose logic or MRML classes it calls."""
    text = MODULE.read_text()
    prelude = text[:text.index("import qt")]
    script = (f"__file__ = {str(MODULE)!r}\n{prelude}\nimport DTISynthLib, pathlib\n"
              "print(pathlib.Path(DTISynthLib.__file__).resolve().parent.parent)")
    result = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            env={"PYTHONPATH": ""})
    assert result.returncode == 0 and result.stdout.strip() == str(REPO), result.stderr
    (assign,) = [n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Assign)
                 and ast.unparse(n.targets[0]) == "self.parent.dependencies"]
    named = set(ast.literal_eval(assign.value))
    assert {"Plots", "Segmentations", "SubjectHierarchy", "Sequences", "SampleData"} <= named
    assert "slicer.modules.plots" in (REPO / "DTISynthLib" / "slicer" / "results_display.py").read_text()


def test_the_panel_takes_a_dwi_file_and_says_which_frame_the_bvecs_are_in():
    """A NIfTI + bval / bvec (dcm2niix's export) or a DICOM folder could not be brought into the panel in core
    Slicer: a file field, bound to the parameter node, goes straight to the child; a b=0 file likewise."""
    widgets = _widgets()
    assert widgets["inputFilePathLineEdit"][0] == widgets["referenceB0FilePathLineEdit"][0] == "ctkPathLineEdit"
    assert _path_fields()["inputFilePathLineEdit"] == "inputFile"
    assert _path_fields()["referenceB0FilePathLineEdit"] == "referenceB0File"
    root = ElementTree.parse(UI).getroot()
    tips = {w.get("name"): "".join(p.find("string").text for p in w.findall("property") if p.get("name") == "toolTip")
            for w in root.iter("widget")}
    assert "NIfTI" in tips["inputFilePathLineEdit"] and "DICOM folder" in tips["inputFilePathLineEdit"]
    assert "voxel axes" in tips["bvecPathLineEdit"] and "RAS" in tips["bvecPathLineEdit"]
    apply = ast.unparse(_functions(MODULE)["onApplyButton"])
    assert "p.inputFile or p.inputDWI or p.inputSequence" in apply and "add_dwi_file(" in apply
    assert "p.referenceB0File or p.referenceB0" in apply


def test_a_model_package_is_found_by_name_shipped_first_and_a_path_is_not_a_name(tmp_path):
    from DTISynthLib.core.errors import InputError
    from DTISynthLib.generators.package import DEFAULT_MODELS, SHIPPED_MODELS, find_package

    imported = tmp_path / "imported"
    (imported / "mine").mkdir(parents=True)
    (imported / "mine" / "manifest.json").write_text("{}")
    assert find_package("tensor-unet", [SHIPPED_MODELS, imported]) == DEFAULT_MODELS
    assert find_package("mine", [SHIPPED_MODELS, imported]) == imported / "mine"
    for name in ("absent", "../imported/mine", str(imported / "mine"), ""):
        with pytest.raises(InputError, match="the name of an installed model package"):
            find_package(name, [SHIPPED_MODELS, imported])


def test_small_panel_findings_stay_fixed():
    """After a failed load of the next review case the reader was told the answer was not saved although it
    was; cancelling the .zip dialog of Import models opened a folder dialog."""
    answer = _functions(PANEL["review_panel"])["answer"]
    blocks = [n for n in answer.body if isinstance(n, ast.With)]
    assert len(blocks) == 2 and "self.session.save(" in ast.unparse(blocks[0]) and \
        "self.session.show_next()" in ast.unparse(blocks[1]) and "was saved" in ast.unparse(blocks[1].items[0])
    imported = ast.unparse(_functions(PANEL["model_sets_panel"])["import_package"])
    assert "clickedButton() == zip_button" in imported and "clickedButton() == folder_button" in imported
    assert "if not source:" not in imported
