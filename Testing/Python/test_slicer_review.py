"""The Slicer review logic under slicer-core: a reader's cases in two linked slice views with one
display and neutral names, answers through the study's store, resume, and the analysis as a table."""

import sqlite3

import numpy as np
import pytest
from conftest import write_noisier_synthetic_cohort

from DTISynthLib.core.errors import InputError
from DTISynthLib.core.output_layout import StudyFolder
from DTISynthLib.review.store import StudyStore
from DTISynthLib.review.study import DISPLAY_WINDOWS, create_study
from DTISynthLib.slicer.review_session import NODE_NAMES, ReviewSession, token_from_link

slicer = pytest.importorskip("slicer")


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("slicer_review")
    tokens = create_study(*write_noisier_synthetic_cohort(root, 1, noise=0.05), root / "study",
                          maps=["color", "fa", "md"], readers="ann", seed=2)
    return root / "study", tokens["ann"]


@pytest.fixture
def scene():
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    scene.AddNode(slicer.vtkMRMLLayoutNode())
    return scene


def test_a_reader_reviews_in_linked_views_with_one_display_and_neutral_names(study_folder, scene):
    folder, token = study_folder
    with pytest.raises(InputError, match="unknown token"):
        ReviewSession(scene, folder, "http://127.0.0.1:8765/r/forged")
    assert token_from_link(f"http://127.0.0.1:8765/r/{token}/") == token
    session = ReviewSession(scene, folder, f"http://127.0.0.1:8765/r/{token}")
    store = StudyStore(folder)
    synthetic_images = {c["synthetic_image"] for c in store.cases()}
    answered_synthetic = []
    shown = session.show_next()
    while shown is not None:
        assert session.progress_text() == f"Case {shown.position} of 3"
        with sqlite3.connect(StudyFolder(folder).database) as db:  # its clock runs from when it is in the views
            assert db.execute("SELECT shown_at FROM presentations WHERE position = ?", (shown.position,)).fetchone()[0]
        volumes = [scene.GetNthNodeByClass(k, "vtkMRMLVolumeNode")
                   for k in range(scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode"))]
        assert sorted(v.GetName() for v in volumes) == sorted(NODE_NAMES.values())  # the previous case's are gone
        names = " ".join(scene.GetNthNode(k).GetName() or "" for k in range(scene.GetNumberOfNodes())).lower()
        assert "synth" not in names and "orig" not in names
        composites = {scene.GetNthNodeByClass(k, "vtkMRMLSliceCompositeNode").GetLayoutName():
                      scene.GetNthNodeByClass(k, "vtkMRMLSliceCompositeNode")
                      for k in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))}
        left, right = (scene.GetNodeByID(composites[v].GetBackgroundVolumeID()) for v in ("Red", "Yellow"))
        assert (left.GetName(), right.GetName()) == (NODE_NAMES["left"], NODE_NAMES["right"])
        assert composites["Red"].GetLinkedControl() and composites["Yellow"].GetLinkedControl()
        slices = [scene.GetNthNodeByClass(k, "vtkMRMLSliceNode")
                  for k in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode"))]
        assert sorted((n.GetLayoutName(), n.GetOrientationString()) for n in slices) == [("Red", "Axial"),
                                                                                         ("Yellow", "Axial")]
        arrays = [slicer.util.arrayFromVolume(n) for n in (left, right)]
        assert arrays[0].shape == arrays[1].shape and not np.array_equal(arrays[0], arrays[1])
        if shown.map != "color":
            displays = [n.GetDisplayNode() for n in (left, right)]
            assert [(d.GetWindow(), d.GetLevel(), d.GetAutoWindowLevel(), d.GetColorNodeID()) for d in displays][0] \
                == [(d.GetWindow(), d.GetLevel(), d.GetAutoWindowLevel(), d.GetColorNodeID()) for d in displays][1]
            low, high = DISPLAY_WINDOWS[shown.map]
            assert displays[0].GetWindow() == pytest.approx(high - low) and not displays[0].GetAutoWindowLevel()
        choice = "left" if shown.position % 2 else "right"
        answered_synthetic.append(getattr(shown, f"{choice}_image") in synthetic_images)
        if shown.position == 2:  # stop and resume in a new session: it goes on at case 2... after answering it
            session = ReviewSession(scene, folder, token)
            assert session.show_next().position == 2
        shown = session.answer(choice, confidence=shown.position)
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    assert layout.GetViewArrangement() == layout.SlicerLayoutSideBySideView
    assert session.progress_text() == "Done: 3 of 3"
    answers = store.unblinded_answers()
    assert [(a["position"], a["choice"], a["confidence"]) for a in answers] == [(1, "left", 1), (2, "right", 2),
                                                                              (3, "left", 3)]
    assert [a["synthetic_chosen"] for a in answers] == answered_synthetic
    with pytest.raises(InputError, match="none"):
        session.answer("left", 3)


def test_the_analysis_comes_into_slicer_as_tables(study_folder, scene, tmp_path):
    from DTISynthLib.review.analysis import write_analysis
    from DTISynthLib.slicer.mrml_adapter import load_review_analysis

    folder, token = study_folder
    store = StudyStore(folder)
    reader = store.reader_for_token(token)
    for position in range(store.next_position(reader) or 4, 4):
        store.mark_shown(reader, position)
        store.answer(reader, position, "left", 3)
    tables = write_analysis(store, tmp_path / "analysis")
    nodes = load_review_analysis(scene, tmp_path / "analysis")
    noisier = nodes["noisier"].GetTable()
    assert noisier.GetNumberOfRows() == len(tables["noisier"]) == 4  # color, fa, md, pooled
    pooled = {noisier.GetColumn(c).GetName(): noisier.GetColumn(c).GetValue(3) for c in range(noisier.GetNumberOfColumns())}
    assert pooled["map"] == "pooled" and pooled["answers"] == 3
    assert pooled["synthetic_noisier"] == tables["noisier"][-1]["synthetic_noisier"]
    assert nodes["readers"].GetTable().GetNumberOfRows() == 1
    assert nodes["by_confidence"].GetTable().GetNumberOfRows() == 5  # confidence 1-5
    sides = nodes["sides"].GetTable()  # the reader, then pooled; the side-bias columns
    assert sides.GetNumberOfRows() == 2 and "p_side_bias" in {sides.GetColumn(c).GetName()
                                                              for c in range(sides.GetNumberOfColumns())}


def test_the_review_leaves_the_users_volumes_and_view_links_as_it_found_them(scene, tmp_path):
    from DTISynthLib.slicer.mrml_adapter import add_scalar_volume

    mine = add_scalar_volume(scene, NODE_NAMES["left"], np.zeros((4, 4, 4), np.float32), np.eye(4))  # the user's
    folder = tmp_path / "study"
    token = create_study(*write_noisier_synthetic_cohort(tmp_path, 1, noise=0.05), folder, maps=["fa", "md"],
                         readers="ann", seed=2)["ann"]
    session = ReviewSession(scene, folder, token)
    composites = {}
    for view in ("Red", "Yellow"):
        composites[view] = session._view_node("vtkMRMLSliceCompositeNode", view)
        composites[view].SetLinkedControl(0)  # the user's views were not linked
    shown = session.show_next()
    assert shown is not None and all(c.GetLinkedControl() for c in composites.values())
    while shown is not None:
        shown = session.answer("left", 3)
    names = [scene.GetNthNodeByClass(k, "vtkMRMLVolumeNode").GetName()
             for k in range(scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode"))]
    assert names == [NODE_NAMES["left"]] and scene.GetNodeByID(mine.GetID()) is mine  # only the review's went
    assert [c.GetLinkedControl() for c in composites.values()] == [0, 0]  # the links restored when done
