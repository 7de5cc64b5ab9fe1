"""The review page end to end: the real server (uvicorn) in its own process, NiiVue in Debian's chromium
driven by Playwright (both installed by `make test`): two readers through instructions, a training
case, linked slice scrolling, zoom and pan, keyboard habits (Space / Enter never answer, the viewer's
own hotkeys do nothing), reload, a second tab and kill -9 of the server; blinding a curious reader
cannot break; refusals, limits and plain pages; two readers answering at once over HTTP."""

import csv
import json
import os
import sqlite3
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import ReviewServer, free_port, write_noisier_synthetic_cohort

from DTISynthLib.cli import main
from DTISynthLib.core.output_layout import (
    ReviewAnalysisOutput,
    StudyFolder,
)
from DTISynthLib.review.store import StudyStore
from DTISynthLib.review.study import DISPLAY_WINDOWS, create_study

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
BLINDING_WORDS = ("synth", "orig", "acquired", "truth", "real")


@pytest.fixture(scope="module")
def dtis(tmp_path_factory):
    return write_noisier_synthetic_cohort(tmp_path_factory.mktemp("browser"), 1, noise=0.05)


@pytest.fixture
def study(dtis, tmp_path):
    port = free_port()
    tokens = create_study(*dtis, tmp_path / "study", maps=["color", "fa", "md"], readers="ann,bob", seed=5,
                          training=1, address=("127.0.0.1", port))
    server = ReviewServer(tmp_path / "study", port)
    yield tmp_path / "study", tokens, server
    server.kill(signal.SIGTERM)


def _synthetic_side(store, token, position):
    shown = store.presentation(store.reader_for_token(token), position)
    synthetic = {c["synthetic_image"] for c in store.cases(practice=True)}
    return "left" if shown.left_image in synthetic else "right"


READY = "window.review.shownPosted && !window.review.busy && window.review.loaded === 2"


def _begin(page, url, label, key=None):
    """Open a reader's link and begin (or resume) with the button or, as a keyboard reader would, `key`."""
    page.goto(url)
    page.wait_for_selector("#begin", state="visible", timeout=60000)
    assert "noisier" in page.inner_text("#question") and "analysed" in page.inner_text("#training-note")
    assert page.inner_text("#begin") == label
    if key:
        page.keyboard.press(key)
    else:
        page.click("#begin")
    page.wait_for_function(READY, timeout=60000)


def _navigate_and_check_linked(page):
    """Wheel and arrows step both views' slices; Ctrl + wheel zooms and a drag pans both; NiiVue's own
    hotkeys and drags change nothing of one view alone."""
    shown = page.evaluate("window.review.displayed()")
    slice0, slices = shown[0]["slice"], page.evaluate("window.review.slices")
    assert page.inner_text("#slice") == f"Slice {slice0 + 1} / {slices}"
    box = page.locator("#left").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -100)
    page.wait_for_function(f"window.review.slice === {slice0 + 1}")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    shown = page.evaluate("window.review.displayed()")
    assert [v["slice"] for v in shown] == [slice0 + 3] * 2
    assert page.inner_text("#slice") == f"Slice {slice0 + 4} / {slices}"
    page.keyboard.press("ArrowDown")
    for key in ("v", "m", "c", "h", "z"):  # NiiVue's hotkeys (view mode, plane, ...) when its own handlers run
        page.keyboard.press(key)
    page.mouse.click(box["x"] + 30, box["y"] + 30, button="right")
    right = page.locator("#right").bounding_box()
    page.mouse.move(right["x"] + right["width"] / 2, right["y"] + right["height"] / 2)
    page.keyboard.down("Control")
    page.mouse.wheel(0, -100)
    page.keyboard.up("Control")
    page.mouse.down()
    page.mouse.move(right["x"] + right["width"] / 2 + 40, right["y"] + right["height"] / 2 + 25, steps=4)
    page.mouse.up()
    shown = page.evaluate("window.review.displayed()")
    assert shown[0] == shown[1]  # one slice, zoom, pan, window and display for both
    assert shown[0]["slice"] == slice0 + 2 and shown[0]["pan"][3] > 1.1 and shown[0]["pan"][0] != 0
    assert page.evaluate("[window.review.choice, window.review.saved.length]") == [None, 1]
    page.keyboard.press("0")
    assert page.evaluate("window.review.displayed()")[0]["pan"] == [0, 0, 0, 1]


@pytest.fixture
def full_study(tmp_path_factory, tmp_path):
    """Two subjects x (colour FA, FA, MD): six study cases, two per map, and one practice case per reader,
    served as the study fixture is."""
    port = free_port()
    inputs = write_noisier_synthetic_cohort(tmp_path_factory.mktemp("browser_full"), 2, noise=0.05)
    tokens = create_study(*inputs, tmp_path / "study", maps=["color", "fa", "md"], readers="ann,bob", seed=5,
                          training=1, address=("127.0.0.1", port))
    server = ReviewServer(tmp_path / "study", port)
    yield tmp_path / "study", tokens, server
    server.kill(signal.SIGTERM)


def _slicer_reader_answers_everything(link):
    """A third reader in Slicer (slicer-core), through the server; the number of databases this process
    opened meanwhile (a spy on sqlite3.connect)."""
    slicer = pytest.importorskip("slicer")
    from DTISynthLib.slicer.review_session import ReviewSession

    scene = slicer.vtkMRMLScene()
    scene.AddNode(slicer.vtkMRMLLayoutNode())
    opened, real_connect = [], sqlite3.connect
    sqlite3.connect = lambda *a, **k: opened.append(a) or real_connect(*a, **k)
    try:
        session = ReviewSession(scene, link)
        shown = session.show_next()
        while shown is not None:
            shown = session.answer("right", 2)
    finally:
        sqlite3.connect = real_connect
    return len(opened)


def test_two_readers_complete_a_study_in_the_browser_and_the_analysis_is_their_answers(full_study, tmp_path):
    """The issue's target run: two readers (keyboard on one, mouse on the other) through practice, the
    "practice is over" page and six study cases, with a server kill -9, a reload, a second tab, a pause and
    a closed browser; a third reader in Slicer. The blinding audit passed, sides are balanced per reader
    and map, no unshown case can be answered, reading times are the time on screen within 1 s, and the
    three readers' answers are one table."""
    from playwright.sync_api import sync_playwright

    folder, tokens, server = full_study
    store = StudyStore(folder)
    audit = json.loads(store.info()["blinding_audit"])  # create refuses a study that fails it; it was recorded
    assert {(r["map"], r["statistic"]) for r in audit} >= {("pooled", "zero voxels"), ("fa", "maximum")}
    for name, token in tokens.items():  # no case can be answered before it is shown, nor shown out of turn
        assert server.post(f"/api/{token}/answer", {"position": 2, "choice": "left", "confidence": 3})[0] == 409
        assert server.post(f"/api/{token}/shown", {"position": 3})[0] == 404
    cases = 1 + 6
    pressed, visible, on_screen = {}, {}, {}

    def came_on_screen(name, page):
        on_screen[name] = page.evaluate("window.review.onScreenAt")

    def went_off_screen(name, page, position, at="Date.now()"):
        visible[(name, position)] = visible.get((name, position), 0) + page.evaluate(at) - on_screen.pop(name)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        pages, errors = {}, []
        for name, size in (("ann", {"width": 1920, "height": 1080}), ("bob", {"width": 1366, "height": 768})):
            pages[name] = browser.new_context(viewport=size).new_page()
            pages[name].on("pageerror", lambda error: errors.append(str(error)))
            _begin(pages[name], f"{server.base}/r/{tokens[name]}", "Begin")
        for position in range(1, cases + 1):
            if position == 3:  # kill -9 of the server mid-study: the pages go on once it is back
                server.kill(signal.SIGKILL)
                server.start()
            for name in pages:
                page = pages[name]
                page.wait_for_function(READY, timeout=60000)
                came_on_screen(name, page)
                label = "Practice case 1 of 1" if position == 1 else f"Case {position - 1} of 6"
                assert page.inner_text("#progress") == label
                kind = store.presentation(store.reader_for_token(tokens[name]), position).map
                shown = page.evaluate("window.review.displayed()")
                assert shown[0] == shown[1]  # one window, colour map, slice and zoom for both images
                assert [shown[0]["cal_min"], shown[0]["cal_max"]] == pytest.approx(DISPLAY_WINDOWS[kind])
                assert shown[0]["nearest"] and shown[0]["radiological"]  # the study's display
                if name == "ann" and position == 2:
                    _navigate_and_check_linked(page)
                if name == "bob" and position == 5:  # the browser closed mid-case, opened again 2 s later
                    went_off_screen(name, page, position)
                    context = page.context
                    page.close()
                    time.sleep(2.0)
                    page = pages[name] = context.new_page()
                    page.on("pageerror", lambda error: errors.append(str(error)))
                    _begin(page, f"{server.base}/r/{tokens[name]}", "Resume", key="Space")
                    came_on_screen(name, page)
                    assert page.inner_text("#progress") == "Case 4 of 6"
                if name == "ann":  # keyboard: the left image, then confidence 2 (which saves)
                    page.keyboard.press("ArrowLeft")
                    page.keyboard.press("2")
                    pressed[(name, position)] = ("left", 2)
                else:  # the button under the right image; Space and Enter after the click answer nothing
                    if position == 3:  # a pause hides the images and stops the clock
                        page.keyboard.press("p")
                        went_off_screen(name, page, position, "window.review.pauseStarted")
                        assert page.is_visible("#paused") and not page.is_visible("#views")
                        page.wait_for_timeout(1200)
                        page.keyboard.press("ArrowRight")  # nothing is chosen while paused
                        page.keyboard.press("Enter")  # resumes, as the Resume button (and P) do
                        on_screen[name] = page.evaluate("Date.now()")
                        assert page.is_visible("#views") and page.evaluate("window.review.choice") is None
                    page.click("#choose-right")
                    page.keyboard.press("Space")
                    page.keyboard.press("Enter")
                    page.wait_for_timeout(300)
                    assert store.next_position(store.reader_for_token(tokens[name])) == position  # not answered
                    assert page.inner_text("#status").startswith("Now your confidence")
                    page.click("#confidence-buttons button[data-value='4']")
                    pressed[(name, position)] = ("right", 4)
                page.wait_for_function(f"window.review.saved.includes({position}) && !window.review.busy",
                                       timeout=60000)
                went_off_screen(name, page, position, "window.review.answeredAt")
                if position == 1:  # practice is over: a page says so, and the study begins on the reader's word
                    assert page.is_visible("#practice-over") and not page.is_visible("#views")
                    assert "6 cases begin now" in page.inner_text("#practice-over")
                    page.keyboard.press("ArrowLeft")  # nothing is answered from this page
                    page.keyboard.press("3")
                    assert store.next_position(store.reader_for_token(tokens[name])) == 2
                    if name == "ann":
                        page.keyboard.press("Enter")
                    else:
                        page.click("#start-study")
                if name == "bob" and position == 2:  # reload: the instructions, then case 2 where bob stopped
                    page.wait_for_function(READY, timeout=60000)
                    page.reload()
                    _begin(page, page.url, "Resume", key="Enter")
                    assert page.inner_text("#progress") == "Case 2 of 6"
                if name == "ann" and position == 4:  # a second tab of the same link goes on where ann is
                    tab = page.context.new_page()
                    _begin(tab, page.url, "Resume", key="Space")
                    assert tab.inner_text("#progress") == "Case 4 of 6"
                    tab.close()
                    page.bring_to_front()
        for page in pages.values():
            page.wait_for_selector("#done", state="visible", timeout=60000)
            assert page.inner_text("#done") == "All cases are answered. Thank you."
        assert 3 in pages["ann"].evaluate("window.review.prefetched")  # the next case was loaded while reading
        assert not errors
        screenshot = os.environ.get("DTISYNTH_REVIEW_SCREENSHOT")
        if screenshot:  # the README's picture: a fresh reader's first study case
            extra = browser.new_page(viewport={"width": 1100, "height": 620})
            _begin(extra, f"{server.base}/r/{StudyStore(folder).add_reader('screenshot')}", "Begin")
            extra.keyboard.press("ArrowLeft")
            extra.keyboard.press("1")
            extra.wait_for_selector("#practice-over", state="visible", timeout=60000)
            extra.keyboard.press("Enter")
            extra.wait_for_function("window.review.saved.length === 1 && " + READY, timeout=60000)
            extra.keyboard.press("ArrowRight")
            extra.screenshot(path=screenshot)
        browser.close()
    cat = store.add_reader("cat")  # a third reader, in Slicer, through the server alone
    assert _slicer_reader_answers_everything(f"{server.base}/r/{cat}") == 0
    answers = {(a["reader"], a["position"]): a for a in store.unblinded_answers(training=True)}
    assert {k: (a["choice"], a["confidence"]) for k, a in answers.items() if k[0] != "cat"} == pressed
    assert {k for k in answers if k[0] == "cat"} == {("cat", p) for p in range(1, cases + 1)}
    assert [a["training"] for a in answers.values()].count(True) == 3
    assert answers[("bob", 3)]["paused_seconds"] >= 1.2 and answers[("bob", 5)]["paused_seconds"] >= 2.0
    timing = {k: (round(answers[k]["seconds"], 2), round(ms / 1000, 2)) for k, ms in visible.items()}
    assert all(abs(recorded - seen) < 1.0 for recorded, seen in timing.values()), timing
    with sqlite3.connect(StudyFolder(folder).database) as db:  # every answered case's clock was started by a page
        assert db.execute("SELECT COUNT(*) FROM answers a JOIN presentations p ON p.reader_id = a.reader_id AND "
                          "p.position = a.position WHERE p.shown_at IS NULL").fetchone()[0] == 0
    for name in ("ann", "bob", "cat"):  # sides balanced per reader and map: at most one case apart
        reader = next(r for r in store.readers() if r.name == name)
        lead = {}
        for position in range(2, cases + 1):
            case = store.presentation(reader, position)
            synthetic_left = _synthetic_side(store, tokens.get(name) or cat, position) == "left"
            lead[case.map] = lead.get(case.map, 0) + (1 if synthetic_left else -1)
            assert abs(lead[case.map]) <= 1, (name, lead)
        assert sorted(lead.values()) == [0, 0, 0]  # two cases per map: one on each side
    study_answers = {k: a for k, a in answers.items() if not a["training"]}
    expected = sum(a["synthetic_chosen"] for a in study_answers.values())
    assert expected == sum(choice == _synthetic_side(store, tokens[name], position)
                           for (name, position), (choice, _) in pressed.items() if position > 1) + sum(
        _synthetic_side(store, cat, p) == "right" for p in range(2, cases + 1))
    assert main(["review", "analyze", str(folder), "--out", str(tmp_path / "analysis")]) == 0
    rows = {r["map"]: r for r in csv.DictReader(ReviewAnalysisOutput(tmp_path / "analysis").noisier.open())}
    assert int(rows["pooled"]["answers"]) == 18 and int(rows["pooled"]["synthetic_noisier"]) == expected
    for kind in ("color", "fa", "md"):
        assert int(rows[kind]["synthetic_noisier"]) == sum(
            a["synthetic_chosen"] for a in study_answers.values() if a["map"] == kind)
    assert main(["review", "export", str(folder), "--out", str(tmp_path / "answers.csv")]) == 0
    exported = list(csv.DictReader((tmp_path / "answers.csv").open()))
    assert sorted({r["reader"] for r in exported}) == ["ann", "bob", "cat"] and len(exported) == 3 * cases


def test_nothing_served_tells_the_sides_apart_and_strangers_are_refused(study):
    folder, tokens, server = study
    status, page, _ = server.get(f"/r/{tokens['ann']}")
    assert status == 200
    served = [page.decode().lower()]
    store = StudyStore(folder)
    for name, token in tokens.items():
        reader = store.reader_for_token(token)
        for position in range(1, 5):
            status, body, headers = server.get(f"/api/{token}/case/{position}")
            case = json.loads(body)
            served.append(body.decode().lower())
            assert set(case) == {"position", "number", "total", "training", "map", "window", "answer", "left", "right"}
            responses = [server.get(case[side]) for side in ("left", "right")]
            for status, image, headers in responses:
                assert status == 200 and headers["Cache-Control"] == "no-store"
                names = {k.lower() for k in headers}
                assert "etag" not in names and "last-modified" not in names
            (_, left, left_headers), (_, right, right_headers) = responses
            strip = lambda h: sorted((k.lower(), v) for k, v in h.items() if k.lower() != "date")  # noqa: E731
            assert strip(left_headers) == strip(right_headers) and len(left) == len(right)
            assert left != right
        assert store.progress(reader) == (0, 3)  # looking at cases answers nothing
    with sqlite3.connect(StudyFolder(folder).database) as db:  # ...nor starts their clocks
        assert db.execute("SELECT COUNT(*) FROM presentations WHERE shown_at IS NOT NULL").fetchone()[0] == 0
    assert len({p.stat().st_mtime_ns for p in StudyFolder(folder).images.iterdir()}) == 1
    for text in served:
        for word in BLINDING_WORDS:
            assert word not in text.replace("noisier", ""), word
    image = json.loads(server.get(f"/api/{tokens['ann']}/case/1")[1])["left"].rsplit("/", 1)[1]
    assert server.get(f"/img/{tokens['bob']}/{image}")[0] == 200  # bob has the same cases...
    assert server.get(f"/img/forged-token/{image}")[0] == 404  # ...a stranger has none
    for path in ("/api/forged-token/state", f"/img/{tokens['ann']}/..%2Fstudy.sqlite",
                 f"/img/{tokens['ann']}/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "/study.sqlite", "/images/" + image,
                 f"/static/..%2F..%2F{StudyFolder(folder).database.name}", f"/img/{tokens['ann']}/0000000000000000.nii",
                 f"/api/{tokens['ann']}/case/0", f"/api/{tokens['ann']}/case/99999999999999999999"):
        assert server.get(path)[0] in (404, 422), path
    status, body, headers = server.get("/r/forged-token")  # a plain page, not {"detail": "Not Found"}
    assert status == 404 and "link is not valid" in body.decode() and headers["Content-Type"].startswith("text/html")
    # A case never shown cannot be answered (a script or a second client: 0 s of reading), nor shown out of turn.
    status, body = server.post(f"/api/{tokens['ann']}/answer", {"position": 1, "choice": "left", "confidence": 3})
    assert status == 409 and body["error"] == ("answer: expected case 1 shown to this reader before it is answered; "
                                               "found case 1 never shown (mark_shown)")
    assert server.post(f"/api/{tokens['ann']}/shown", {"position": 2})[0] == 404  # case 1 comes first
    assert server.post(f"/api/{tokens['ann']}/shown", {"position": 1})[0] == 200
    # A reader cannot answer for another: answers go to the token's reader only.
    assert server.post(f"/api/{tokens['ann']}/answer", {"position": 1, "choice": "left", "confidence": 3})[0] == 200
    state = json.loads(server.get(f"/api/{tokens['bob']}/state")[1])
    assert (state["answered"], state["total"], state["next"], state["training"]) == (0, 3, 1, 1)
    status, body = server.post(f"/api/{tokens['ann']}/answer", {"position": 1, "choice": "right", "confidence": 3})
    assert status == 409 and "final" in body["error"]
    # Resent with another confidence: refused, not "saved" while keeping the old one.
    status, body = server.post(f"/api/{tokens['ann']}/answer", {"position": 1, "choice": "left", "confidence": 5})
    assert status == 409 and "confidence 3" in body["error"]
    assert server.post("/api/forged-token/answer", {"position": 1, "choice": "left", "confidence": 3})[0] == 404


def test_bad_bodies_are_4xx_and_nothing_is_stored(study):
    folder, tokens, server = study
    answer = f"/api/{tokens['ann']}/answer"
    good = {"position": 2, "choice": "left", "confidence": 3}
    for body, raw in ((None, b'{"position": NaN, "choice": "left", "confidence": 3}'),
                      (dict(good, position=10**30), None), (dict(good, position=-1), None),
                      (dict(good, confidence=None), None), (dict(good, confidence=7), None),
                      (dict(good, choice="up"), None), (dict(good, paused_seconds=float("inf")), None),
                      (None, b'{"position": 2, "choice": "left", "confidence": 3, "paused_seconds": Infinity}'),
                      (None, b"not json"), (None, b"[]"), (dict(good, comment="x" * 2001), None)):
        status, _ = server.post(answer, body, raw=raw)
        assert status == 422, (body, raw)
    status, reply = server.post(answer, None, raw=json.dumps(dict(good, comment="x" * 200_000)).encode())
    assert status == 413 and "over" in reply["error"]
    # A body streamed without a declared length is measured as it comes.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        chunk = b"x" * 8192
        connection.sendall(f"POST {answer} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n".encode())
        try:  # the server may answer and close before the last chunk
            for _ in range(3):
                connection.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            connection.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert connection.recv(64).startswith(b"HTTP/1.1 413")
    assert server.get(f"/api/{tokens['ann']}/state")[0] == 200  # the server is still up
    assert StudyStore(folder).unblinded_answers(training=True) == []


def test_a_body_of_another_json_type_is_422_naming_the_field_and_nothing_is_stored(study):
    """pydantic's lax mode would take true as 1 (case 1, confidence "guess"), 3.0 as 3 and "3" as 3."""
    folder, tokens, server = study
    good = {"position": 2, "choice": "left", "confidence": 3}
    for field, value in (("position", True), ("position", 2.0), ("position", "2"), ("confidence", True),
                         ("confidence", 3.0), ("confidence", "3"), ("comment", 5), ("paused_seconds", True),
                         ("paused_seconds", "1.5")):
        status, reply = server.post(f"/api/{tokens['ann']}/answer", dict(good, **{field: value}))
        assert status == 422 and reply["saved"] is False, (field, value, status, reply)
        assert reply["error"].startswith(f"malformed request ({field}: "), (field, value, reply)
    status, reply = server.post(f"/api/{tokens['ann']}/shown", {"position": True})
    assert status == 422 and reply["error"].startswith("malformed request (position: "), reply
    assert StudyStore(folder).unblinded_answers(training=True) == []
    with sqlite3.connect(StudyFolder(folder).database) as db:
        assert db.execute("SELECT COUNT(*) FROM presentations WHERE shown_at IS NOT NULL").fetchone()[0] == 0
    # The right types are taken (an integral paused_seconds too: JSON.stringify(0.0) is "0").
    assert server.post(f"/api/{tokens['ann']}/shown", {"position": 1})[0] == 200  # the training case first
    assert server.post(f"/api/{tokens['ann']}/answer", dict(good, position=1))[0] == 200
    assert server.post(f"/api/{tokens['ann']}/shown", {"position": 2})[0] == 200
    assert server.post(f"/api/{tokens['ann']}/answer", dict(good, paused_seconds=0))[0] == 200
    assert [(a["position"], a["confidence"]) for a in StudyStore(folder).unblinded_answers()] == [(2, 3)]


def test_ctrl_c_stops_serve_quietly_and_leaves_the_study_whole(study):
    folder, tokens, server = study
    assert server.post(f"/api/{tokens['ann']}/shown", {"position": 1})[0] == 200
    assert server.post(f"/api/{tokens['ann']}/answer", {"position": 1, "choice": "left", "confidence": 4})[0] == 200
    started = time.monotonic()
    server.process.send_signal(signal.SIGINT)
    _, stderr = server.process.communicate(timeout=20)
    stderr = stderr.decode()
    assert server.process.returncode == 0 and time.monotonic() - started < 5, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.splitlines()[-1] == "review server stopped"
    with sqlite3.connect(StudyFolder(folder).database) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert [(a["position"], a["choice"]) for a in StudyStore(folder).unblinded_answers(training=True)] == [(1, "left")]


def test_a_locked_study_shows_readers_a_closed_page_and_no_cases(study):
    folder, tokens, server = study
    StudyStore(folder).lock()
    status, body, headers = server.get(f"/r/{tokens['ann']}")
    assert status == 403 and "study is closed" in body.decode() and headers["Content-Type"].startswith("text/html")
    assert json.loads(server.get(f"/api/{tokens['ann']}/state")[1])["locked"] is True
    assert server.get(f"/api/{tokens['ann']}/case/1")[0] == 403
    status, body = server.post(f"/api/{tokens['ann']}/answer", {"position": 1, "choice": "left", "confidence": 3})
    assert status == 409 and "locked" in body["error"]


def test_a_confirmed_answer_survives_kill_9_of_the_server(study):
    folder, tokens, server = study
    for position in (1, 2):
        assert server.post(f"/api/{tokens['ann']}/shown", {"position": position})[0] == 200
        status, body = server.post(f"/api/{tokens['ann']}/answer", {"position": position, "choice": "left",
                                                                      "confidence": 5, "comment": "x"})
        assert status == 200 and body["saved"]  # what the page shows as "Saved"
    server.kill(signal.SIGKILL)
    server.start()
    state = json.loads(server.get(f"/api/{tokens['ann']}/state")[1])
    assert (state["answered"], state["total"], state["next"]) == (1, 3, 3)  # position 1 was the training case
    stored = StudyStore(folder).unblinded_answers(training=True)
    assert [(a["position"], a["confidence"], a["comment"]) for a in stored] == [(1, 5, "x"), (2, 5, "x")]


def test_two_readers_answering_at_the_same_time_lose_nothing(study):
    folder, tokens, server = study
    barrier, results = threading.Barrier(2), {}

    def answer_all(name):
        barrier.wait()
        results[name] = [(server.post(f"/api/{tokens[name]}/shown", {"position": p})[0],
                          server.post(f"/api/{tokens[name]}/answer", {"position": p, "choice": "right",
                                                                      "confidence": 2})[0]) for p in (1, 2, 3, 4)]

    threads = [threading.Thread(target=answer_all, args=(name,)) for name in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {"ann": [(200, 200)] * 4, "bob": [(200, 200)] * 4}
    assert len(StudyStore(folder).unblinded_answers()) == 6


def test_two_tabs_answering_one_case_and_a_replaced_link_are_told_what_happened(study):
    """A confidence pressed before a side is not kept (the side key then saved in one keystroke). A reader's
    second tab answers the case the first already answered differently: told that the other answer
    stands, it goes on to the next case (it showed the store's technical refusal). A page whose link was
    re-issued meanwhile says so instead of "Not saved"."""
    from playwright.sync_api import sync_playwright

    folder, tokens, server = study
    store = StudyStore(folder)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        context = browser.new_context(viewport={"width": 1100, "height": 650})
        first, second = context.new_page(), context.new_page()
        _begin(first, f"{server.base}/r/{tokens['ann']}", "Begin")
        _begin(second, f"{server.base}/r/{tokens['ann']}", "Begin", key="Enter")
        # a confidence before a side is not kept: the side key then does not save in one keystroke
        first.keyboard.press("4")
        assert first.inner_text("#status").startswith("First choose the noisier side")
        first.keyboard.press("ArrowLeft")
        first.wait_for_timeout(300)
        assert first.inner_text("#status").startswith("Now your confidence") and store.next_position(
            store.readers()[0]) == 1 and first.evaluate("window.review.confidence") is None
        first.keyboard.press("3")
        first.wait_for_selector("#practice-over", state="visible", timeout=60000)
        first.keyboard.press("Enter")
        first.wait_for_function("window.review.saved.includes(1) && " + READY, timeout=60000)
        second.keyboard.press("ArrowRight")
        second.keyboard.press("5")
        second.wait_for_function("document.getElementById('status').textContent.includes('another tab')",
                                 timeout=30000)
        assert second.inner_text("#status") == ("This case was already answered in another tab or window; that "
                                                "answer stands.")
        second.wait_for_selector("#practice-over", state="visible", timeout=60000)
        second.click("#start-study")
        second.wait_for_function("window.review.position === 2 && " + READY, timeout=60000)
        assert second.inner_text("#progress") == "Case 1 of 3"
        assert [(a["position"], a["choice"], a["confidence"]) for a in store.unblinded_answers(training=True)] == \
            [(1, "left", 3)]
        # the organiser re-issues ann's link: the old page says why it cannot save
        store.reissue_token("ann")
        first.keyboard.press("ArrowLeft")
        first.keyboard.press("2")
        first.wait_for_function("document.getElementById('status').textContent.includes('no longer valid')",
                                timeout=30000)
        assert "Ask the study's organiser" in first.inner_text("#status")
        assert store.next_position(store.readers()[0]) == 2  # nothing saved
        browser.close()


def test_reading_time_is_the_time_the_case_was_on_screen(study):
    """Reading time matches the time the case was on screen within 1 s (on the page's clock: when both
    images were up, when the browser closed, the pause began, the answer was given): the browser closed
    for 3 s counts as away, not as reading (93.6 s were recorded for about 9 s of reading), and a pause
    survives a reload (it was lost)."""
    from playwright.sync_api import sync_playwright

    folder, tokens, server = study
    store = StudyStore(folder)
    link = f"{server.base}/r/{tokens['bob']}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        context = browser.new_context(viewport={"width": 1100, "height": 650})
        page = context.new_page()
        _begin(page, link, "Begin")
        page.wait_for_timeout(1500)
        visible = page.evaluate("Date.now() - window.review.onScreenAt")
        page.close()  # the browser closed mid-case
        time.sleep(3.0)
        page = context.new_page()
        _begin(page, link, "Begin")  # nothing answered yet
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("3")
        page.wait_for_function("window.review.saved.includes(1)", timeout=60000)
        visible += page.evaluate("window.review.answeredAt - window.review.onScreenAt")
        first = store.unblinded_answers(training=True)[0]
        # counting the closed browser, or losing the pause, is 2-3 s off
        assert first["paused_seconds"] >= 3.0 and abs(first["seconds"] - visible / 1000) < 1.0, (first, visible)
        page.wait_for_selector("#practice-over", state="visible", timeout=60000)
        page.keyboard.press("Space")  # the study begins
        page.wait_for_function(READY, timeout=60000)
        # a pause, then a reload during it: the pause is kept
        page.wait_for_timeout(700)
        page.keyboard.press("p")
        visible = page.evaluate("window.review.pauseStarted - window.review.onScreenAt")
        page.wait_for_timeout(2000)
        page.reload()
        _begin(page, link, "Resume", key="Enter")
        page.wait_for_timeout(500)
        page.keyboard.press("ArrowRight")
        page.keyboard.press("2")
        page.wait_for_function("window.review.saved.includes(2)", timeout=60000)
        visible += page.evaluate("window.review.answeredAt - window.review.onScreenAt")
        second = store.unblinded_answers(training=True)[1]
        assert second["paused_seconds"] >= 2.0 and abs(second["seconds"] - visible / 1000) < 1.0, (second, visible)
        browser.close()


def test_a_server_that_is_down_is_waited_for_and_the_case_stays_hidden_until_it_is_shown(study):
    """After a crash the page said "Not saved" on a case not yet answered, and the case stayed answerable
    with no "shown" on record. Now: the saved answer stays "Saved"; the next case's images stay hidden and
    unanswerable while the server does not answer, and come on screen (its clock started) once it does."""
    from playwright.sync_api import sync_playwright

    folder, tokens, server = study
    store = StudyStore(folder)
    reader = store.reader_for_token(tokens["ann"])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        page = browser.new_context(viewport={"width": 1100, "height": 650}).new_page()
        _begin(page, f"{server.base}/r/{tokens['ann']}", "Begin")
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("4")
        page.wait_for_selector("#practice-over", state="visible", timeout=60000)
        down = "**/api/*/shown"
        page.route(down, lambda route: route.abort("connectionrefused"))  # the server is gone
        page.keyboard.press("Enter")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('Waiting for the server')",
                               timeout=30000)
        assert page.evaluate("document.getElementById('views').style.visibility") == "hidden"
        page.keyboard.press("ArrowRight")  # nothing can be answered meanwhile
        page.keyboard.press("5")
        page.wait_for_timeout(1500)
        assert "Not saved" not in page.inner_text("#status") and store.next_position(reader) == 2
        with sqlite3.connect(StudyFolder(folder).database) as db:
            assert db.execute("SELECT shown_at FROM presentations WHERE reader_id = ? AND position = 2",
                              (reader.id,)).fetchone()[0] is None
        page.unroute(down)  # back: the case comes on screen and its clock starts
        page.wait_for_function(READY, timeout=60000)
        assert page.evaluate("document.getElementById('views').style.visibility") == "visible"
        assert page.evaluate("window.review.choice") is None
        page.keyboard.press("ArrowRight")
        page.keyboard.press("2")
        page.wait_for_function("window.review.saved.includes(2)", timeout=60000)
        browser.close()
    assert [(a["position"], a["choice"], a["confidence"]) for a in store.unblinded_answers(training=True)] == [
        (1, "left", 4), (2, "right", 2)]
