"""The review page end to end: the real server (uvicorn) in its own process, NiiVue in Debian's chromium
driven by Playwright (both installed by `make test`); blinding, refusals, kill -9 of the server and
two readers answering at once over HTTP."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import write_noisier_synthetic_cohort

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


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`dtisynth review serve` in a child process."""

    def __init__(self, study):
        self.study, self.port = study, _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.start()

    def start(self):
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.process = subprocess.Popen([sys.executable, "-m", "DTISynthLib", "review", "serve", str(self.study),
                                         "--port", str(self.port)], env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.base + "/favicon.ico", timeout=1)
                return
            except (urllib.error.URLError, ConnectionError):
                assert self.process.poll() is None, self.process.stderr.read().decode()
                time.sleep(0.2)
        raise AssertionError("the review server did not start")

    def kill(self, sig=signal.SIGKILL):
        self.process.send_signal(sig)
        self.process.wait(10)

    def get(self, path):
        try:
            with urllib.request.urlopen(self.base + path, timeout=10) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error.headers

    def post(self, path, body):
        request = urllib.request.Request(self.base + path, json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


@pytest.fixture
def study(dtis, tmp_path):
    tokens = create_study(*dtis, tmp_path / "study", maps=["color", "fa", "md"], readers="ann,bob", seed=5)
    server = Server(tmp_path / "study")
    yield tmp_path / "study", tokens, server
    server.kill(signal.SIGTERM)


def _synthetic_side(store, token, position):
    shown = store.presentation(store.reader_for_token(token), position)
    synthetic = {c["synthetic_image"] for c in store.cases()}
    return "left" if shown.left_image in synthetic else "right"


def test_two_readers_complete_a_study_in_the_browser_and_the_analysis_is_their_answers(study, tmp_path):
    from playwright.sync_api import sync_playwright

    folder, tokens, server = study
    store = StudyStore(folder)
    pressed = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        pages, errors = {}, []
        for name in ("ann", "bob"):
            pages[name] = browser.new_context(viewport={"width": 1100, "height": 650}).new_page()
            pages[name].on("pageerror", lambda error: errors.append(str(error)))
            pages[name].goto(f"{server.base}/r/{tokens[name]}")
        ready = "window.review && window.review.loaded === 2 && !window.review.busy"
        for position in (1, 2, 3):
            for name, page in pages.items():
                page.wait_for_function(ready, timeout=60000)
                assert page.inner_text("#progress") == f"Case {position} of 3"
                kind = store.presentation(store.reader_for_token(tokens[name]), position).map
                shown = page.evaluate("window.review.displayed()")
                assert shown[0] == shown[1]  # one window and colour map for both images
                assert [shown[0]["cal_min"], shown[0]["cal_max"]] == pytest.approx(DISPLAY_WINDOWS[kind])
                if name == "ann":  # keyboard: confidence 2, then the left image
                    page.keyboard.press("2")
                    page.keyboard.press("ArrowLeft")
                    pressed[(name, position)] = ("left", 2)
                else:  # the button under the right image
                    page.click("#choose-right")
                    pressed[(name, position)] = ("right", None)
                page.wait_for_function(f"window.review.saved.includes({position}) && !window.review.busy",
                                       timeout=60000)
                if name == "bob" and position == 1:  # resume: a reloaded page goes on at case 2
                    page.reload()
                    page.wait_for_function(ready, timeout=60000)
                    assert page.inner_text("#progress") == "Case 2 of 3"
        for page in pages.values():
            assert page.inner_text("#done") == "All cases are answered. Thank you."
        assert not errors
        screenshot = os.environ.get("DTISYNTH_REVIEW_SCREENSHOT")
        if screenshot:  # the README's picture: a fresh reader's first case
            extra = browser.new_page(viewport={"width": 1100, "height": 560})
            extra.goto(f"{server.base}/r/{StudyStore(folder).add_reader('screenshot')}")
            extra.wait_for_function(ready, timeout=60000)
            extra.screenshot(path=screenshot)
        browser.close()
    answers = {(a["reader"], a["position"]): a for a in store.unblinded_answers()}
    assert {k: (a["choice"], a["confidence"]) for k, a in answers.items()} == pressed
    expected = sum(choice == _synthetic_side(store, tokens[name], position)
                   for (name, position), (choice, _) in pressed.items())
    assert main(["review", "analyze", str(folder), "--out", str(tmp_path / "analysis")]) == 0
    rows = {r["map"]: r for r in csv.DictReader(ReviewAnalysisOutput(tmp_path / "analysis").noisier.open())}
    assert int(rows["pooled"]["answers"]) == 6 and int(rows["pooled"]["synthetic_noisier"]) == expected
    for kind in ("color", "fa", "md"):
        assert int(rows[kind]["synthetic_noisier"]) == sum(
            a["synthetic_chosen"] for a in answers.values() if a["map"] == kind)


def test_nothing_served_unblinds_and_strangers_are_refused(study):
    folder, tokens, server = study
    status, page, _ = server.get(f"/r/{tokens['ann']}")
    assert status == 200
    served = [page.decode().lower()]
    sizes = []
    for position in (1, 2, 3):
        status, body, _ = server.get(f"/api/{tokens['ann']}/case/{position}")
        case = json.loads(body)
        served.append(body.decode().lower())
        lengths = []
        for side in ("left", "right"):
            status, image, headers = server.get(case[side])
            assert status == 200 and headers.get("Cache-Control") == "no-store"
            lengths.append(len(image))
        sizes.append(lengths)
    for text in served:
        for word in BLINDING_WORDS:
            assert word not in text.replace("noisier", ""), word
    assert all(a == b for a, b in sizes)  # no size tells the images apart
    image = json.loads(server.get(f"/api/{tokens['ann']}/case/1")[1])["left"].rsplit("/", 1)[1]
    assert server.get(f"/img/{tokens['bob']}/{image}")[0] == 200  # bob has the same cases...
    assert server.get(f"/img/forged-token/{image}")[0] == 404  # ...a stranger has none
    for path in ("/r/forged-token", "/api/forged-token/state", f"/img/{tokens['ann']}/..%2Fstudy.sqlite",
                 f"/img/{tokens['ann']}/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "/study.sqlite", "/images/" + image,
                 f"/static/..%2F..%2F{StudyFolder(folder).database.name}", f"/img/{tokens['ann']}/0000000000000000.nii"):
        assert server.get(path)[0] == 404, path
    # A reader cannot answer for another: answers go to the token's reader only.
    assert server.post(f"/api/{tokens['ann']}/answer", {"position": 1, "choice": "left"})[0] == 200
    state = json.loads(server.get(f"/api/{tokens['bob']}/state")[1])
    assert state == {"answered": 0, "total": 3, "next": 1}
    status, body = server.post(f"/api/{tokens['ann']}/answer", {"position": 1, "choice": "right"})
    assert status == 409 and "final" in body["error"]
    assert server.post("/api/forged-token/answer", {"position": 1, "choice": "left"})[0] == 404


def test_a_confirmed_answer_survives_kill_9_of_the_server(study):
    folder, tokens, server = study
    for position in (1, 2):
        status, body = server.post(f"/api/{tokens['ann']}/answer", {"position": position, "choice": "left",
                                                                      "confidence": 5, "comment": "x"})
        assert status == 200 and body["saved"]  # what the page shows as "Saved"
    server.kill(signal.SIGKILL)
    server.start()
    assert json.loads(server.get(f"/api/{tokens['ann']}/state")[1]) == {"answered": 2, "total": 3, "next": 3}
    stored = StudyStore(folder).unblinded_answers()
    assert [(a["position"], a["confidence"], a["comment"]) for a in stored] == [(1, 5, "x"), (2, 5, "x")]


def test_two_readers_answering_at_the_same_time_lose_nothing(study):
    folder, tokens, server = study
    barrier, results = threading.Barrier(2), {}

    def answer_all(name):
        barrier.wait()
        results[name] = [server.post(f"/api/{tokens[name]}/answer", {"position": p, "choice": "right"})[0]
                         for p in (1, 2, 3)]

    threads = [threading.Thread(target=answer_all, args=(name,)) for name in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {"ann": [200] * 3, "bob": [200] * 3}
    assert len(StudyStore(folder).unblinded_answers()) == 6
