"""A reader's side of the study server (review.server) over HTTP, with the standard library only: what
the browser page asks for, for a reader who reviews in Slicer. The reader's process holds their link
(http://host:port/r/TOKEN) and nothing else: never the study folder, whose store records which image
is the synthetic one and every reader's answers. The server checks everything (the token, the order,
an answer only to a case shown, a locked study); its refusals come back as InputError with its words.
"""

import json
import urllib.error
import urllib.parse
import urllib.request

from ..core.errors import InputError
from .store import Presentation

TIMEOUT = 30  # seconds per request: an answer is one SQLite transaction, an image a few MB on a local network


def parse_reader_link(text):
    """(server base URL, token) of a reader link http(s)://host:port/r/TOKEN (a trailing slash, white
    space around it allowed). A bare token is refused: it does not say where the study is served."""
    link = str(text).strip().rstrip("/")
    parts = urllib.parse.urlsplit(link)
    segments = parts.path.split("/")
    if parts.scheme not in ("http", "https") or not parts.netloc or len(segments) != 3 or segments[1] != "r" \
            or not segments[2]:
        raise InputError("reader link", "a link http://HOST:PORT/r/TOKEN as the study's organiser gave it",
                         repr(link) if len(link) < 80 else f"{len(link)} characters")
    return f"{parts.scheme}://{parts.netloc}", segments[2]


class StudyClient:
    """One reader's calls to the study server of `link` (parse_reader_link)."""

    def __init__(self, link, timeout=TIMEOUT):
        self.base, self.token = parse_reader_link(link)
        self.timeout = timeout

    def state(self):
        """{answered, total, next (position or None), training, locked, orientation, interpolation,
        question, confidence}."""
        return self._call("GET", f"/api/{self.token}/state")

    def case(self, position):
        """Case `position` of this reader as a store.Presentation (opaque image names) and its display
        window [low, high] (None for colour FA)."""
        case = self._call("GET", f"/api/{self.token}/case/{int(position)}")
        name = lambda url: url.rsplit("/", 1)[-1]  # noqa: E731
        return (Presentation(case["position"], case["total"], case["map"], name(case["left"]), name(case["right"]),
                             case["answer"], case["training"], case["number"]), case["window"])

    def image(self, name):
        """(data, affine) of one of the reader's images (io.nifti.read_nifti_bytes)."""
        from ..io.nifti import read_nifti_bytes

        return read_nifti_bytes(self._request("GET", f"/img/{self.token}/{name}"), f"image {name} of the study server")

    def shown(self, position):
        """Both images of `position` are on screen: the server starts its reading time."""
        self._call("POST", f"/api/{self.token}/shown", {"position": int(position)})

    def answer(self, position, choice, confidence, comment=None, paused_seconds=0.0):
        """Save the answer (one transaction on the server); returns the reader's state after it."""
        return self._call("POST", f"/api/{self.token}/answer",
                          {"position": int(position), "choice": choice, "confidence": confidence, "comment": comment,
                           "paused_seconds": float(paused_seconds)})

    def _call(self, method, path, body=None):
        return json.loads(self._request(method, path, body))

    def _request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            raise self._refusal(error) from None
        except (urllib.error.URLError, OSError) as error:  # refused, unreachable, timed out
            reason = getattr(error, "reason", error)
            raise InputError(self.base, "the study's server running (the organiser's `dtisynth review serve`)",
                             f"no answer ({reason})") from None

    def _refusal(self, error):
        try:
            said = json.loads(error.read() or b"null")
        except ValueError:
            said = None
        if error.code == 404:
            return InputError("reader link", "a link of this study's server that is still valid",
                              "not valid (replaced by a new one, or never issued): ask the organiser for yours")
        if error.code == 403:
            return InputError("review", "an open study", "the study is closed: it accepts no more answers")
        refused = said.get("refused") if isinstance(said, dict) else None
        if isinstance(refused, dict) and {"path", "expected", "found"} <= set(refused):  # the store's own refusal
            return InputError(refused["path"], refused["expected"], refused["found"])
        detail = said.get("error") or said.get("detail") if isinstance(said, dict) else None
        return InputError("review", "the server to accept the request", f"HTTP {error.code}: {detail or error.reason}")
