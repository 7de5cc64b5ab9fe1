"""The MRML adapter with slicer-core (a real MRML scene, no fakes): node classes, frames, arrays,
table, plots, segmentation, and the .mrb scene bundle round trip."""

import csv
import json
import re

import numpy as np
import pytest

from DTISynthLib.core.dwi import DWI, check_dwi
from DTISynthLib.evaluation.comparison import run_evaluation
from DTISynthLib.io.files import load_dwi, load_tensor
from DTISynthLib.simulation.cohort import write_cohort
from DTISynthLib.synthesis.pipeline import SynthesisResult
from DTISynthLib.synthesis.writing import write_synthesis

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")
adapter = pytest.importorskip("DTISynthLib.slicer.mrml_adapter")


def _matrix(vtk_matrix):
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A synthesize folder (the subject's acquired DTI with 5 % weaker weighted signals stands in for
    the synthetic one) and its evaluate folder."""
    root = tmp_path_factory.mktemp("adapter")
    write_cohort(root / "cohort", 1, "sampled", seed=2, grid=(64, 64, 38))
    original = root / "cohort" / "sub-001" / "dwi" / "sub-001_acq-dti6_dwi.nii.gz"
    dti = check_dwi(load_dwi(original))
    data = dti.data.copy()
    data[..., 1:] *= 0.95
    report = {"axis_angle_degrees": [0.4, 1.2, 16.9], "registration": {"performed": False},
              "warnings": ["z direction 16.9 degrees from the scanner axis"]}
    write_synthesis(root / "synthetic", SynthesisResult(DWI(data, dti.affine, dti.bvals, dti.gradients), report))
    run_evaluation(original, root / "synthetic", root / "evaluation", realism_epochs=10)  # 50: 6 s more, the same nodes
    return root


@pytest.fixture
def scene():
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    return scene


def test_adapter_creates_each_node_with_its_class_frames_and_values(results, scene):
    nodes = adapter.load_results(scene, results / "synthetic", results / "evaluation", name="sub-001")
    dwi = check_dwi(load_dwi(results / "synthetic" / "synthetic_dti.nii.gz"))
    assert nodes["dwi"].IsA("vtkMRMLDiffusionWeightedVolumeNode")
    ijk_to_ras, frame = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    nodes["dwi"].GetIJKToRASMatrix(ijk_to_ras)
    np.testing.assert_allclose(_matrix(ijk_to_ras), dwi.affine, atol=1e-6)
    nodes["dwi"].GetMeasurementFrameMatrix(frame)
    gradients = np.array([nodes["dwi"].GetDiffusionGradient(i) for i in range(nodes["dwi"].GetNumberOfGradients())])
    np.testing.assert_allclose((_matrix(frame)[:3, :3] @ gradients.T).T, dwi.gradients, atol=1e-9)
    np.testing.assert_allclose([nodes["dwi"].GetBValue(i) for i in range(7)], dwi.bvals)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(nodes["dwi"]), np.transpose(dwi.data, (2, 1, 0, 3)))

    tensor, affine = load_tensor(results / "synthetic" / "maps" / "tensor.nii.gz")
    assert nodes["tensor"].IsA("vtkMRMLDiffusionTensorVolumeNode")
    assert nodes["tensor"].GetDisplayNode() is not None  # glyphs and colour need the default display nodes
    matrices = slicer.util.arrayFromVolume(nodes["tensor"])  # (k, j, i, 3, 3)
    k, j, i = 19, 30, 33
    dxx, dyy, dzz, dxy, dxz, dyz = tensor[i, j, k]
    np.testing.assert_allclose(matrices[k, j, i], [[dxx, dxy, dxz], [dxy, dyy, dyz], [dxz, dyz, dzz]], rtol=1e-6)
    assert np.abs(matrices).max() > 1e-4  # a brain's tensors, not zeros
    nodes["tensor"].GetIJKToRASMatrix(ijk_to_ras)
    np.testing.assert_allclose(_matrix(ijk_to_ras), affine, atol=1e-6)

    assert nodes["fa"].IsA("vtkMRMLScalarVolumeNode") and nodes["color"].IsA("vtkMRMLVectorVolumeNode")
    display = nodes["md"].GetDisplayNode()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx((0.0, 2.0e-3))

    segments = nodes["rois"].GetSegmentation()
    names = {segments.GetNthSegment(n).GetName() for n in range(segments.GetNumberOfSegments())}
    assert names == {"lentiform_nucleus", "thalamus", "posterior_limb_internal_capsule",
                     "posterior_thalamic_radiation", "splenium_corpus_callosum"}

    with open(results / "evaluation" / "table2.csv") as f:
        rows = list(csv.DictReader(f))
    table = nodes["table"]
    assert table.GetNumberOfRows() == len(rows) == 20
    means = slicer.util.arrayFromTableColumn(table, "synthetic_mean")
    np.testing.assert_allclose(means, [float(r["synthetic_mean"]) for r in rows], rtol=1e-6)
    assert table.GetTable().GetColumnByName("roi").GetValue(0) == rows[0]["roi"]

    with open(results / "evaluation" / "realism_index.csv") as f:
        realism_rows = list(csv.DictReader(f))
    assert [r["subject"] for r in realism_rows] == ["sub-001"]  # one subject: its slabs alternate as folds
    np.testing.assert_allclose(slicer.util.arrayFromTableColumn(nodes["realism_index"], "realism_index"),
                               [float(realism_rows[0]["realism_index"])], rtol=1e-6)

    chart = nodes["bland_altman_md"]
    assert chart.IsA("vtkMRMLPlotChartNode") and chart.GetNumberOfPlotSeriesNodes() == 4
    colours = [tuple(round(c, 3) for c in scene.GetNodeByID(chart.GetNthPlotSeriesNodeID(k)).GetColor())
               for k in range(4)]
    assert len(set(colours[:3])) == 3 and (0.0, 0.0, 0.0) not in colours  # points, bias, limits: told apart
    points = nodes["bland_altman_md_sub-001 Bland-Altman MD points"]
    differences = slicer.util.arrayFromTableColumn(points, "difference")
    md_rows = [r for r in rows if r["map"] == "md"]
    # table2.csv holds 6 significant digits (1e-3 mm^2/s units): differences agree to that rounding
    np.testing.assert_allclose(differences, [float(r["synthetic_mean"]) - float(r["original_mean"]) for r in md_rows],
                               atol=2e-6)

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    folders = {hierarchy.GetItemParent(hierarchy.GetItemByDataNode(n)) for n in nodes.values()}
    assert len(folders) == 1 and hierarchy.GetItemName(folders.pop()) == "sub-001"


def test_the_reliability_lines_say_what_to_know_before_trusting_the_maps(results, tmp_path):
    """synthesis.json's plain-language lines: directions, registration, the white matter's guessed
    orientation with the advice when most is guessed, every warning."""
    from DTISynthLib.io.nifti import read_nifti
    from DTISynthLib.synthesis.reliability import reliability_lines, white_matter_confident_share

    written = json.loads((results / "synthetic" / "synthesis.json").read_text())
    assert written["reliability"] == ["Directions used: x 0.4°, y 1.2°, z 16.9° from the scanner's axes",
                                      "Not registered: the DWI's own b=0 is the reference",
                                      "Warning: z direction 16.9 degrees from the scanner axis"]
    assert "white_matter_confident_share" not in written  # a kind without a V1 confidence
    dti = check_dwi(load_dwi(results / "synthetic" / "synthetic_dti.nii.gz"))
    confidence = np.where(np.arange(64)[:, None, None] < 16, 0.95, 0.3) * np.ones((64, 64, 38))  # 16 columns known
    write_synthesis(tmp_path / "with", SynthesisResult(dti, {"warnings": []},
                                                       maps={"v1_confidence": confidence.astype(np.float32)}))
    report = json.loads((tmp_path / "with" / "synthesis.json").read_text())
    share = report["white_matter_confident_share"]
    maps = tmp_path / "with" / "maps"
    fa, stored, mask = (read_nifti(maps / f"{name}.nii.gz")[0] for name in ("fa", "v1_confidence", "mask"))
    assert share == pytest.approx(white_matter_confident_share(fa, stored, mask > 0), abs=1e-4) and 0 < share < 0.5
    assert report["reliability"] == [f"Orientation is a guess in {1 - share:.0%} of white matter (V1 confidence below "
                                     "0.8; FA > 0.3): use Hide guessed orientation (colour FA grey where it is a guess)"]
    check = {"error_ratio": 3.21, "warning_ratio": 2.0, "warning": True}
    assert reliability_lines({"input_check": check, "registration": {"performed": True, "correlation": 0.9912}},
                             0.9) == [
        "Registered to the reference b=0: correlation 0.991 (the same subject gives about 0.99; below 0.95 check it "
        "is this subject's b=0)",
        "Input check: 3.21 x the models' validation error, unlike their training inputs (warning above 2)",
        "Orientation is a guess in 10% of white matter (V1 confidence below 0.8; FA > 0.3)"]
    fa = np.array([0.5, 0.5, 0.5, 0.1])
    assert white_matter_confident_share(fa, np.array([0.9, 0.7, 0.85, 0.99]), np.ones(4, bool)) == pytest.approx(2 / 3)
    assert white_matter_confident_share(fa * 0, fa, np.ones(4, bool)) is None


def test_scene_bundle_reloads_with_the_same_nodes(results, tmp_path):
    out, roles = adapter.write_scene_bundle(results / "synthetic", tmp_path / "results.mrb", results / "evaluation")
    assert out.exists() and out.stat().st_size > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["results.mrb"]  # no temporary file or folder left
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    cache = slicer.vtkCacheManager()  # real Slicer sets these up; ReadFromMRB unpacks into the cache
    cache.SetRemoteCacheDirectory(str(tmp_path / "cache"))
    io_manager = slicer.vtkDataIOManager()
    io_manager.SetCacheManager(cache)
    scene.SetDataIOManager(io_manager)
    scene.SetCacheManager(cache)
    assert scene.ReadFromMRB(str(out))
    found = adapter.find_results(scene)  # the Results section of a reopened scene
    assert set(found) == set(roles) and found["dwi"].IsA("vtkMRMLDiffusionWeightedVolumeNode")
    written = json.loads((results / "synthetic" / "synthesis.json").read_text())["reliability"]
    assert found["reliability"].GetText().splitlines() == written
    classes = {}
    for n in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(n)
        classes.setdefault(node.GetClassName(), []).append(node)
    for name in ("vtkMRMLDiffusionWeightedVolumeNode", "vtkMRMLDiffusionTensorVolumeNode",
                 "vtkMRMLSegmentationNode", "vtkMRMLTableNode", "vtkMRMLPlotChartNode"):
        assert name in classes, name
    dwi = classes["vtkMRMLDiffusionWeightedVolumeNode"][0]
    assert dwi.GetNumberOfGradients() == 7
    expected = check_dwi(load_dwi(results / "synthetic" / "synthetic_dti.nii.gz"))
    np.testing.assert_allclose(slicer.util.arrayFromVolume(dwi), np.transpose(expected.data, (2, 1, 0, 3)), rtol=1e-6)
    assert len(classes["vtkMRMLPlotChartNode"]) == 4 and len(classes["vtkMRMLScalarVolumeNode"]) >= 4
    with pytest.raises(ValueError, match=".mrb"):
        adapter.write_scene_bundle(results / "synthetic", tmp_path / "results.zip")


def test_scene_command_writes_the_bundle_and_refuses_a_bad_name(results, tmp_path):
    import json
    import subprocess
    import sys

    def dtisynth(*args):
        return subprocess.run([sys.executable, "-m", "DTISynthLib", "scene", *map(str, args), "--jsonl"],
                              capture_output=True, text=True)

    run = dtisynth("--results", results / "synthetic", "--evaluation", results / "evaluation", "--out",
                   tmp_path / "s.mrb")
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert events[-1]["event"] == "result" and events[-1]["outputs"] == [str(tmp_path / "s.mrb")]
    run = dtisynth("--results", results / "synthetic", "--out", tmp_path / "s.txt")
    assert run.returncode == 2 and ".mrb" in run.stdout and not (tmp_path / "s.txt").exists()


def test_a_v1_confidence_map_loads_with_a_colour_fa_that_greys_the_guessed_orientation(results, scene, tmp_path):
    """A synthesis with maps/v1_confidence (kinds that classify the off-diagonal signs): the confidence
    is a 0-1 scalar node and a second colour FA keeps the colour only where it is >= 0.8, grey FA
    elsewhere, which the module's "Hide guessed orientation" shows."""
    import shutil

    from DTISynthLib.core.orientation_confidence import confident_color_fa
    from DTISynthLib.io.files import save_volume
    from DTISynthLib.io.nifti import read_nifti

    synthetic = tmp_path / "synthetic"
    shutil.copytree(results / "synthetic", synthetic)
    fa, affine = read_nifti(synthetic / "maps" / "fa.nii.gz")
    confidence = np.broadcast_to(np.linspace(0, 1, fa.shape[0])[:, None, None], fa.shape).astype(np.float32)
    save_volume(synthetic / "maps" / "v1_confidence.nii.gz", confidence, affine)
    nodes = adapter.load_results(scene, synthetic, name="sub-001")
    assert nodes["v1_confidence"].GetDisplayNode().GetWindowLevelMin() == 0.0
    np.testing.assert_allclose(slicer.util.arrayFromVolume(nodes["v1_confidence"]), np.transpose(confidence, (2, 1, 0)))
    color, _ = read_nifti(synthetic / "maps" / "color_fa.nii.gz")
    shown = np.transpose(slicer.util.arrayFromVolume(nodes["color_confident"]), (2, 1, 0, 3)).astype(float) / 255
    confident = confidence >= 0.8
    brain = fa > 0.2
    np.testing.assert_allclose(shown[confident & brain], color[confident & brain], atol=1 / 255)
    grey = shown[~confident & brain]
    np.testing.assert_allclose(grey[:, 0], grey[:, 1])
    np.testing.assert_allclose(grey[:, 1], grey[:, 2])
    np.testing.assert_allclose(grey[:, 0], np.clip(fa[~confident & brain], 0, 1) / np.sqrt(3), atol=1 / 255)
    assert not np.allclose(color[~confident & brain], confident_color_fa(color, fa, confidence)[~confident & brain])
    without = adapter.load_results(scene, results / "synthetic", name="plain")  # a kind without a confidence
    assert "v1_confidence" not in without and "color_confident" not in without and "md_uncertainty" not in without
    # a skewed triple's MD uncertainty: a scalar node, windowed 0-10 %
    uncertainty = (confidence * 0.08).astype(np.float32)
    save_volume(synthetic / "maps" / "md_uncertainty.nii.gz", uncertainty, affine)
    with_md = adapter.load_results(scene, synthetic, name="skewed")
    assert with_md["md_uncertainty"].GetName() == "skewed MD uncertainty (relative SD)"
    assert with_md["md_uncertainty"].GetDisplayNode().GetWindowLevelMax() == pytest.approx(0.1)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(with_md["md_uncertainty"]), np.transpose(uncertainty, (2, 1, 0)))
    (synthetic / "maps" / "md_uncertainty.nii.gz").unlink()
    # evaluated against the acquired DTI: the calibration table becomes a table node
    import json

    report = json.loads((synthetic / "synthesis.json").read_text())
    (synthetic / "synthesis.json").write_text(json.dumps(dict(report, v1_confidence_angle_degrees=20.0)))
    original = results / "cohort" / "sub-001" / "dwi" / "sub-001_acq-dti6_dwi.nii.gz"
    run_evaluation(original, synthetic, tmp_path / "evaluation", realism_epochs=0)
    nodes = adapter.load_results(scene, synthetic, tmp_path / "evaluation", name="calibrated")
    assert nodes["v1_calibration"].GetNumberOfRows() == 7
    assert "realism_index" not in nodes


# How DTISynth.py reaches the MRML / logic objects it calls into, read from Slicer's source (v5.10.0):
# slicer.app.applicationLogic() is qSlicerCoreApplication::applicationLogic (a vtkSlicerApplicationLogic),
# slicer.modules.plots.logic() the Plots module's vtkSlicerPlotsLogic; nodes[role] are load_results' nodes.
MODULE_RECEIVERS = {"slicer.mrmlScene": "vtkMRMLScene", "slicer.app.applicationLogic()": "vtkSlicerApplicationLogic",
                    "slicer.modules.plots.logic()": "vtkSlicerPlotsLogic"}
NOT_MRML = ("qt.", "ctk.", "slicer.util.", "self.")  # Qt, CTK, slicer.util (checked in test_slicer_module), own code


def _vtk_overloads(cls, method):
    """[(least, most) positional arguments, return class name] of each overload, from the VTK wrapper's docstring."""
    doc = getattr(cls, method).__doc__ or ""
    overloads = []
    for parameters, returned in re.findall(rf"^{method}\(self(.*?)\) -> (\w+)", doc, re.M):
        parameters = [p for p in parameters.split(",") if p.strip()]
        optional = sum("=" in p for p in parameters)
        overloads.append(((len(parameters) - optional, len(parameters)), returned))
    return overloads


def test_the_module_calls_mrml_methods_that_exist_with_arguments_that_fit(results, scene):
    """The module's calls (DTISynth.py, its panels in DTISynthWidgets, the results display) into MRML nodes, the scene and Slicer's logic classes, against slicer-core's real
    classes: the receiver's class comes from the node load_results makes (nodes[role]) or from how the module
    reaches it (MODULE_RECEIVERS), chains follow the wrapped methods' return classes, and each method must
    exist and take the number of arguments given; class constants the module reads must exist."""
    import ast
    from pathlib import Path

    nodes = adapter.load_results(scene, results / "synthetic", results / "evaluation", name="sub-001")
    repo = Path(__file__).resolve().parents[2]
    files = [repo / "DTISynth" / "DTISynth.py", *sorted((repo / "DTISynth" / "DTISynthWidgets").glob("*.py")),
             repo / "DTISynthLib" / "slicer" / "results_display.py"]
    module = ast.Module(body=[ast.parse(path.read_text()) for path in files], type_ignores=[])

    def class_of(expression):
        text = ast.unparse(expression)
        if text in MODULE_RECEIVERS:
            return getattr(slicer, MODULE_RECEIVERS[text])
        if isinstance(expression, ast.Subscript) and ast.unparse(expression.value) == "nodes":
            return type(nodes[ast.literal_eval(expression.slice)])
        if isinstance(expression, ast.Call) and isinstance(expression.func, ast.Attribute):
            owner = class_of(expression.func.value)
            if owner is not None:
                returned = {r for _, r in _vtk_overloads(owner, expression.func.attr)}
                assert len(returned) == 1, text
                return getattr(slicer, returned.pop(), None) or getattr(vtk, returned.pop(), None)
        return None

    checked = []
    for call in ast.walk(module):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr[:1].isupper()):
            continue
        receiver = ast.unparse(call.func.value)
        if receiver in ("qt", "ctk", "slicer.util") or receiver.startswith(NOT_MRML):
            continue
        owner = class_of(call.func.value)
        assert owner is not None, f"{ast.unparse(call)}: receiver of unknown class (add it to MODULE_RECEIVERS)"
        assert hasattr(owner, call.func.attr), f"{owner.__name__} has no {call.func.attr}"
        count = len(call.args)
        spans = [span for span, _ in _vtk_overloads(owner, call.func.attr)]
        assert any(low <= count <= high for low, high in spans), f"{ast.unparse(call)}: {owner.__name__} takes {spans}"
        checked.append(f"{owner.__name__}.{call.func.attr}")
    assert {"vtkMRMLScene.GetFirstNodeByClass", "vtkMRMLDisplayNode.SetVisibility",
            "vtkMRMLSelectionNode.SetActiveTableID", "vtkSlicerApplicationLogic.PropagateTableSelection",
            "vtkSlicerPlotsLogic.ShowChartInLayout"} <= set(checked)
    constants = [a for a in ast.walk(module) if isinstance(a, ast.Attribute) and a.attr[:1].isupper()
                 and re.fullmatch(r"slicer\.(mrmlScene|vtkMRML\w+)", ast.unparse(a.value))]
    assert constants, "the module reads no MRML constant"
    for constant in constants:
        owner = class_of(constant.value) or getattr(slicer, constant.value.attr)
        assert hasattr(owner, constant.attr), ast.unparse(constant)
