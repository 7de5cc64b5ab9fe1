"""The reader-study store: one SQLite database (output_layout.StudyFolder.database) holding the study,
its cases, its readers, each reader's presentation and their answers.

- WAL journal, synchronous FULL, foreign keys on: an answer the caller saw committed survives a
  killed process (and a power cut); each answer is one transaction (BEGIN IMMEDIATE), so concurrent
  readers serialise on the write lock and lose nothing.
- The database says what it is: PRAGMA application_id APPLICATION_ID and PRAGMA user_version
  SCHEMA_VERSION. Another application's database, or one of another schema version, is refused.
- Blinding: a case's two images are stored under opaque names (random hex); which one is the
  synthetic is in `cases` alone. A reader's case order is a permutation and the side (left / right)
  of the synthetic image is balanced per map (balanced_sides: blocks of two), both drawn from the
  reader's recorded seed: a reader's habit of choosing one side cannot become "synthetic judged
  noisier". Readers are identified by a secret token of which only the
  SHA-256 is stored; a re-issued token replaces it (the old link stops working). The database file is
  the organiser's alone (STORE_PERMISSIONS): readers, in the browser or in Slicer, reach the study only
  through its server (review.server, review.client).
- Practice: cases marked `practice` are not study cases (other images: a generated phantom pair or
  the organiser's practice subjects, never a study subject's). A reader's presentation starts with the
  study's `training` practice cases (drawn among the practice cases per reader, sides balanced per map),
  answered like any other and never analysed, then every study case once. Positions and answers of
  practice cases carry `training` = 1.
- Reading time: `shown_at` is when the reader's page had both images on screen (mark_shown), not
  when the case was requested; a pause the reader took is recorded with the answer (paused_seconds)
  and left out of `seconds`.
- An answer is a side and a required confidence (CONFIDENCE_SCALE), with an optional comment of at
  most COMMENT_MAX characters; answers are final, and only to a case shown to that reader (mark_shown:
  a script or a second client cannot answer what was never on screen).
- Times are UTC, ISO 8601 with seconds to 3 decimals.
"""

import hashlib
import os
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.output_layout import StudyFolder

APPLICATION_ID = 0x44545352  # "DTSR": a DTISynth reader study
SCHEMA_VERSION = 3  # 2: training cases, required confidence, pauses, shown_at set by the page; 3: practice cases
SIDES = ("left", "right")
CONFIDENCE_SCALE = {1: "guess", 2: "unsure", 3: "fairly sure", 4: "sure", 5: "certain"}
COMMENT_MAX = 2000  # characters
STORE_PERMISSIONS = 0o600  # read and write by the organiser (the file's owner) alone
PAUSE_MAX = 30 * 86400.0  # seconds away from a case (paused, hidden, the browser closed) an answer may carry

SCHEMA = """
CREATE TABLE study (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cases (
    id INTEGER PRIMARY KEY,
    subject TEXT NOT NULL,
    map TEXT NOT NULL,
    synthetic_image TEXT NOT NULL UNIQUE,
    original_image TEXT NOT NULL UNIQUE,
    synthetic_sha256 TEXT NOT NULL,
    original_sha256 TEXT NOT NULL,
    practice INTEGER NOT NULL DEFAULT 0 CHECK (practice IN (0, 1)),
    UNIQUE (subject, map));
CREATE TABLE readers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL UNIQUE,
    seed INTEGER NOT NULL);
CREATE TABLE presentations (
    reader_id INTEGER NOT NULL REFERENCES readers(id),
    position INTEGER NOT NULL,
    case_id INTEGER NOT NULL REFERENCES cases(id),
    synthetic_side TEXT NOT NULL CHECK (synthetic_side IN ('left', 'right')),
    training INTEGER NOT NULL DEFAULT 0 CHECK (training IN (0, 1)),
    shown_at TEXT,
    PRIMARY KEY (reader_id, position));
CREATE TABLE answers (
    reader_id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right')),
    confidence INTEGER NOT NULL CHECK (confidence BETWEEN 1 AND 5),
    comment TEXT,
    shown_at TEXT NOT NULL,
    answered_at TEXT NOT NULL,
    paused_seconds REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (reader_id, position),
    FOREIGN KEY (reader_id, position) REFERENCES presentations(reader_id, position));
"""


def now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def balanced_sides(maps, rng):
    """Sides (0: left, 1: right) of the synthetic image for cases shown in this order whose maps are
    `maps`: per map, blocks of two cases in presentation order, each block a random one of (left, right)
    and (right, left) (blocked randomisation, block size 2), so for every map and at every point of the
    presentation the synthetic image has been on each side equally often or one case apart. rng: a
    numpy Generator (the reader's recorded seed)."""
    sides = np.zeros(len(maps), dtype=int)
    positions = {}
    for k, map_name in enumerate(maps):
        positions.setdefault(map_name, []).append(k)
    for index in positions.values():  # maps in order of first appearance: reproducible from the seed
        first = rng.integers(0, 2, (len(index) + 1) // 2)
        sides[index] = np.stack([first, 1 - first], 1).reshape(-1)[:len(index)]
    return sides


def _first_unanswered(db, reader):
    """The reader's first position without an answer (None when done), on an open connection."""
    return db.execute("SELECT MIN(p.position) FROM presentations p LEFT JOIN answers a ON a.reader_id = p.reader_id "
                      "AND a.position = p.position WHERE p.reader_id = ? AND a.choice IS NULL",
                      (reader.id,)).fetchone()[0]


def token_hash(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def reader_name(name):
    """`name` without leading and trailing white space (as `review create --readers a, b` takes names, so
    that " ann" cannot become a second "ann"); a blank name is refused: it would add a nameless reader
    whom the analysis and `reissue --reader` cannot tell apart."""
    if not isinstance(name, str) or not name.strip():
        raise InputError("reader name", "a name with at least one visible character", repr(name))
    return name.strip()


@dataclass(frozen=True)
class Reader:
    id: int
    name: str


@dataclass(frozen=True)
class Presentation:
    """What a reader is shown at `position` (1-based over their whole presentation, training cases
    first): case `number` of `total` (of its kind: training or study), the map kind and the opaque
    image names on each side; `answer` is their choice when already answered."""

    position: int
    total: int
    map: str
    left_image: str
    right_image: str
    answer: str = None
    training: bool = False
    number: int = None


class StudyStore:
    """A reader study's database. Opening checks it is ours and of our schema version; every method
    opens its own short-lived connection, so one store serves several threads or processes."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = StudyFolder(folder).database
        if not self.path.is_file():
            raise InputError(self.path, "a DTISynth reader-study database (dtisynth review create)", "no such file")
        try:
            with self._connect() as db:
                application, version = (db.execute("PRAGMA application_id").fetchone()[0],
                                        db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as error:
            raise InputError(self.path, "a DTISynth reader-study database", f"not an SQLite database ({error})")
        if application != APPLICATION_ID:
            raise InputError(self.path, f"a DTISynth reader-study database (SQLite application_id {APPLICATION_ID:#x})",
                             f"application_id {application:#x}")
        if version != SCHEMA_VERSION:
            raise InputError(self.path, f"study schema version {SCHEMA_VERSION} (this DTISynth)", f"version {version}")

    @staticmethod
    def create(folder, name, seed):
        """A new, empty study database in `folder` (which must not hold one)."""
        path = StudyFolder(folder).database
        if path.exists():
            raise InputError(path, "no study database yet (a study is created once)", "one exists")
        path.parent.mkdir(parents=True, exist_ok=True)
        # The answer key and every reader's answers: the organiser's alone (readers go through the server).
        # Made empty with these permissions before SQLite opens it; SQLite gives its -wal and -shm files the
        # database's permissions.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, STORE_PERMISSIONS))
        os.chmod(path, STORE_PERMISSIONS)  # whatever the umask
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # One transaction (executescript would commit a pending one first, so it opens it).
            db.executescript(f"BEGIN; {SCHEMA} PRAGMA application_id = {APPLICATION_ID}; "
                             f"PRAGMA user_version = {SCHEMA_VERSION};")
            db.executemany("INSERT INTO study VALUES (?, ?)",
                           [("name", name), ("seed", str(int(seed))), ("created", now()), ("locked", "0")])
            db.execute("COMMIT")
        finally:
            db.close()
        return StudyStore(folder)

    def _connect(self):
        db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA synchronous = FULL")
        return _Closing(db)

    # ------------------------------------------------------------------ building
    def info(self):
        with self._connect() as db:
            return dict(db.execute("SELECT key, value FROM study"))

    def set_info(self, entries):
        """Set study entries {key: text} (name, seed, created, locked are the store's own)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO study VALUES (?, ?)", list(entries.items()))
            db.execute("COMMIT")

    def add_case(self, subject, map_name, synthetic_image, original_image, synthetic_sha256, original_sha256,
                 practice=False):
        """A case (its two images' opaque names and checksums); `practice`: a practice case (for practice
        pairs, "synthetic" is the noisier image), never a study case."""
        with self._connect() as db:
            self._check_unlocked(db)
            if db.execute("SELECT COUNT(*) FROM readers").fetchone()[0]:
                raise InputError(self.path, "cases added before readers (presentations hold every case)",
                                 "the study has readers")
            return db.execute("INSERT INTO cases (subject, map, synthetic_image, original_image, synthetic_sha256, "
                              "original_sha256, practice) VALUES (?, ?, ?, ?, ?, ?, ?)",
                              (subject, map_name, synthetic_image, original_image, synthetic_sha256,
                               original_sha256, int(bool(practice)))).lastrowid

    def add_reader(self, name):
        """Add a reader and draw their presentation: the study's `training` practice cases (drawn among
        the practice cases), then every study case once, in an order and with sides (balanced per map, balanced_sides) drawn from a
        seed recorded with them. Returns
        their secret token: shown once, stored only as a hash. The name is taken as reader_name gives it."""
        name = reader_name(name)
        token = secrets.token_urlsafe(18)
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            self._check_unlocked(db)
            info = dict(db.execute("SELECT key, value FROM study"))
            index = db.execute("SELECT COUNT(*) FROM readers").fetchone()[0]
            seed = int(info["seed"]) * 1000 + index
            try:
                reader_id = db.execute("INSERT INTO readers (name, token_sha256, seed) VALUES (?, ?, ?)",
                                       (name, token_hash(token), seed)).lastrowid
            except sqlite3.IntegrityError:
                db.execute("ROLLBACK")
                raise InputError("reader name", "a name no other reader of the study has", repr(name))
            listed = db.execute("SELECT id, map, practice FROM cases ORDER BY id").fetchall()
            cases, maps = [row[0] for row in listed if not row[2]], [row[1] for row in listed if not row[2]]
            spare, spare_maps = [row[0] for row in listed if row[2]], [row[1] for row in listed if row[2]]
            rng = np.random.default_rng(seed)
            order = rng.permutation(len(cases))
            drills = rng.permutation(len(spare))[:int(info.get("training", 0))]
            rows = [(spare[i], SIDES[s], 1) for i, s in zip(drills, balanced_sides([spare_maps[i] for i in drills], rng))]
            rows += [(cases[i], SIDES[s], 0) for i, s in zip(order, balanced_sides([maps[i] for i in order], rng))]
            db.executemany("INSERT INTO presentations (reader_id, position, case_id, synthetic_side, training) "
                           "VALUES (?, ?, ?, ?, ?)", [(reader_id, k + 1, *row) for k, row in enumerate(rows)])
            db.execute("COMMIT")
        return token

    def reissue_token(self, name):
        """A new secret token for reader `name` (a lost link); the old one stops working at once. Refused
        on a locked study (its links have nothing left to do)."""
        token = secrets.token_urlsafe(18)
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            self._check_unlocked(db)  # the connection closes unused: nothing is written
            changed = db.execute("UPDATE readers SET token_sha256 = ? WHERE name = ?",
                                 (token_hash(token), name)).rowcount
            db.execute("COMMIT")
        if not changed:
            raise InputError("--reader", "the name of one of the study's readers", repr(name))
        return token

    def lock(self):
        """No more answers, cases or readers."""
        with self._connect() as db:
            db.execute("UPDATE study SET value = '1' WHERE key = 'locked'")

    def locked(self):
        with self._connect() as db:
            return db.execute("SELECT value FROM study WHERE key = 'locked'").fetchone()[0] == "1"

    def _check_unlocked(self, db):
        if db.execute("SELECT value FROM study WHERE key = 'locked'").fetchone()[0] == "1":
            raise InputError(self.path, "an unlocked study", "the study is locked")

    # ------------------------------------------------------------------ reading
    def reader_for_token(self, token):
        """The reader whose token this is, or None."""
        if not isinstance(token, str) or not token:
            return None
        with self._connect() as db:
            row = db.execute("SELECT id, name FROM readers WHERE token_sha256 = ?", (token_hash(token),)).fetchone()
        return Reader(*row) if row else None

    def readers(self):
        with self._connect() as db:
            return [Reader(*row) for row in db.execute("SELECT id, name FROM readers ORDER BY id")]

    def progress(self, reader):
        """(answered, total) of a reader's study cases (training cases not counted)."""
        with self._connect() as db:
            total = db.execute("SELECT COUNT(*) FROM presentations WHERE reader_id = ? AND training = 0",
                               (reader.id,)).fetchone()[0]
            done = db.execute("SELECT COUNT(*) FROM answers a JOIN presentations p ON p.reader_id = a.reader_id "
                              "AND p.position = a.position WHERE a.reader_id = ? AND p.training = 0",
                              (reader.id,)).fetchone()[0]
        return done, total

    def training_cases(self, reader):
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM presentations WHERE reader_id = ? AND training = 1",
                              (reader.id,)).fetchone()[0]

    def presentation(self, reader, position):
        """Position `position` (1-based, training cases first) as this reader sees it, or None past the
        end. Reading it records nothing (mark_shown starts the clock)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT p.synthetic_side, p.training, c.map, c.synthetic_image, c.original_image, a.choice, "
                "(SELECT COUNT(*) FROM presentations q WHERE q.reader_id = p.reader_id AND q.training = p.training), "
                "(SELECT COUNT(*) FROM presentations q WHERE q.reader_id = p.reader_id AND q.training = 1) "
                "FROM presentations p JOIN cases c ON c.id = p.case_id "
                "LEFT JOIN answers a ON a.reader_id = p.reader_id AND a.position = p.position "
                "WHERE p.reader_id = ? AND p.position = ?", (reader.id, position)).fetchone()
        if row is None:
            return None
        side, training, map_name, synthetic, original, answer, count, drills = row
        left, right = (synthetic, original) if side == "left" else (original, synthetic)
        number = position if training else position - drills
        return Presentation(position, count, map_name, left, right, answer, bool(training), number)

    def mark_shown(self, reader, position):
        """Record that the reader's page shows case `position` (both images on screen): the start of its
        reading time, kept from the first time. False for a position the reader does not have or has not
        reached (past their first unanswered one: the page shows cases in order, so showing a later one
        would only serve to answer out of turn)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            reached = _first_unanswered(db, reader)
            changed = 0 if reached is not None and position > reached else db.execute(
                "UPDATE presentations SET shown_at = COALESCE(shown_at, ?) WHERE reader_id = ? AND position = ?",
                (now(), reader.id, position)).rowcount
            db.execute("COMMIT")
        return bool(changed)

    def next_position(self, reader):
        """The first unanswered position of this reader (where they resume), or None when done."""
        with self._connect() as db:
            return _first_unanswered(db, reader)

    def reader_images(self, reader):
        """The opaque image names this reader may load (those of their own cases)."""
        with self._connect() as db:
            rows = db.execute("SELECT c.synthetic_image, c.original_image FROM presentations p "
                              "JOIN cases c ON c.id = p.case_id WHERE p.reader_id = ?", (reader.id,)).fetchall()
        return {name for row in rows for name in row}

    # ------------------------------------------------------------------ answering
    def answer(self, reader, position, choice, confidence, comment=None, paused_seconds=0.0):
        """Record this reader's choice (left / right: the noisier image) and confidence (1-5,
        CONFIDENCE_SCALE) for case `position`, in one transaction. Sending the same answer again is a
        no-op (a retried request, returns False); any other answer to an answered case is refused."""
        if choice not in SIDES:
            raise InputError("answer", "choice left or right", repr(choice))
        if isinstance(confidence, bool) or not isinstance(confidence, int) or confidence not in CONFIDENCE_SCALE:
            raise InputError("answer", "a confidence from 1 (guess) to 5 (certain)", repr(confidence))
        comment = comment or None
        if comment is not None and (not isinstance(comment, str) or len(comment) > COMMENT_MAX):
            raise InputError("answer", f"a comment of at most {COMMENT_MAX} characters",
                             f"{len(comment)} characters" if isinstance(comment, str) else repr(comment))
        paused = float(paused_seconds or 0.0)
        if not 0.0 <= paused < PAUSE_MAX:  # a study may be left overnight, or for a holiday
            raise InputError("answer", f"paused seconds in [0, {PAUSE_MAX:g})", repr(paused_seconds))
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                self._check_unlocked(db)
                row = db.execute("SELECT shown_at FROM presentations WHERE reader_id = ? AND position = ?",
                                 (reader.id, position)).fetchone()
                if row is None:
                    raise InputError("answer", "a case position of this reader", repr(position))
                previous = db.execute("SELECT choice, confidence, comment FROM answers WHERE reader_id = ? "
                                      "AND position = ?", (reader.id, position)).fetchone()
                if previous is not None:
                    if tuple(previous) != (choice, confidence, comment):
                        raise InputError("answer", f"case {position} unanswered (answers are final)",
                                         "already answered {} with confidence {}".format(*previous))
                    db.execute("ROLLBACK")
                    return False
                if row[0] is None:  # its reading time would be 0 s: nothing on screen was judged
                    raise InputError("answer", f"case {position} shown to this reader before it is answered",
                                     f"case {position} never shown (mark_shown)")
                db.execute("INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (reader.id, position, choice, confidence, comment, row[0], now(), paused))
                db.execute("COMMIT")
                return True
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ unblinded (analysis, export)
    def unblinded_answers(self, training=False):
        """Every answer to a study case (with `training`, to the training cases too) with its truth:
        dicts of reader, subject, map, case, position, training, choice, synthetic_side, synthetic_chosen,
        confidence, comment, shown_at, answered_at, paused_seconds, seconds (reading time less pauses)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT r.name, c.subject, c.map, c.id, p.position, p.training, a.choice, p.synthetic_side, "
                "a.confidence, a.comment, a.shown_at, a.answered_at, a.paused_seconds FROM answers a "
                "JOIN readers r ON r.id = a.reader_id "
                "JOIN presentations p ON p.reader_id = a.reader_id AND p.position = a.position "
                "JOIN cases c ON c.id = p.case_id WHERE p.training = 0 OR ? ORDER BY r.id, p.position",
                (int(bool(training)),)).fetchall()
        keys = ("reader", "subject", "map", "case", "position", "training", "choice", "synthetic_side", "confidence",
                "comment", "shown_at", "answered_at", "paused_seconds")
        answers = []
        for row in rows:
            entry = dict(zip(keys, row))
            entry["training"] = bool(entry["training"])
            entry["synthetic_chosen"] = entry["choice"] == entry["synthetic_side"]
            elapsed = (datetime.fromisoformat(entry["answered_at"])
                       - datetime.fromisoformat(entry["shown_at"])).total_seconds()
            entry["seconds"] = max(0.0, elapsed - entry["paused_seconds"])
            answers.append(entry)
        return answers

    def cases(self, practice=False):
        """The study's cases (dicts of the cases table's columns); with `practice`, the practice cases too."""
        with self._connect() as db:
            keys = ("id", "subject", "map", "synthetic_image", "original_image", "synthetic_sha256", "original_sha256",
                    "practice")
            rows = db.execute(f"SELECT {', '.join(keys)} FROM cases WHERE practice = 0 OR ? ORDER BY id",
                              (int(bool(practice)),))
            return [{**dict(zip(keys, row)), "practice": bool(row[-1])} for row in rows]


class _Closing:
    """A connection as a context manager that closes it (sqlite3's own only commits)."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        return self.db

    def __exit__(self, *exc):
        self.db.close()
        return False
