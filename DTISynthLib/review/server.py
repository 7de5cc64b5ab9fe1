"""The browser front end of a reader study: a small ASGI app (FastAPI, served by uvicorn) and one page
(Resources/Review/review.html) showing a case's two maps side by side in NiiVue, served locally
from the set-up's npm install (Resources/Review/node_modules), never from a CDN.

Every reader URL carries the reader's secret token: /r/{token} (the page), /api/{token}/... (state,
cases, shown, answers) and /img/{token}/{opaque name}. An unknown token, an image that is not one of
the reader's cases, or any other path is answered 404, alike (a reader's page: a plain "link not
valid" page); a locked study answers its readers 403 ("study closed"). Nothing served says which image
is the synthetic one: the page gets the map kind, the two opaque image URLs and the map kind's fixed
display window, and the two images of a case are answered with the same headers (no ETag or
Last-Modified: a cache validator would carry the file's time, and so its writing order). Answers go
through the store (one transaction each): the page shows an answer as saved only after the commit.
Request bodies over MAX_BODY bytes are refused (413), malformed ones 422, before anything is stored.
"""

import re

from ..core.errors import InputError
from ..core.output_layout import StudyFolder
from ..core.resources import NIIVUE_BUNDLE, RESOURCES
from .store import COMMENT_MAX, CONFIDENCE_SCALE, PAUSE_MAX, StudyStore

OPAQUE_IMAGE = re.compile(r"^[0-9a-f]{16}\.nii$")
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
MAX_BODY = 16 * 1024  # bytes: an answer with the longest comment is under 9 kB
MAX_POSITION = 10**6
PLAIN_PAGES = {
    "invalid": (404, "Link not valid", "This review link is not valid. It may have been replaced by a new one: "
                "ask the study's organiser for your link."),
    "closed": (403, "Study closed", "This study is closed: it accepts no more answers. Thank you for taking part."),
}


def niivue_bundle():
    """NiiVue's self-contained browser bundle from the set-up's npm install (Resources/Review)."""
    path = RESOURCES / NIIVUE_BUNDLE
    if not path.is_file():
        raise InputError(path, "NiiVue installed by the set-up (`make test`, or `npm ci --prefix Resources/Review`)",
                         "no such file")
    return path


def plain_page(title, text):
    import html

    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            '<style>body{font-family:sans-serif;background:#111;color:#eee;max-width:40em;margin:4em auto;'
            f'font-size:1.2em}}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>'
            '</body></html>')


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is answered 413 before the app sees it, whether
    its length is declared or it streams (the body is read, up to the limit, and handed on whole)."""

    def __init__(self, app, limit):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._refuse(send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await self._refuse(send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def _refuse(self, send):
        import json

        content = json.dumps({"error": f"request body over {self.limit} bytes"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in NO_STORE.items()]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def create_app(study_folder):
    """The review app of the study in `study_folder` (checked: ours, our schema version)."""
    import json
    from typing import Literal

    from fastapi import FastAPI, HTTPException
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from pydantic import BaseModel, ConfigDict, Field

    store = StudyStore(study_folder)
    images = StudyFolder(study_folder).images.resolve()
    bundle = niivue_bundle()
    page = (RESOURCES / "Review" / "review.html").read_text()
    info = store.info()
    windows = json.loads(info.get("display", "{}"))
    display = {"orientation": info.get("orientation", "radiological"),
               "interpolation": info.get("interpolation", "nearest"),
               "question": info.get("question", ""), "confidence": {str(k): v for k, v in CONFIDENCE_SCALE.items()}}
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, limit=MAX_BODY)

    @app.exception_handler(RequestValidationError)
    def malformed(request, error):
        """422 naming what is wrong, without echoing the input (which may be NaN, or large)."""
        problems = "; ".join(f"{'.'.join(str(k) for k in e.get('loc', ())[1:]) or 'body'}: {e.get('msg', '')}"
                             for e in error.errors())
        return JSONResponse({"saved": False, "error": f"malformed request ({problems})"}, status_code=422,
                            headers=NO_STORE)

    Position = Field(ge=1, le=MAX_POSITION)
    # Strict: pydantic's lax mode would take true as 1 (case 1, confidence "guess"), 1.0 and "1" too; a
    # body of the wrong JSON type is a 422 naming the field instead (an int is still a float).
    Strict = ConfigDict(strict=True)

    class Answer(BaseModel):
        model_config = Strict
        position: int = Position
        choice: Literal["left", "right"]
        confidence: int = Field(ge=1, le=5)
        comment: str | None = Field(default=None, max_length=COMMENT_MAX)
        paused_seconds: float = Field(default=0.0, ge=0.0, lt=PAUSE_MAX, allow_inf_nan=False)

    class Shown(BaseModel):
        model_config = Strict
        position: int = Position

    def reader_of(token):
        reader = store.reader_for_token(token)
        if reader is None:
            raise HTTPException(404)
        return reader

    def open_reader(token):
        """The token's reader of a study still open (403 once it is locked)."""
        reader = reader_of(token)
        if store.locked():
            raise HTTPException(403, "the study is closed")
        return reader

    def state(reader):
        answered, total = store.progress(reader)
        return {"answered": answered, "total": total, "next": store.next_position(reader),
                "training": store.training_cases(reader), "locked": store.locked()}

    @app.get("/r/{token}")
    def review_page(token: str):
        if store.reader_for_token(token) is None:
            status, title, text = PLAIN_PAGES["invalid"]
            return HTMLResponse(plain_page(title, text), status_code=status, headers=NO_STORE)
        if store.locked():
            status, title, text = PLAIN_PAGES["closed"]
            return HTMLResponse(plain_page(title, text), status_code=status, headers=NO_STORE)
        return HTMLResponse(page, headers=NO_STORE)

    @app.get("/favicon.ico")
    def no_icon():
        return Response(status_code=204)

    @app.get("/static/niivue.umd.js")
    def niivue():
        return FileResponse(bundle, media_type="text/javascript")

    @app.get("/api/{token}/state")
    def reader_state(token: str):
        return JSONResponse({**state(reader_of(token)), **display}, headers=NO_STORE)

    @app.get("/api/{token}/case/{position}")
    def case(token: str, position: int):
        reader = open_reader(token)
        shown = store.presentation(reader, position) if 1 <= position <= MAX_POSITION else None
        if shown is None:
            raise HTTPException(404)
        return JSONResponse({"position": shown.position, "number": shown.number, "total": shown.total,
                             "training": shown.training, "map": shown.map, "window": windows.get(shown.map),
                             "answer": shown.answer,
                             "left": f"/img/{token}/{shown.left_image}", "right": f"/img/{token}/{shown.right_image}"},
                            headers=NO_STORE)

    @app.post("/api/{token}/shown")
    def shown(token: str, body: Shown):
        """The page has both images of case `position` on screen: its reading time starts now."""
        if not store.mark_shown(open_reader(token), body.position):
            raise HTTPException(404)
        return JSONResponse({"recorded": True}, headers=NO_STORE)

    @app.post("/api/{token}/answer")
    def answer(token: str, body: Answer):
        reader = reader_of(token)
        try:
            store.answer(reader, body.position, body.choice, body.confidence, body.comment, body.paused_seconds)
        except InputError as error:
            return JSONResponse({"saved": False, "error": str(error), "refused": {"path": error.path, "expected":
                                 error.expected, "found": error.found}}, status_code=409, headers=NO_STORE)
        return JSONResponse({"saved": True, **state(reader)}, headers=NO_STORE)

    @app.get("/img/{token}/{name}")
    def image(token: str, name: str):
        reader = open_reader(token)
        if not OPAQUE_IMAGE.match(name) or name not in store.reader_images(reader):
            raise HTTPException(404)
        path = (images / name).resolve()
        if path.parent != images or not path.is_file():
            raise HTTPException(404)
        # the bytes, without FileResponse's ETag and Last-Modified (both carry the file's time)
        return Response(path.read_bytes(), media_type="application/octet-stream", headers=NO_STORE)

    return app


def bind(host, port):
    """A listening socket on host:port, or InputError when it cannot be had (in use, no such address)."""
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise InputError(f"{host}:{port}", "an address and port free to listen on", error.strerror or str(error))
    return sock


def serve(study_folder, host="127.0.0.1", port=8765, sock=None):
    """Serve the study until interrupted (uvicorn; access log off: URLs carry reader tokens) on `sock`, or
    on one bound to host:port first, so that a port in use is a clear error rather than uvicorn's exit."""
    import uvicorn

    app = create_app(study_folder)
    sock = sock or bind(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
