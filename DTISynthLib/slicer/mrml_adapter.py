"""The one MRML adapter: DTISynth arrays and result folders -> Slicer nodes, in real Slicer or with
slicer-core (no Qt). Every Slicer tool then works on them: slice views, tensor glyphs, tables,
plots, segment statistics.

Frames: our arrays are (x, y, z[, ...]) with voxel -> RAS affines; Slicer arrays are (k, j, i[, ...])
with IJKToRAS matrices, so volumes are transposed here and nowhere else. DWI gradients and tensors
are RAS, so their measurement frames are the identity (measurement frame -> RAS).
"""

import csv
from pathlib import Path

import numpy as np

from ..core.atomic import make_output_dir, remove_empty_folders
from ..core.errors import InputError
from ..core.orientation_confidence import CONFIDENT, confident_color_fa
from ..core.output_layout import EvaluationOutput, ReviewAnalysisOutput, SynthesisOutput

# (lower, upper) display window per map, in the map's stored unit (mm^2/s for diffusivities)
WINDOWS = {"fa": (0.0, 1.0), "md": (0.0, 2.0e-3), "ad": (0.0, 2.5e-3), "rd": (0.0, 2.0e-3)}
MAPS = ("fa", "md", "ad", "rd", "color")  # the maps loaded as nodes


SLICER_CORE = "slicer-core==5.13.31053.0"  # the extra `scene` of pyproject.toml


def _slicer():
    """Slicer's MRML Python modules (inside Slicer, or from the PyPI package slicer-core elsewhere); a clear
    error naming the extra to install when they are missing or the unrelated PyPI package "slicer" took
    their name."""
    try:
        import slicer
        import vtk
    except ImportError:
        slicer = None
    if slicer is None or not hasattr(slicer, "vtkMRMLScene"):
        found = "no slicer-core in this Python" if slicer is None else "the unrelated PyPI package 'slicer'"
        raise InputError("Slicer scene", f"Slicer's MRML classes: pip install 'dtisynth[scene]' (or {SLICER_CORE})",
                         found)
    return slicer, vtk


def _ijk_to_ras(affine):
    slicer, _ = _slicer()
    return slicer.util.vtkMatrixFromArray(np.asarray(affine, np.float64))


def _identity():
    _, vtk = _slicer()
    matrix = vtk.vtkMatrix4x4()
    matrix.Identity()
    return matrix


def _image_data(array_xyz_c, dtype=np.float32):
    """vtkImageData of an (x, y, z, c) array (x fastest in memory, as VTK wants)."""
    _, vtk = _slicer()
    from vtk.util import numpy_support

    array = np.asarray(array_xyz_c, dtype)
    image = vtk.vtkImageData()
    image.SetDimensions(*array.shape[:3])
    flat = np.ascontiguousarray(np.transpose(array, (2, 1, 0, 3))).reshape(-1, array.shape[3])
    scalars = numpy_support.numpy_to_vtk(flat, deep=True)
    return image, scalars


def add_scalar_volume(scene, name, volume, affine, window=None, labelmap=False):
    """A scalar (or label map) volume node from an (x, y, z) array; `window` (lower, upper) fixes W/L."""
    slicer, _ = _slicer()
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode", name)
    array = np.asarray(volume, np.uint8 if labelmap else np.float32)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    node.SetIJKToRASMatrix(_ijk_to_ras(affine))
    node.CreateDefaultDisplayNodes()
    if window is not None and not labelmap:
        display = node.GetDisplayNode()
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(*window)
    return node


def add_color_volume(scene, name, rgb, affine):
    """Colour FA (x, y, z, 3) in [0, 1] as an RGB vector volume (uint8)."""
    slicer, _ = _slicer()
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", name)
    array = np.clip(np.round(np.asarray(rgb) * 255), 0, 255).astype(np.uint8)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(np.transpose(array, (2, 1, 0, 3))))
    node.SetIJKToRASMatrix(_ijk_to_ras(affine))
    node.CreateDefaultDisplayNodes()
    return node


def add_dwi_volume(scene, name, dwi):
    """A vtkMRMLDiffusionWeightedVolumeNode: data, b-values, RAS gradients, identity measurement frame."""
    image, scalars = _image_data(dwi.data)
    image.GetPointData().SetScalars(scalars)
    node = scene.AddNewNodeByClass("vtkMRMLDiffusionWeightedVolumeNode", name)
    node.SetNumberOfGradients(len(dwi.bvals))
    for i, (b, g) in enumerate(zip(dwi.bvals, dwi.gradients)):
        node.SetDiffusionGradient(i, [float(v) for v in g])
        node.SetBValue(i, float(b))
    node.SetMeasurementFrameMatrix(_identity())
    node.SetIJKToRASMatrix(_ijk_to_ras(dwi.affine))
    node.SetAndObserveImageData(image)
    node.CreateDefaultDisplayNodes()
    return node


def add_phantom_subject(scene, name="DTISynthPhantom"):
    """Simulate a brain-phantom subject (a few seconds) and add its 3-direction DWI and its 6-direction
    DTI to `scene`; returns the two nodes (Sample Data's DTISynth entry)."""
    from ..core.dwi import check_dwi
    from ..simulation.cohort import draw_subject, simulate_subject

    subject = simulate_subject(draw_subject("sub-001", 0), "sampled")
    return [add_dwi_volume(scene, f"{name} 3-direction DWI", check_dwi(subject.dwi)),
            add_dwi_volume(scene, f"{name} acquired DTI", check_dwi(subject.dti))]


def add_tensor_volume(scene, name, tensor6, affine):
    """A vtkMRMLDiffusionTensorVolumeNode from (x, y, z, 6) tensors (Dxx, Dyy, Dzz, Dxy, Dxz, Dyz;
    mm^2/s; RAS) with its default display nodes, so glyphs and colour work."""
    from ..core.tensor_layout import tensor6_to_matrix

    matrices = tensor6_to_matrix(np.asarray(tensor6, np.float64)).reshape(np.asarray(tensor6).shape[:3] + (9,))
    image, tensors = _image_data(matrices)
    tensors.SetName("tensors")
    image.GetPointData().SetTensors(tensors)
    node = scene.AddNewNodeByClass("vtkMRMLDiffusionTensorVolumeNode", name)
    node.SetMeasurementFrameMatrix(_identity())
    node.SetIJKToRASMatrix(_ijk_to_ras(affine))
    node.SetAndObserveImageData(image)
    node.CreateDefaultDisplayNodes()
    return node


def add_segmentation(scene, name, labels, affine, roi_names):
    """A segmentation node with one segment per ROI (label k -> roi_names[k - 1]), from a label array."""
    slicer, _ = _slicer()
    labelmap = add_scalar_volume(scene, f"{name} labels", labels, affine, labelmap=True)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(labelmap)
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    if not np.any(labels):  # every ROI empty (flagged in the tables): an empty segmentation
        scene.RemoveNode(labelmap)
        segmentation.CreateDefaultDisplayNodes()
        return segmentation
    if not logic.ImportLabelmapToSegmentationNode(labelmap, segmentation):
        raise RuntimeError(f"Slicer could not import the ROI labels into {name}")
    present = sorted(int(v) for v in np.unique(labels) if v > 0)
    segments = segmentation.GetSegmentation()
    for index, label in enumerate(present):
        segments.GetNthSegment(index).SetName(roi_names[label - 1])
    scene.RemoveNode(labelmap)
    segmentation.CreateDefaultDisplayNodes()
    return segmentation


def add_table(scene, name, rows, columns):
    """A vtkMRMLTableNode: numeric columns as doubles (NaN where empty), the others as strings."""
    _, vtk = _slicer()
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = node.GetTable()
    numeric = {c: all(_is_number(r[c]) for r in rows) for c in columns}
    for column in columns:
        array = vtk.vtkDoubleArray() if numeric[column] else vtk.vtkStringArray()
        array.SetName(column)
        for row in rows:
            value = row[column]
            array.InsertNextValue(float(value) if numeric[column] and value != "" else
                                  (float("nan") if numeric[column] else str(value)))
        table.AddColumn(array)
    node.Modified()
    return node


def _is_number(text):
    if text == "" or text is None:
        return True
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


RESULT_ROLE, RESULT_NAME = "DTISynth.role", "DTISynth.result"  # node attributes of load_results' nodes
BLAND_ALTMAN_COLORS = {"ROI means": (0.12, 0.47, 0.71), "bias": (0.84, 0.15, 0.16), "lower limit": (1.0, 0.5, 0.05),
                       "upper limit": (1.0, 0.5, 0.05)}  # RGB 0-1: points blue, bias red, 95 % limits orange


def add_bland_altman_chart(scene, name, agreement_row):
    """A Bland-Altman plot chart: scatter of (mean, difference) and lines for bias and 95 % limits."""
    means, diffs = agreement_row["means"], agreement_row["differences"]
    low, high = (min(means), max(means)) if means else (0.0, 1.0)
    rows = [{"mean": m, "difference": d} for m, d in zip(means, diffs)]
    points = add_table(scene, f"{name} points", rows, ["mean", "difference"])
    lines = add_table(scene, f"{name} lines", [
        {"x": x, "bias": agreement_row["bias"], "lower": agreement_row["lower"], "upper": agreement_row["upper"]}
        for x in (low, high)], ["x", "bias", "lower", "upper"])
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    series = []
    for label, table, x, y, style in (("ROI means", points, "mean", "difference", "scatter"),
                                      ("bias", lines, "x", "bias", "line"), ("lower limit", lines, "x", "lower", "line"),
                                      ("upper limit", lines, "x", "upper", "line")):
        node = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} {label}")
        node.SetColor(*BLAND_ALTMAN_COLORS[label])  # a new series node is black: every series looked alike
        node.SetAndObserveTableNodeID(table.GetID())
        node.SetXColumnName(x)
        node.SetYColumnName(y)
        node.SetPlotType(node.PlotTypeScatter)
        if style == "line":
            node.SetMarkerStyle(node.MarkerStyleNone)
            node.SetLineStyle(node.LineStyleDash if "limit" in label else node.LineStyleSolid)
        else:
            node.SetLineStyle(node.LineStyleNone)
        chart.AddAndObservePlotSeriesNodeID(node.GetID())
        series.append(node)
    unit = agreement_row["unit"]
    chart.SetTitle(f"Bland-Altman {agreement_row['map'].upper()} ({agreement_row['roi']})")
    chart.SetXAxisTitle(f"mean of original and synthetic ({unit})")
    chart.SetYAxisTitle(f"synthetic - original ({unit})")
    return chart, [points, lines] + series


def _node_affine(node):
    _, vtk = _slicer()
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def add_dwi_file(scene, path, bval=None, bvec=None, name=None):
    """A DWI node of a DWI file as DTISynth reads it (io.files.load_dwi: NIfTI with FSL bval / bvec, their
    default beside it; NRRD; a DICOM folder): what the synthesis of that file sees, gradients in RAS
    (FSL's voxel-frame bvecs turned by the reader). Bad files raise InputError naming them."""
    from ..io.files import load_dwi

    path = Path(path)
    return add_dwi_volume(scene, name or path.name.split(".")[0], load_dwi(path, bval or None, bvec or None))


def dwi_from_node(node):
    """A DWI (x, y, z, n) with RAS gradients from a vtkMRMLDiffusionWeightedVolumeNode (its gradients
    are in its measurement frame: turned to RAS here)."""
    slicer, vtk = _slicer()

    from ..core.dwi import DWI

    frame = vtk.vtkMatrix4x4()
    node.GetMeasurementFrameMatrix(frame)
    to_ras = np.array([[frame.GetElement(r, c) for c in range(3)] for r in range(3)])
    n = node.GetNumberOfGradients()
    gradients = np.array([node.GetDiffusionGradient(i) for i in range(n)], np.float64) @ to_ras.T
    bvals = np.array([node.GetBValue(i) for i in range(n)], np.float64)
    data = np.transpose(slicer.util.arrayFromVolume(node), (2, 1, 0, 3)).astype(np.float32)
    return DWI(np.ascontiguousarray(data), _node_affine(node), bvals, gradients, f"<Slicer node {node.GetName()}>")


def dwi_from_sequence(sequence, bval_path, bvec_path):
    """A DWI from a vtkMRMLSequenceNode of scalar volumes (a 4D volume loaded as a sequence) and FSL
    bval / bvec files (bvecs in the image frame of those volumes, as FSL writes them)."""
    from ..core.dwi import DWI
    from ..io.nifti import read_fsl_gradients

    volumes = [sequence.GetNthDataNode(i) for i in range(sequence.GetNumberOfDataNodes())]
    if not volumes or not all(v.IsA("vtkMRMLScalarVolumeNode") for v in volumes):
        raise InputError(sequence.GetName(), "a sequence of scalar volumes (a 4D DWI)",
                         f"{len(volumes)} items of {sorted({v.GetClassName() for v in volumes})}")
    arrays = [volume_from_node(v) for v in volumes]
    affine = arrays[0][1]
    if any(a.shape != arrays[0][0].shape or not np.allclose(m, affine, atol=1e-4) for a, m in arrays):
        raise InputError(sequence.GetName(), "volumes on one grid", "volumes of different geometry")
    bvals, gradients = read_fsl_gradients(bval_path, bvec_path, len(arrays), affine)
    data = np.stack([a for a, _ in arrays], axis=-1)
    return DWI(data, affine, bvals, gradients, f"<Slicer sequence {sequence.GetName()}>")


def volume_from_node(node):
    """(x, y, z) float32 array and voxel -> RAS affine of a scalar volume node."""
    slicer, _ = _slicer()
    data = np.transpose(slicer.util.arrayFromVolume(node), (2, 1, 0)).astype(np.float32)
    return np.ascontiguousarray(data), _node_affine(node)


def _require_output(folder, marker, what):
    if not Path(folder).is_dir():
        raise InputError(folder, what, "no such folder")
    if not Path(marker).is_file():
        raise InputError(folder, f"{what} (with {Path(marker).name})", f"no {Path(marker).name} in it")


def load_results(scene, synthesis_dir, evaluation_dir=None, name="DTISynth", subject=None):
    """Load a `dtisynth synthesize` folder (and optionally an `evaluate` folder) into `scene`, all
    nodes in one subject-hierarchy folder. Returns {role: node}."""
    import json

    slicer, _ = _slicer()

    from ..core.dwi import check_dwi
    from ..io.files import load_dwi, load_tensor
    from ..io.nifti import read_nifti

    synthesis = SynthesisOutput(synthesis_dir)
    _require_output(synthesis_dir, synthesis.dti_nifti, "a `dtisynth synthesize` output folder")
    if evaluation_dir is not None:
        _require_output(evaluation_dir, EvaluationOutput(evaluation_dir).summary, "a `dtisynth evaluate` output folder")
    nodes = {}
    dwi = check_dwi(load_dwi(synthesis.dti_nifti))
    nodes["dwi"] = add_dwi_volume(scene, f"{name} synthetic DWI", dwi)
    tensor, affine = load_tensor(synthesis.maps.tensor)
    nodes["tensor"] = add_tensor_volume(scene, f"{name} synthetic DTI", tensor, affine)
    volumes = {}
    for key in MAPS:
        volumes[key], map_affine = read_nifti(synthesis.maps.map(key))
        nodes[key] = add_color_volume(scene, f"{name} colour FA", volumes[key], map_affine) if key == "color" else \
            add_scalar_volume(scene, f"{name} {key.upper()}", volumes[key], map_affine, WINDOWS[key])
    if synthesis.maps.map("v1_confidence").exists():  # kinds that classify the off-diagonal signs
        confidence, map_affine = read_nifti(synthesis.maps.map("v1_confidence"))
        nodes["v1_confidence"] = add_scalar_volume(scene, f"{name} V1 confidence", confidence, map_affine, (0.0, 1.0))
        nodes["color_confident"] = add_color_volume(
            scene, f"{name} colour FA, confident orientation only (V1 confidence >= {CONFIDENT:g})",
            confident_color_fa(volumes["color"], volumes["fa"], confidence), map_affine)
    if synthesis.maps.map("md_uncertainty").exists():  # a skewed triple: MD depends on the guessed signs
        uncertainty, map_affine = read_nifti(synthesis.maps.map("md_uncertainty"))
        nodes["md_uncertainty"] = add_scalar_volume(scene, f"{name} MD uncertainty (relative SD)", uncertainty,
                                                    map_affine, (0.0, 0.1))
    if evaluation_dir is not None:
        evaluation = EvaluationOutput(evaluation_dir)
        summary = json.loads(evaluation.summary.read_text())
        subject = subject or summary["subjects"][0]
        labels, label_affine = read_nifti(evaluation.folder / summary["subject_reports"][subject]["rois"])
        nodes["rois"] = add_segmentation(scene, f"{name} ROIs", labels.astype(np.uint8), label_affine, summary["rois"])
        with open(evaluation.roi_comparison, newline="") as f:
            rows = list(csv.DictReader(f))
        nodes["table"] = add_table(scene, f"{name} ROI statistics", rows, list(rows[0]))
        for key, path, title in (("realism_index", evaluation.realism_index, "realism index"),
                                 ("v1_calibration", evaluation.v1_calibration, "V1 confidence calibration")):
            if path.exists():
                with open(path, newline="") as f:
                    rows = list(csv.DictReader(f))
                nodes[key] = add_table(scene, f"{name} {title}", rows, list(rows[0]))
        pooled = [r for r in summary["bland_altman"] if r["roi"] == "all ROIs"]
        for row in pooled:
            chart, helpers = add_bland_altman_chart(scene, f"{name} Bland-Altman {row['map'].upper()}",
                                                    {k: (float("nan") if v is None else v) for k, v in row.items()})
            nodes[f"bland_altman_{row['map']}"] = chart
            for helper in helpers:
                nodes[f"bland_altman_{row['map']}_{helper.GetName()}"] = helper
    reliability = json.loads(synthesis.report.read_text()).get("reliability")  # synthesis.reliability's lines
    if reliability:
        nodes["reliability"] = scene.AddNewNodeByClass("vtkMRMLTextNode", f"{name} reliability")
        nodes["reliability"].SetText("\n".join(reliability))
    for role, node in nodes.items():  # found again in a reopened scene (find_results)
        node.SetAttribute(RESULT_ROLE, role)
        node.SetAttribute(RESULT_NAME, name)
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    folder = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), name)
    for node in nodes.values():
        item = hierarchy.GetItemByDataNode(node)  # real Slicer adds items itself; slicer-core does not
        if item:
            hierarchy.SetItemParent(item, folder)
        else:
            hierarchy.CreateItem(folder, node)
    return nodes


def find_results(scene):
    """{role: node} of the last result load_results put in `scene` (by the node attributes it sets, which
    a saved scene keeps): the Results section of a reopened scene. {} when there is none."""
    found = {}
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        role, name = node.GetAttribute(RESULT_ROLE), node.GetAttribute(RESULT_NAME)
        if role and name:
            found.setdefault(name, {})[role] = node
    return list(found.values())[-1] if found else {}


def load_review_analysis(scene, analysis_dir, name="Noise review"):
    """Table nodes of a `dtisynth review analyze` output: {"noisier", "readers", "agreement", "by_confidence",
    "sides": node} ("sides" where the analysis has it: those before 2026-12-07 do not)."""
    layout = ReviewAnalysisOutput(analysis_dir)
    nodes = {}
    for key, path, title in (("noisier", layout.noisier, "synthetic judged noisier"),
                             ("readers", layout.readers, "readers"), ("agreement", layout.agreement, "agreement"),
                             ("by_confidence", layout.by_confidence, "by confidence"), ("sides", layout.sides, "sides")):
        if key == "sides" and not path.exists():
            continue
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        columns = list(rows[0]) if rows else []
        nodes[key] = add_table(scene, f"{name}: {title}", rows, columns)
    return nodes


def write_scene_bundle(synthesis_dir, out_path, evaluation_dir=None, name="DTISynth"):
    """A Slicer scene bundle (.mrb) holding load_results' nodes, written atomically."""
    import os
    import tempfile

    slicer, _ = _slicer()
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".mrb":
        raise InputError(out_path, "a scene file name ending in .mrb", f"{out_path.name!r}")
    if out_path.is_dir():
        raise InputError(out_path, "a scene file name (.mrb)", "an existing folder")
    scene = slicer.vtkMRMLScene()
    previous, slicer.mrmlScene = getattr(slicer, "mrmlScene", None), scene
    try:
        nodes = load_results(scene, synthesis_dir, evaluation_dir, name)
        for node in nodes.values():
            if node.IsA("vtkMRMLStorableNode") and node.GetStorageNode() is None:
                node.AddDefaultStorageNode()
        created = make_output_dir(out_path.parent)
        # no leading dot: Slicer names the bundle's scene file after the stem
        fd, tmp = tempfile.mkstemp(prefix=f"{out_path.stem}-partial-", suffix=".mrb", dir=out_path.parent)
        os.close(fd)
        try:
            if not scene.WriteToMRB(tmp):
                raise InputError(out_path, "room to write the scene bundle", "Slicer could not write it (is the disk full?)")
            os.replace(tmp, out_path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
                remove_empty_folders(created)
    finally:
        slicer.mrmlScene = previous
    return out_path, sorted(nodes)
