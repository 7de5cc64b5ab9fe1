"""Reader studies: the SQLite store (refusals, blinding, resume, final answers, lock, concurrency, a
killed writer), building a study from DTIs, the analysis statistics and the review command."""

import csv
import json
import multiprocessing
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import write_noisier_synthetic_cohort

from DTISynthLib.cli import main
from DTISynthLib.core.errors import InputError
from DTISynthLib.core.output_layout import (
    ReviewAnalysisOutput,
    StudyFolder,
)
from DTISynthLib.review.analysis import (
    analyze,
    binomial_p,
    cluster_bootstrap,
    cohen_kappa,
    fleiss_kappa,
    wilson_interval,
    write_analysis,
)
from DTISynthLib.io.nifti import read_nifti
from DTISynthLib.review.store import APPLICATION_ID, SCHEMA_VERSION, StudyStore
from DTISynthLib.review.study import (
    DISPLAY_WINDOWS,
    blinded_pair,
    blinding_audit,
    check_practice,
    create_study,
    reader_names,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _store_with_cases(folder, cases=6, readers=("ann", "bob"), training=0):
    """A store of `cases` study cases (images sNN / oNN) and `training` practice cases (images pNN / qNN)."""
    store = StudyStore.create(folder, "test", seed=3)
    store.set_info({"training": str(training), "maps": json.dumps(["fa", "md"])})
    for k in range(cases):
        store.add_case(f"sub-{k // 2}", ("fa", "md")[k % 2], f"s{k:02d}.nii", f"o{k:02d}.nii", "0" * 64, "1" * 64)
    for k in range(training):
        store.add_case(f"practice-{k // 2}", ("fa", "md")[k % 2], f"p{k:02d}.nii", f"q{k:02d}.nii", "0" * 64, "1" * 64,
                       practice=True)
    tokens = {name: store.add_reader(name) for name in readers}
    return store, tokens


# ----------------------------------------------------------------------------- the store

def test_a_database_not_ours_or_of_another_version_is_refused(tmp_path):
    with pytest.raises(InputError, match="study.sqlite.*no such file"):
        StudyStore(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    sqlite3.connect(StudyFolder(other).database).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(InputError, match="application_id 0x0"):
        StudyStore(other)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    StudyFolder(garbage).database.write_bytes(b"not a database at all" * 100)
    with pytest.raises(InputError, match="not an SQLite database"):
        StudyStore(garbage)
    StudyStore.create(tmp_path / "newer", "x", 0)
    db = sqlite3.connect(StudyFolder(tmp_path / "newer").database)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(InputError, match=f"schema version {SCHEMA_VERSION}.*version {SCHEMA_VERSION + 1}"):
        StudyStore(tmp_path / "newer")
    with pytest.raises(InputError, match="one exists"):
        StudyStore.create(tmp_path / "newer", "x", 0)
    db = sqlite3.connect(StudyFolder(tmp_path / "newer").database)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_each_reader_sees_the_synthetic_image_on_each_side_equally_often_per_map(tmp_path):
    """Blocked randomisation: for 20 readers of 3 maps x 7 subjects (and 5 training cases), at every
    point of each reader's presentation and per map, the synthetic image has been on the left and on the
    right equally often or one case apart (independent draws gave one reader 6 of 6 on the right); the
    order differs between readers and is the same again from the recorded seed."""
    from DTISynthLib.review.store import balanced_sides

    store = StudyStore.create(tmp_path / "a", "test", seed=11)
    store.set_info({"training": "5", "maps": json.dumps(["fa", "md", "color"])})
    for k in range(27):  # 21 study cases, 6 practice cases
        store.add_case(f"sub-{k // 3}", ("fa", "md", "color")[k % 3], f"s{k:02d}.nii", f"o{k:02d}.nii", "0" * 64,
                       "1" * 64, practice=k >= 21)
    maps = {c["synthetic_image"]: c["map"] for c in store.cases(practice=True)}
    orders = []
    for r in range(20):
        reader = store.reader_for_token(store.add_reader(f"reader {r}"))
        shown = [store.presentation(reader, k) for k in range(1, 27)]
        for training in (True, False):
            lead = {}
            for p in (p for p in shown if p.training == training):
                synthetic = p.left_image if p.left_image in maps else p.right_image
                side = 1 if p.left_image == synthetic else -1
                lead[maps[synthetic]] = lead.get(maps[synthetic], 0) + side
                assert abs(lead[maps[synthetic]]) <= 1, (r, training, lead)
        orders.append([p.left_image for p in shown if not p.training])
    assert len({tuple(o) for o in orders}) == 20
    again = StudyStore.create(tmp_path / "b", "test", seed=11)
    again.set_info({"training": "5"})
    for c in store.cases(practice=True):
        again.add_case(c["subject"], c["map"], c["synthetic_image"], c["original_image"], "0" * 64, "1" * 64,
                       practice=c["practice"])
    reader = again.reader_for_token(again.add_reader("reader 0"))
    assert [again.presentation(reader, k).left_image for k in range(6, 27)] == orders[0]
    # the blocks are drawn: over many seeds, each side leads a map's first block about half the time
    first = [balanced_sides(["fa", "md", "fa"], np.random.default_rng(seed))[0] for seed in range(400)]
    assert 0.4 < np.mean(first) < 0.6


def test_the_diffusivity_windows_show_brain_tissue_near_mid_grey():
    """MD / AD / RD: the median of the phantom's white and grey matter at grey level 100-150 of 255 in
    the study's display window (0-3e-3 mm^2/s put it at 62-90: tissue dark, its noise hard to see)."""
    from DTISynthLib.fit.tensor_maps import compute_maps
    from DTISynthLib.review.study import DISPLAY_WINDOWS
    from DTISynthLib.simulation.cohort import draw_subject, simulate_subject

    subject = simulate_subject(draw_subject("sub-001", 4242), "sampled", grid=(48, 48, 28), noise=False)
    tissue = subject.tissue[..., :2].sum(-1) > 0.5  # white and grey matter fractions
    maps = compute_maps(subject.truth_tensor, tissue, ("md", "ad", "rd"), policy="clip")
    for kind in ("md", "ad", "rd"):
        low, high = DISPLAY_WINDOWS[kind]
        grey = 255 * (np.median(maps[kind][tissue]) - low) / (high - low)
        assert 100 <= grey <= 150, (kind, grey)


def test_tokens_presentations_sides_and_resume(tmp_path):
    store, tokens = _store_with_cases(tmp_path)
    ann = store.reader_for_token(tokens["ann"])
    assert ann.name == "ann" and store.reader_for_token("forged") is None and store.reader_for_token("") is None
    raw = StudyFolder(tmp_path).database.read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("study.sqlite-*"))
    assert tokens["ann"].encode() not in raw  # only the hash is stored
    shown = [store.presentation(ann, k) for k in range(1, 7)]
    assert store.presentation(ann, 7) is None
    assert sorted(p.left_image[1:] for p in shown) == [f"{k:02d}.nii" for k in range(6)]
    sides = [("left" if p.left_image.startswith("s") else "right") for p in shown]
    assert 0 < sides.count("left") < 6  # drawn, not constant (seed 3)
    bob = store.reader_for_token(tokens["bob"])
    assert [store.presentation(bob, k).left_image for k in range(1, 7)] != [p.left_image for p in shown]
    # Only a case shown to the reader can be answered, and cases are shown in order: a script cannot
    # answer what was never on screen (it was stored with 0 s of reading), nor skip ahead.
    assert store.next_position(ann) == 1
    with pytest.raises(InputError, match="^answer: expected case 1 shown to this reader before it is answered; "
                                         r"found case 1 never shown \(mark_shown\)$"):
        store.answer(ann, 1, "left", 4, "grainy")
    assert store.mark_shown(ann, 1) and not store.mark_shown(ann, 3)  # 3 is not reached yet
    store.answer(ann, 1, "left", 4, "grainy")
    with pytest.raises(InputError, match="case 3 never shown"):
        store.answer(ann, 3, "right", 2)
    assert store.mark_shown(ann, 2)
    store.answer(ann, 2, "right", 2)
    assert store.next_position(ann) == 3 and store.progress(ann) == (2, 6)
    assert store.presentation(ann, 1).answer == "left" and store.presentation(ann, 3).answer is None
    # Final answers: a retried identical answer is a no-op; another side, confidence or comment is refused.
    assert store.answer(ann, 1, "left", 4, "grainy") is False
    for changed in (("right", 4, "grainy"), ("left", 5, "grainy"), ("left", 4, None)):
        with pytest.raises(InputError, match="answers are final.*already answered left with confidence 4"):
            store.answer(ann, 1, *changed)
    for bad, match in ((("up", 3), "left or right"), (("left", 6), "confidence"), (("left", 0), "confidence"),
                       (("left", None), "confidence from 1"), (("left", True), "confidence"),
                       (("left", 3, "x" * 2001), "at most 2000 characters"), (("left", 3, None, -1.0), "paused")):
        with pytest.raises(InputError, match=match):
            store.answer(ann, 3, *bad)
    with pytest.raises(InputError, match="a case position of this reader"):
        store.answer(ann, 99, "left", 3)
    assert store.progress(ann) == (2, 6)
    # A reader's images are their own cases' (here every reader has every case).
    assert store.reader_images(ann) == {f"{s}{k:02d}.nii" for s in "so" for k in range(6)}
    with pytest.raises(InputError, match="the study has readers"):
        store.add_case("sub-9", "fa", "a.nii", "b.nii", "0", "1")
    with pytest.raises(InputError, match="a name no other reader"):
        store.add_reader("ann")
    # A lost link: a new token for the same reader, the old one refused from then on.
    renewed = store.reissue_token("ann")
    assert store.reader_for_token(tokens["ann"]) is None and store.reader_for_token(renewed) == ann
    with pytest.raises(InputError, match="one of the study's readers"):
        store.reissue_token("zoe")
    store.lock()
    assert store.locked()
    with pytest.raises(InputError, match="locked"):
        store.answer(ann, 3, "left", 3)
    answers = store.unblinded_answers()
    assert [(a["reader"], a["position"], a["choice"]) for a in answers] == [("ann", 1, "left"), ("ann", 2, "right")]
    assert answers[0]["confidence"] == 4 and answers[0]["comment"] == "grainy" and answers[0]["seconds"] >= 0


def test_a_blank_reader_name_is_refused_and_names_are_taken_stripped(tmp_path, capsys):
    store, _ = _store_with_cases(tmp_path, cases=2, readers=("ann",))
    for blank in ("", "   ", "\t\n", None):
        with pytest.raises(InputError, match="^reader name: expected a name with at least one visible character; "
                           f"found {re.escape(repr(blank))}$"):
            store.add_reader(blank)
    assert main(["review", "add-reader", str(tmp_path), "--name", "  "]) == 2
    assert capsys.readouterr().err == ("error: reader name: expected a name with at least one visible character; "
                                       "found '  '\n")
    # Surrounding white space is dropped, as `create --readers "ann, bob"` drops it: " dan" is not a second "dan".
    assert main(["review", "add-reader", str(tmp_path), "--name", " dan  ", "--jsonl"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["message"].startswith("dan: http://")
    with pytest.raises(InputError, match="a name no other reader of the study has; found 'dan'"):
        store.add_reader("dan ")
    assert [r.name for r in store.readers()] == ["ann", "dan"]
    # `create --readers`: a blank between commas is pointed out, not dropped.
    for readers in ("ann,,bob", "ann, ", " , ", ""):
        with pytest.raises(InputError, match="^--readers: expected a number or a comma list of names, each with at "
                           "least one visible character"):
            reader_names(readers)
    assert reader_names(" ann , bob ") == ["ann", "bob"] and reader_names("2") == ["reader-1", "reader-2"]


def test_the_clock_starts_when_shown_pauses_are_left_out_and_practice_cases_come_first(tmp_path):
    store, tokens = _store_with_cases(tmp_path, cases=6, readers=("ann", "bob"), training=2)
    ann = store.reader_for_token(tokens["ann"])
    first, second, third = (store.presentation(ann, k) for k in (1, 2, 3))
    assert (first.training, first.number, first.total) == (True, 1, 2) and second.training
    # practice cases are not study cases: other images, and the study's cases are only the study's
    assert {first.left_image[0], second.left_image[0]} <= {"p", "q"} and len(store.cases()) == 6
    assert [c["practice"] for c in store.cases(practice=True)] == [False] * 6 + [True] * 2
    assert (third.training, third.number, third.total) == (False, 1, 6)
    assert store.presentation(ann, 9) is None and store.progress(ann) == (0, 6) and store.training_cases(ann) == 2
    study = [store.presentation(ann, k) for k in range(3, 9)]
    assert sorted(p.left_image[1:] for p in study) == [f"{k:02d}.nii" for k in range(6)]  # every case once
    # Reading a case records nothing (an organiser looking, a prefetch); mark_shown starts its clock, once.
    with sqlite3.connect(StudyFolder(tmp_path).database) as db:
        assert db.execute("SELECT COUNT(*) FROM presentations WHERE shown_at IS NOT NULL").fetchone()[0] == 0
    assert not store.mark_shown(ann, 3) and not store.mark_shown(ann, 99)  # cases are shown in order
    for position, choice, confidence in ((1, "left", 1), (2, "right", 2)):
        assert store.mark_shown(ann, position)
        store.answer(ann, position, choice, confidence)
    assert store.mark_shown(ann, 3)
    with sqlite3.connect(StudyFolder(tmp_path).database) as db:
        started = db.execute("SELECT shown_at FROM presentations WHERE position = 3 AND reader_id = ?",
                             (ann.id,)).fetchone()[0]
        db.execute("UPDATE presentations SET shown_at = '2026-01-01T10:00:00.000+00:00' WHERE position = 3")
    assert started is not None
    store.mark_shown(ann, 3)  # shown again (a reload): the first showing counts
    store.answer(ann, 3, "right", 5, paused_seconds=30.0)
    assert store.progress(ann) == (1, 6) and store.next_position(ann) == 4
    answers = store.unblinded_answers()
    assert [a["position"] for a in answers] == [3]  # training answers are never analysed
    elapsed = (datetime.fromisoformat(answers[0]["answered_at"])
               - datetime.fromisoformat("2026-01-01T10:00:00.000+00:00")).total_seconds()
    assert answers[0]["seconds"] == pytest.approx(elapsed - 30.0) and answers[0]["paused_seconds"] == 30.0
    assert [a["training"] for a in store.unblinded_answers(training=True)] == [True, True, False]


def _answer_all(folder, token, results):
    store = StudyStore(folder)
    reader = store.reader_for_token(token)
    done = 0
    for position in range(1, store.progress(reader)[1] + 1):
        store.mark_shown(reader, position)
        done += store.answer(reader, position, "left" if position % 2 else "right", 3)
    results.put(done)


def test_readers_answering_at_the_same_time_lose_nothing(tmp_path):
    store, tokens = _store_with_cases(tmp_path, cases=40, readers=("a", "b", "c", "d"))
    results = multiprocessing.get_context("spawn").Queue()
    workers = [multiprocessing.get_context("spawn").Process(target=_answer_all, args=(tmp_path, t, results))
               for t in tokens.values()]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    assert sorted(results.get(timeout=5) for _ in workers) == [40] * 4
    answers = store.unblinded_answers()
    assert len(answers) == 160
    assert all(a["choice"] == ("left" if a["position"] % 2 else "right") for a in answers)


KILLED_WRITER = """
import sys
from DTISynthLib.review.store import StudyStore
store = StudyStore(sys.argv[1])
reader = store.reader_for_token(sys.argv[2])
for position in range(1, 10001):
    store.mark_shown(reader, position)
    store.answer(reader, position, "left", 3)
    print(position, flush=True)  # printed only after the commit returned: what a page would confirm
"""


def test_every_confirmed_answer_survives_kill_9_of_the_writer(tmp_path):
    store, tokens = _store_with_cases(tmp_path, cases=400, readers=("ann",))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path), tokens["ann"]], env=env,
                              stdout=subprocess.PIPE, text=True)
    confirmed = 0
    while confirmed < 40:
        confirmed = int(writer.stdout.readline())
    writer.send_signal(signal.SIGKILL)
    rest = writer.stdout.read().split()
    writer.wait(10)
    confirmed = int(rest[-1]) if rest else confirmed
    stored = {a["position"] for a in store.unblinded_answers()}
    assert set(range(1, confirmed + 1)) <= stored  # nothing confirmed is lost
    assert len(stored) <= confirmed + 1  # at most the one in flight, and whole
    assert StudyStore(tmp_path).next_position(store.reader_for_token(tokens["ann"])) == len(stored) + 1


# ----------------------------------------------------------------------------- statistics

def test_wilson_binomial_and_kappas_against_published_values():
    low, high = wilson_interval(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)  # Wilson (1927) / Newcombe (1998) table
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and round(high, 4) == 0.2775  # exactly 0, not the formula's 5.6e-17
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and round(low, 4) == 0.7225
    assert binomial_p(8, 10) == pytest.approx(0.109375)  # 2 * (1 + 10 + 45) / 1024
    assert binomial_p(5, 10) == pytest.approx(1.0)
    # Cohen (1960)-style 2 x 2: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> po 0.7, pe 0.5, kappa 0.4
    first = [1] * 25 + [0] * 25
    second = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert cohen_kappa(first, second) == pytest.approx(0.4)
    # Fleiss (1971) worked example as given by Wikipedia: 10 items, 14 raters, 5 categories -> 0.210
    counts = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
              [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert round(fleiss_kappa(counts), 3) == 0.210
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([[1, 1], [2, 1]])


def test_analysis_counts_each_map_reader_and_agreement():
    rng = np.random.default_rng(0)
    answers = []
    for case in range(30):
        map_name = ("fa", "md", "color")[case % 3]
        for reader in ("ann", "bob", "cid"):
            chosen = bool(case % 3 != 2 or reader == "ann") if case < 27 else bool(rng.integers(0, 2))
            answers.append({"reader": reader, "case": case, "map": map_name, "synthetic_chosen": chosen,
                            "seconds": 2.0 + case, "confidence": 1 + (case + len(reader)) % 5,
                            "comment": "grainy" if case == 4 and reader == "bob" else None, "subject": "s",
                            "position": case + 1, "choice": "left",
                            "synthetic_side": "left" if chosen else "right"})
    tables = analyze(answers, ["color", "fa", "md"])
    by_map = {r["map"]: r for r in tables["noisier"]}
    for map_name in ("color", "fa", "md", "pooled"):
        own = [a for a in answers if map_name in ("pooled", a["map"])]
        assert by_map[map_name]["answers"] == len(own)
        assert by_map[map_name]["synthetic_noisier"] == sum(a["synthetic_chosen"] for a in own)
    assert by_map["fa"]["p_binomial"] < 0.001 and by_map["fa"]["ci95_low"] > 0.8  # 30 of 30 (fa: cases 1, 4, ...)
    assert [r["reader"] for r in tables["readers"]] == ["ann", "bob", "cid"]
    assert tables["readers"][0]["median_seconds"] == 16.5
    pooled = tables["agreement"][-1]
    assert pooled["method"] == "Fleiss" and pooled["readers"] == 3 and pooled["cases"] == 30
    two = analyze([a for a in answers if a["reader"] != "cid"], ["color", "fa", "md"])["agreement"][-1]
    assert two["method"] == "Cohen"
    assert tables["reader_by_map"][1]["color"] == "{}/10".format(
        sum(a["synthetic_chosen"] for a in answers if a["reader"] == "bob" and a["map"] == "color"))
    # Confidence: per level, and the weighted proportion by hand.
    levels = {r["confidence"]: r for r in tables["by_confidence"]}
    for level in range(1, 6):
        own = [a for a in answers if a["confidence"] == level]
        assert levels[level]["answers"] == len(own)
        assert levels[level]["synthetic_noisier"] == sum(a["synthetic_chosen"] for a in own)
    weights = np.array([a["confidence"] for a in answers])
    picked = np.array([a["synthetic_chosen"] for a in answers])
    assert by_map["pooled"]["proportion_confidence_weighted"] == pytest.approx((weights * picked).sum() / weights.sum())
    assert [(c["reader"], c["comment"]) for c in tables["comments"]] == [("bob", "grainy")]


def test_the_side_table_separates_a_side_habit_from_judging_the_synthetic_noisier():
    """A reader who always picks the left image, on balanced sides, is right half the time: the side
    table shows the habit (20 of 20 left, p < 1e-5; synthetic 'noisier' on the left always, on the
    right never) and a reader who always finds the synthetic noisier shows no side bias."""
    from DTISynthLib.review.analysis import side_balance

    answers = []
    for reader in ("lefty", "fair"):
        for case in range(20):
            side = ("left", "right")[case % 2]
            choice = "left" if reader == "lefty" else side
            answers.append({"reader": reader, "case": case, "map": ("fa", "md")[case // 10], "choice": choice,
                            "synthetic_side": side, "synthetic_chosen": choice == side})
    rows = {r["reader"]: r for r in side_balance(answers, ["fa", "md"])}
    assert list(rows) == ["lefty", "fair", "pooled"]
    lefty, fair, pooled = rows["lefty"], rows["fair"], rows["pooled"]
    assert (lefty["synthetic_left_fa"], lefty["synthetic_left_md"]) == ("5/10", "5/10")
    assert lefty["chose_left"] == 20 and lefty["chose_left_share"] == 1.0 and lefty["p_side_bias"] < 1e-5
    assert (lefty["synthetic_noisier_when_left"], lefty["synthetic_noisier_when_right"]) == (1.0, 0.0)
    assert fair["chose_left"] == 10 and fair["p_side_bias"] == 1.0
    assert (fair["synthetic_noisier_when_left"], fair["synthetic_noisier_when_right"]) == (1.0, 1.0)
    assert pooled["answers"] == 40 and pooled["chose_left"] == 30 and pooled["synthetic_left_fa"] == "10/20"


def test_an_interim_analysis_counts_readers_past_half_the_cases_and_lists_everyone():
    """Two readers through 15 cases, a third who has answered 2, a fourth registered without answers: the
    pooled proportion, its clustered interval and kappa are the first two's (kappa over their 15 cases,
    not the 2 all three answered); every registered reader is listed with their count."""
    answers = []
    for case in range(15):
        for reader in ("ann", "bob"):
            chosen = case % 3 != 0 if reader == "ann" else case % 4 != 0
            answers.append({"reader": reader, "case": case, "map": "fa", "synthetic_chosen": chosen, "seconds": 3.0,
                            "confidence": 3, "choice": "left", "synthetic_side": "left" if chosen else "right"})
    two = analyze(answers, ["fa"], 15, ["ann", "bob"])
    late = [{"reader": "cid", "case": c, "map": "fa", "synthetic_chosen": False, "seconds": 2.0, "confidence": 1,
             "choice": "right", "synthetic_side": "left"} for c in (0, 1)]
    interim = analyze(answers + late, ["fa"], 15, ["ann", "bob", "cid", "dan"])
    assert interim["counted"]["readers"] == ["ann", "bob"]
    for key in ("answers", "proportion", "ci95_low_clustered", "ci95_high_clustered"):
        assert interim["noisier"][-1][key] == two["noisier"][-1][key], key
    assert interim["agreement"][-1]["cases"] == 15 and interim["agreement"][-1]["readers"] == 2
    assert interim["agreement"][-1]["kappa"] == two["agreement"][-1]["kappa"]
    rows = {r["reader"]: r for r in interim["readers"]}
    assert list(rows) == ["ann", "bob", "cid", "dan"]
    assert (rows["cid"]["answers"], rows["cid"]["counted"], rows["dan"]["answers"], rows["dan"]["counted"]) == \
        (2, False, 0, False)
    # every answer counts while nobody has half the cases yet
    early = analyze(late, ["fa"], 15, ["cid"])
    assert early["counted"]["readers"] == ["cid"] and early["noisier"][-1]["answers"] == 2


def test_reading_time_outliers_are_listed_not_removed():
    """A 0.4 s answer and one of 60 s among a reader's 4-6 s are listed (fast, slow) and still counted."""
    from DTISynthLib.review.analysis import reading_outliers

    seconds = [4.0, 5.0, 6.0, 0.4, 60.0, 5.5]
    answers = [{"reader": "ann", "subject": "s", "map": "fa", "position": k + 1, "case": k, "seconds": t,
                "synthetic_chosen": True, "confidence": 3, "choice": "left", "synthetic_side": "left"}
               for k, t in enumerate(seconds)]
    assert [(r["position"], r["reason"]) for r in reading_outliers(answers)] == [(4, "fast"), (5, "slow")]
    tables = analyze(answers, ["fa"])
    assert len(tables["reading_outliers"]) == 2 and tables["noisier"][-1]["answers"] == 6


def test_the_clustered_interval_widens_when_answers_cluster_by_reader():
    """Two readers, 40 cases: one always picks the synthetic map, the other never. Answers treated as
    independent give a tight interval around 0.5; resampling readers shows the study cannot tell."""
    answers = [{"reader": r, "case": c, "synthetic_chosen": r == "ann"} for r in ("ann", "bob") for c in range(40)]
    wilson = wilson_interval(40, 80)
    low, high = cluster_bootstrap(answers)
    assert wilson[1] - wilson[0] < 0.25 and (low, high) == (0.0, 1.0)
    assert cluster_bootstrap(answers) == (low, high)  # seeded: the same study, the same interval
    # Unclustered answers (every reader and case alike): the two-way bootstrap is conservative (Owen 2007:
    # the answers' own variance enters through both resamplings), about 1.5 x the Wilson width here.
    rng = np.random.default_rng(3)
    mixed = [{"reader": r, "case": c, "synthetic_chosen": bool(rng.random() < 0.7)}
             for r in range(8) for c in range(60)]
    k = sum(a["synthetic_chosen"] for a in mixed)
    w_low, w_high = wilson_interval(k, len(mixed))
    low, high = cluster_bootstrap(mixed)
    assert 1.0 < (high - low) / (w_high - w_low) < 1.7 and low < k / len(mixed) < high
    assert cluster_bootstrap([{"reader": "a", "case": 1, "synthetic_chosen": True}] * 3) == (1.0, 1.0)
    assert all(np.isnan(cluster_bootstrap([])))


def test_a_map_nobody_judged_synthetic_noisier_is_analysed(tmp_path):
    store, tokens = _store_with_cases(tmp_path / "study", cases=4, readers=("ann",))
    ann = store.reader_for_token(tokens["ann"])
    synthetic = {c["synthetic_image"] for c in store.cases()}
    for position in range(1, 5):  # always the original: 0 "synthetic noisier" for every map
        shown = store.presentation(ann, position)
        store.mark_shown(ann, position)
        store.answer(ann, position, "right" if shown.left_image in synthetic else "left", 3)
    tables = write_analysis(store, tmp_path / "analysis")
    assert [r["synthetic_noisier"] for r in tables["noisier"]] == [0, 0, 0]
    assert [r["ci95_low"] for r in tables["noisier"]] == [0.0, 0.0, 0.0]
    assert ReviewAnalysisOutput(tmp_path / "analysis").figure.stat().st_size > 1000


# ----------------------------------------------------------------------------- a study from DTIs

@pytest.fixture(scope="module")
def study_inputs(tmp_path_factory):
    """Two tiny phantom subjects; their 'synthetic' DTI is the acquired one with added noise (so the
    synthetic map is the noisier one, known)."""
    return write_noisier_synthetic_cohort(tmp_path_factory.mktemp("review"), 2, noise=0.08)


def test_a_study_from_dtis_is_blinded_and_complete(study_inputs, tmp_path, monkeypatch):
    import random

    import DTISynthLib.io.nifti as nifti

    original, synthetic = study_inputs
    written = []
    for name in ("write_nifti", "write_nifti_rgb24"):
        monkeypatch.setattr(nifti, name, lambda path, *a, _write=getattr(nifti, name), **k: (
            written.append(Path(path).name), _write(path, *a, **k))[1])
    tokens = create_study(original, synthetic, tmp_path / "study", readers="ann,bob", seed=7, rng=random.Random(1))
    store = StudyStore(tmp_path / "study")
    cases = store.cases()
    # The two files of a case are written in a random order, and all carry one modification time.
    first = [written.index(c["synthetic_image"]) < written.index(c["original_image"]) for c in cases]
    assert 0 < sum(first) < len(cases)
    assert len({p.stat().st_mtime_ns for p in StudyFolder(tmp_path / "study").images.iterdir()}) == 1
    assert len(cases) == 10 and {c["map"] for c in cases} == {"color", "fa", "md", "ad", "rd"}
    layout = StudyFolder(tmp_path / "study")
    files = sorted(p.name for p in layout.images.iterdir())
    assert len(files) == 20
    for name in files:  # opaque: 16 hex digits
        assert len(name) == len("0123456789abcdef.nii") and int(name[:16], 16) >= 0
    listing = " ".join(str(p) for p in (tmp_path / "study").rglob("*")).lower()
    assert "synth" not in listing and "orig" not in listing
    import nibabel as nib

    from DTISynthLib.core.checksums import sha256_file
    from DTISynthLib.evaluation.comparison import find_subjects, subject_maps

    compared = subject_maps(*find_subjects(original, synthetic)[0][1:])
    for case in cases:
        synthetic_file, original_file = layout.image(case["synthetic_image"]), layout.image(case["original_image"])
        assert synthetic_file.stat().st_size == original_file.stat().st_size  # no size tells them apart
        assert sha256_file(synthetic_file) == case["synthetic_sha256"]
        headers = [nib.load(p).header for p in (synthetic_file, original_file)]
        assert headers[0]["descrip"] == headers[1]["descrip"] and headers[0]["datatype"] == headers[1]["datatype"]
        if case["map"] == "color":
            assert int(headers[0]["datatype"]) == 128  # RGB24
        else:
            data = [np.asarray(nib.load(p).dataobj) for p in (synthetic_file, original_file)]
            # one zero mask; nothing beyond the display window (the screen shows neither)
            np.testing.assert_array_equal(data[0] == 0, data[1] == 0)
            low, high = DISPLAY_WINDOWS[case["map"]]
            assert all(low <= d.min() and d.max() <= high for d in data)
            if case["subject"] == "sub-001":  # each image is its source's map, as evaluate computes it, blinded
                expected = blinded_pair(compared.maps["synthetic"][case["map"]], compared.maps["original"][case["map"]],
                                        case["map"])
                for found, wanted in zip(data, expected):
                    np.testing.assert_array_equal(found, wanted.astype(np.float32))
    audit = json.loads(store.info()["blinding_audit"])  # recorded: nothing the screen hides tells them apart
    assert {(r["map"], r["statistic"]) for r in audit} >= {("pooled", "zero voxels"), ("md", "maximum")}
    assert all(r["synthetic_larger"] == r["synthetic_smaller"] == 0 for r in audit if r["statistic"] == "zero voxels")
    assert json.loads(store.info()["display"])["fa"] == [0.0, 1.0]
    assert set(tokens) == {"ann", "bob"} and all(store.reader_for_token(t) for t in tokens.values())
    with pytest.raises(InputError, match="a new or empty folder"):
        create_study(original, synthetic, tmp_path / "study")
    with pytest.raises(InputError, match="--maps"):
        create_study(original, synthetic, tmp_path / "other", maps=["fa", "t1"])


def test_the_blinding_audit_refuses_files_that_name_the_synthetic_side(tmp_path):
    """Ten FA cases whose synthetic file has one zero voxel more each time: the sign test (p = 0.002,
    below 0.05 over 2 tests) names the statistic; the same files blinded (blinded_pair) pass; a header
    that differs is refused at once."""
    from DTISynthLib.io.nifti import write_nifti

    rng = np.random.default_rng(0)
    raw, blinded = [], []
    for k in range(10):
        original = rng.uniform(0.1, 0.9, (6, 6, 4))
        synthetic = original + rng.normal(0, 0.05, original.shape)
        synthetic[0, 0, k % 4] = 0.0  # the synthetic's mask lost an edge voxel
        for folder, pair in (("raw", (synthetic, original)), ("blinded", blinded_pair(synthetic, original, "fa"))):
            paths = [tmp_path / folder / f"{k}{side}.nii" for side in "so"]
            paths[0].parent.mkdir(exist_ok=True)
            for path, volume in zip(paths, pair):
                write_nifti(path, volume.astype(np.float32), np.eye(4))
            (raw if folder == "raw" else blinded).append(("fa", *paths))
    rows, refusal = blinding_audit(raw)
    assert refusal.startswith("zero voxels of the fa files: synthetic larger in 10, smaller in 0 of 10 cases")
    assert "p = 0.002 < 0.025, 0.05 Bonferroni-corrected over 2 tests" in refusal
    rows, refusal = blinding_audit(blinded)
    assert refusal is None and {r["statistic"] for r in rows} >= {"zero voxels", "maximum", "distinct values", "mean"}
    # the noisier file's larger maximum is what the screen shows: reported (10 of 10), not refused
    maximum = next(r for r in rows if (r["map"], r["statistic"]) == ("fa", "maximum"))
    assert maximum["synthetic_larger"] == 10 and maximum["p_sign_test"] < 0.01
    write_nifti(blinded[0][1], np.zeros((6, 6, 4), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    assert blinding_audit(blinded)[1] == "header of a fa case differs between the two files"


def test_the_practice_pair_is_the_phantom_at_two_noise_levels():
    """Generated practice: both maps of the pair are the phantom's, the noisier one about SNR 40 / 12 times
    as far from the noise-free fit (FA, MD in white and grey matter)."""
    from DTISynthLib.fit.brain_mask import brain_mask
    from DTISynthLib.fit.tensor_fit import fit_tensors
    from DTISynthLib.fit.tensor_maps import compute_maps
    from DTISynthLib.review.study import PRACTICE_SNR, practice_maps
    from DTISynthLib.simulation.cohort import draw_subject, simulate_subject

    grid = (40, 40, 16)
    pair, affine = practice_maps(1, 5, grid)
    dti = simulate_subject(draw_subject("practice-1", 5), grid=grid, noise=False).dti
    mask = brain_mask(dti.mean_b0())
    truth = compute_maps(fit_tensors(dti, mask, "ols").tensor, mask, ("fa", "md"), policy="clip")
    assert np.allclose(affine, dti.affine) and set(pair["synthetic"]) >= {"fa", "md", "ad", "rd", "color"}
    for name in ("fa", "md"):
        errors = [np.median(np.abs(pair[source][name] - truth[name])[mask]) for source in ("synthetic", "original")]
        assert 2.0 < errors[0] / errors[1] < 1.5 * PRACTICE_SNR[0] / PRACTICE_SNR[1], (name, errors)


def test_practice_subjects_are_never_study_subjects(study_inputs, tmp_path):
    """The organiser's practice folders: both or neither, no study subject (by name or file), enough cases."""
    original, synthetic = study_inputs
    study = [("sub-001", original / "elsewhere.nii.gz", synthetic / "sub-001")]
    with pytest.raises(InputError, match="both practice folders, or neither"):
        check_practice(1, ["fa"], practice_original=original)
    with pytest.raises(InputError, match="not study subjects.*found study subject sub-001"):
        check_practice(1, ["fa"], original, synthetic, study)
    other, other_synthetic = write_noisier_synthetic_cohort(tmp_path / "other", 1, noise=0.05)
    renamed = [("sub-99", path, folder) for _, path, folder in check_practice(1, ["fa"], other, other_synthetic)]
    with pytest.raises(InputError, match="not study subjects.*found study subject sub-001"):  # the same file
        check_practice(1, ["fa"], other, other_synthetic, renamed)
    with pytest.raises(InputError, match="^--practice: expected at most the 2 practice cases"):
        check_practice(3, ["fa", "md"], other, other_synthetic, study[:0])
    assert check_practice(0, ["fa"], other, other_synthetic, study) is None  # no practice asked for
    assert check_practice(2, ["fa"]) is None  # generated


def test_review_commands_create_analyze_export_lock(study_inputs, tmp_path, capsys):
    original, synthetic = study_inputs
    study = tmp_path / "study"
    assert main(["review", "create", "--original", str(original), "--synthetic", str(synthetic), "--out", str(study),
                 "--maps", "fa,md", "--readers", "2", "--seed", "1", "--practice", "1", "--port", "9001",
                 "--jsonl"]) == 0
    result = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"result"' in line][-1]
    links = [line.split(": ", 1)[1] for line in result["message"].splitlines()[1:]]
    assert len(links) == 2 and all(link.startswith("http://127.0.0.1:9001/r/") for link in links)
    store = StudyStore(study)
    info = store.info()
    assert (info["orientation"], info["interpolation"], info["training"], info["port"]) == (
        "radiological", "nearest", "1", "9001")
    # practice: a generated phantom pair per map, never a study subject's images; its "synthetic" the noisier
    practice = [c for c in store.cases(practice=True) if c["practice"]]
    assert [(c["subject"], c["map"]) for c in practice] == [("practice-1", "fa"), ("practice-1", "md")]
    assert not {c["subject"] for c in practice} & {c["subject"] for c in store.cases()}
    layout = StudyFolder(study)
    for case in practice:
        noisier, calmer = (read_nifti(layout.image(case[k]))[0] for k in ("synthetic_image", "original_image"))
        inside = (noisier > 0) & (calmer > 0)
        grain = [np.abs(np.diff(v, axis=0))[inside[1:] & inside[:-1]].mean() for v in (noisier, calmer)]
        assert grain[0] > grain[1], (case["map"], grain)  # measured against the truth: test_the_practice_pair...
    # Two readers answer every case: ann always picks the synthetic image, bob always the left one.
    truth = {}
    for link, rule in zip(links, ("synthetic", "left")):
        reader = store.reader_for_token(link.rsplit("/", 1)[1])
        assert store.training_cases(reader) == 1
        for position in range(1, store.progress(reader)[1] + 2):
            shown = store.presentation(reader, position)
            synthetic_side = "left" if shown.left_image in {c["synthetic_image"] for c in store.cases(practice=True)} \
                else "right"
            choice = synthetic_side if rule == "synthetic" else "left"
            store.mark_shown(reader, position)
            store.answer(reader, position, choice, 4, "x" * 1900)
            if not shown.training:
                truth[(reader.name, position)] = (choice, choice == synthetic_side)
    assert main(["review", "export", str(study), "--out", str(tmp_path / "answers.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "answers.csv").open()))
    assert {(r["reader"], int(r["position"])): (r["choice"], r["synthetic_chosen"] == "True") for r in rows
            if r["training"] == "False"} == truth
    assert sum(r["training"] == "True" for r in rows) == 2  # exported, flagged; never analysed
    assert main(["review", "analyze", str(study), "--out", str(tmp_path / "analysis")]) == 0
    out = ReviewAnalysisOutput(tmp_path / "analysis")
    noisier = {r["map"]: r for r in csv.DictReader(out.noisier.open())}
    assert int(noisier["pooled"]["answers"]) == 8
    assert int(noisier["pooled"]["synthetic_noisier"]) == sum(chosen for _, chosen in truth.values())
    assert float(noisier["pooled"]["ci95_low_clustered"]) <= float(noisier["pooled"]["proportion"])
    readers = {r["reader"]: r for r in csv.DictReader(out.readers.open())}
    assert readers["reader-1"]["synthetic_noisier"] == "4"
    agreement = {r["map"]: r for r in csv.DictReader(out.agreement.open())}
    assert agreement["pooled"]["method"] == "Cohen" and agreement["pooled"]["cases"] == "4"
    assert len(list(csv.DictReader(out.comments.open()))) == 8
    assert [int(r["answers"]) for r in csv.DictReader(out.by_confidence.open())] == [0, 0, 0, 8, 0]
    report = out.report.read_text()
    assert out.figure.stat().st_size > 1000 and "<td>Cohen</td>" in report and "clustered" in report
    assert json.loads(out.summary.read_text())["answers"] == 8
    # Organiser tools: a new reader, a lost link re-issued, links for the study's port.
    capsys.readouterr()
    assert main(["review", "add-reader", str(study), "--name", "cid", "--jsonl"]) == 0
    link = json.loads(capsys.readouterr().out.splitlines()[-1])["message"].split(": ", 1)[1].split()[0]
    assert link.startswith("http://127.0.0.1:9001/r/") and store.reader_for_token(link.rsplit("/", 1)[1]).name == "cid"
    assert main(["review", "reissue", str(study), "--reader", "reader-1", "--jsonl"]) == 0
    renewed = json.loads(capsys.readouterr().out.splitlines()[-1])["message"].split(": ", 1)[1].split()[0]
    assert store.reader_for_token(links[0].rsplit("/", 1)[1]) is None
    assert store.reader_for_token(renewed.rsplit("/", 1)[1]).name == "reader-1"
    assert main(["review", "reissue", str(study), "--reader", "nobody"]) == 2
    assert "one of the study's readers" in capsys.readouterr().err
    # without --jsonl the link alone is on standard output (`> links.txt` keeps it), the message on stderr
    assert main(["review", "add-reader", str(study), "--name", "dan"]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("dan: http://127.0.0.1:9001/r/") and len(printed.out.splitlines()) == 1
    assert store.reader_for_token(printed.out.strip().rsplit("/", 1)[1]).name == "dan" and "keep it" in printed.err
    # `export | head`: the pipe closes early (the answers are over a pipe buffer), quietly.
    env = dict(os.environ, PYTHONPATH=str(REPO))
    piped = subprocess.run(f"'{sys.executable}' -m DTISynthLib review export '{study}' | head -c 100; "
                           "exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", env=env,
                           capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and piped.stderr == "" and piped.stdout.startswith("reader,subject")
    # `serve` on a port in use: exit 2 and an error event, not a traceback.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        capsys.readouterr()
        assert main(["review", "serve", str(study), "--port", str(taken.getsockname()[1]), "--jsonl"]) == 2
        event = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert event["event"] == "error" and "free to listen on" in event["message"]
    assert main(["review", "lock", str(study)]) == 0
    reader = store.reader_for_token(renewed.rsplit("/", 1)[1])
    with pytest.raises(InputError, match="locked"):
        store.answer(reader, 5, "left", 3)
    capsys.readouterr()
    assert main(["review", "reissue", str(study), "--reader", "reader-1"]) == 2  # a locked study's links are done
    assert "the study is locked" in capsys.readouterr().err
    assert store.reader_for_token(renewed.rsplit("/", 1)[1]).name == "reader-1"  # the old link still names them
