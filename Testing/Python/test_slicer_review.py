"""The Slicer review logic under slicer-core: a reader's cases in two linked slice views with one
display and neutral names, everything through the study's server with the reader's link (the reader's
process never opens the store), resume, and the analysis as a table."""

import os
import signal
import sqlite3
import stat

import numpy as np
import pytest
from conftest import ReviewServer, free_port, write_noisier_synthetic_cohort

from DTISynthLib.core.errors import InputError
from DTISynthLib.core.output_layout import StudyFolder
from DTISynthLib.review.client import parse_reader_link
from DTISynthLib.review.store import StudyStore
from DTISynthLib.review.study import DISPLAY_WINDOWS, create_study
from DTISynthLib.slicer.review_session import NODE_NAMES, ReviewSession

slicer = pytest.importorskip("slicer")


@pytest.fixture(scope="module")
def served_study(tmp_path_factory):
    """A study of one subject (colour FA, FA, MD; reader ann, one practice case) served by `dtisynth review
    serve` in a child process: (folder, ann's link, server)."""
    root = tmp_path_factory.mktemp("slicer_review")
    port = free_port()
    tokens = create_study(*write_noisier_synthetic_cohort(root, 1, noise=0.05), root / "study",
                          maps=["color", "fa", "md"], readers="ann", seed=2, training=1, address=("127.0.0.1", port))
    server = ReviewServer(root / "study", port)
    yield root / "study", f"{server.base}/r/{tokens['ann']}", server
    server.kill(signal.SIGTERM)


@pytest.fixture
def scene():
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    scene.AddNode(slicer.vtkMRMLLayoutNode())
    return scene


def test_a_reader_reviews_through_the_server_in_linked_views_with_one_display_and_neutral_names(
        served_study, scene, monkeypatch):
    folder, link, server = served_study
    store = StudyStore(folder)
    synthetic_images = {c["synthetic_image"] for c in store.cases(practice=True)}
    reader = store.reader_for_token(parse_reader_link(link)[1])
    assert stat.S_IMODE(os.stat(StudyFolder(folder).database).st_mode) == 0o600  # the organiser's alone
    real_connect = sqlite3.connect
    opened = []
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: opened.append(a) or real_connect(*a, **k))
    for wrong, said in ((f"{server.base}/r/forged", "not valid"), (parse_reader_link(link)[1], "http://HOST:PORT"),
                        (f"http://127.0.0.1:{free_port()}/r/x", "server running")):
        with pytest.raises(InputError, match=said):
            ReviewSession(scene, wrong)
    session = ReviewSession(scene, link + "/")
    answered_synthetic = []
    shown = session.show_next()
    while shown is not None:
        label = "Practice case 1 of 1" if shown.training else (
            "Practice is over: the study's cases begin (these are analysed). Case 1 of 3" if shown.number == 1
            else f"Case {shown.number} of 3")
        assert session.progress_text() == label
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
        if shown.position == 3:  # stop and resume in a new session: it goes on at the same case
            session = ReviewSession(scene, link)
            assert session.show_next().position == 3
        if shown.position < 4:  # the server's refusal, as the store words it
            with pytest.raises(InputError, match=f"^answer: expected case {shown.position + 1} shown .* never shown"):
                session.client.answer(shown.position + 1, "left", 3)
        shown = session.answer(choice, confidence=shown.position)
    assert opened == []  # the reader's process never opened the store
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    assert layout.GetViewArrangement() == layout.SlicerLayoutSideBySideView
    assert session.progress_text() == "Done: 3 of 3"
    answers = store.unblinded_answers(training=True)
    assert [(a["position"], a["choice"], a["confidence"], a["training"]) for a in answers] == [
        (1, "left", 1, True), (2, "right", 2, False), (3, "left", 3, False), (4, "right", 4, False)]
    assert [a["synthetic_chosen"] for a in answers] == answered_synthetic
    assert store.progress(reader) == (3, 3)  # saved under this reader's name, as the organiser's store says
    with pytest.raises(InputError, match="none"):
        session.answer("left", 3)


def test_the_analysis_comes_into_slicer_as_tables(scene, tmp_path):
    from DTISynthLib.review.analysis import write_analysis
    from DTISynthLib.slicer.mrml_adapter import load_review_analysis

    folder = tmp_path / "study"
    token = create_study(*write_noisier_synthetic_cohort(tmp_path, 1, noise=0.05), folder, maps=["color", "fa", "md"],
                         readers="ann", seed=2)["ann"]
    store = StudyStore(folder)
    reader = store.reader_for_token(token)
    for position in range(1, 4):
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
    folder, port = tmp_path / "study", free_port()
    token = create_study(*write_noisier_synthetic_cohort(tmp_path, 1, noise=0.05), folder, maps=["fa", "md"],
                         readers="ann", seed=2, address=("127.0.0.1", port))["ann"]
    server = ReviewServer(folder, port)
    session = ReviewSession(scene, f"{server.base}/r/{token}")
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
    server.kill(signal.SIGTERM)


def test_the_slicer_review_shows_the_study_as_the_browser_does_and_pauses_off_the_clock(scene, tmp_path):
    """The study's display protocol (Slicer interpolates and stays radiological by default: answers from
    Slicer and the browser were not comparable), each case fitted to the views, and a Pause that hides
    both images and keeps its time out of the reading time."""
    import time

    folder, port = tmp_path / "study", free_port()
    token = create_study(*write_noisier_synthetic_cohort(tmp_path, 1, noise=0.05), folder, maps=["fa", "color"],
                         readers="ann", seed=2, orientation="neurological", address=("127.0.0.1", port))["ann"]
    server = ReviewServer(folder, port)
    fitted = []
    session = ReviewSession(scene, f"{server.base}/r/{token}", fit_views=lambda: fitted.append(session.shown))
    shown = session.show_next()
    assert fitted == [shown]  # fitted once the case is in the views
    for side in ("left", "right"):
        assert session.nodes[side].GetDisplayNode().GetInterpolate() == 0  # nearest neighbour, as the study says
    slices = [scene.GetNthNodeByClass(k, "vtkMRMLSliceNode") for k in range(scene.GetNumberOfNodesByClass(
        "vtkMRMLSliceNode"))]
    for node in slices:  # neurological: the patient's left on the screen's left (x not mirrored)
        assert node.GetOrientationString() == "Axial neurological"
        assert node.GetXYToRAS().GetElement(0, 0) > 0
    session.pause()
    composites = [scene.GetNthNodeByClass(k, "vtkMRMLSliceCompositeNode") for k in range(2)]
    assert [c.GetBackgroundVolumeID() for c in composites] == [None, None]  # hidden while paused
    with pytest.raises(InputError, match="resumed before answering"):
        session.answer("left", 3)
    time.sleep(1.2)
    session.resume()
    assert sorted(c.GetBackgroundVolumeID() for c in composites) == sorted(n.GetID() for n in session.nodes.values())
    session.answer("left", 3)
    assert [case.position for case in fitted] == [1, 2]
    (answer,) = StudyStore(folder).unblinded_answers()
    assert answer["position"] == shown.position and answer["paused_seconds"] >= 1.2
    server.kill(signal.SIGTERM)
