"""The browser front end of a reader study: a small ASGI app (FastAPI, served by uvicorn) and one page
(Resources/Review/review.html) showing a case's two maps side by side in NiiVue, served locally
from the set-up's npm install (Resources/Review/node_modules), never from a CDN.

Every reader URL carries the reader's secret token: /r/{token} (the page), /api/{token}/... (state,
cases, answers) and /img/{token}/{opaque name}. An unknown token, an image that is not one of the
reader's cases, or any other path is answered 404, alike. Nothing served says which image is the
synthetic one: the page gets the map kind, the two opaque image URLs and the map kind's fixed display
window. Answers go through the store (one transaction each): the page shows an answer as saved only
after the commit.
"""

import re

from ..core.errors import InputError
from ..core.output_layout import StudyFolder
from ..core.resources import RESOURCES
from .store import StudyStore

OPAQUE_IMAGE = re.compile(r"^[0-9a-f]{16}\.nii$")
NIIVUE_BUNDLE = "node_modules/@niivue/niivue/dist/niivue.umd.js"
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def niivue_bundle():
    """NiiVue's self-contained browser bundle from the set-up's npm install (Resources/Review)."""
    path = RESOURCES / "Review" / NIIVUE_BUNDLE
    if not path.is_file():
        raise InputError(path, "NiiVue installed by the set-up (`make test`, or `npm ci --prefix Resources/Review`)",
                         "no such file")
    return path


def create_app(study_folder):
    """The review app of the study in `study_folder` (checked: ours, our schema version)."""
    import json

    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from pydantic import BaseModel

    store = StudyStore(study_folder)
    images = StudyFolder(study_folder).images.resolve()
    bundle = niivue_bundle()
    page = (RESOURCES / "Review" / "review.html").read_text()
    info = store.info()
    windows = json.loads(info.get("display", "{}"))
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    class Answer(BaseModel):
        position: int
        choice: str
        confidence: int | None = None
        comment: str | None = None

    def reader_of(token):
        reader = store.reader_for_token(token)
        if reader is None:
            raise HTTPException(404)
        return reader

    def state(reader):
        answered, total = store.progress(reader)
        return {"answered": answered, "total": total, "next": store.next_position(reader)}

    @app.get("/r/{token}")
    def review_page(token: str):
        reader_of(token)
        return HTMLResponse(page, headers=NO_STORE)

    @app.get("/favicon.ico")
    def no_icon():
        return Response(status_code=204)

    @app.get("/static/niivue.umd.js")
    def niivue():
        return FileResponse(bundle, media_type="text/javascript")

    @app.get("/api/{token}/state")
    def reader_state(token: str):
        return JSONResponse(state(reader_of(token)), headers=NO_STORE)

    @app.get("/api/{token}/case/{position}")
    def case(token: str, position: int):
        reader = reader_of(token)
        shown = store.presentation(reader, position)
        if shown is None:
            raise HTTPException(404)
        return JSONResponse({"position": shown.position, "total": shown.total, "map": shown.map,
                             "window": windows.get(shown.map), "answer": shown.answer,
                             "left": f"/img/{token}/{shown.left_image}", "right": f"/img/{token}/{shown.right_image}"},
                            headers=NO_STORE)

    @app.post("/api/{token}/answer")
    def answer(token: str, body: Answer):
        reader = reader_of(token)
        try:
            store.answer(reader, body.position, body.choice, body.confidence, body.comment)
        except InputError as error:
            return JSONResponse({"saved": False, "error": str(error)}, status_code=409, headers=NO_STORE)
        return JSONResponse({"saved": True, **state(reader)}, headers=NO_STORE)

    @app.get("/img/{token}/{name}")
    def image(token: str, name: str):
        reader = reader_of(token)
        if not OPAQUE_IMAGE.match(name) or name not in store.reader_images(reader):
            raise HTTPException(404)
        path = (images / name).resolve()
        if path.parent != images or not path.is_file():
            raise HTTPException(404)
        return FileResponse(path, media_type="application/octet-stream", headers=NO_STORE)

    return app


def serve(study_folder, host="127.0.0.1", port=8765):
    """Serve the study until interrupted (uvicorn; access log off: URLs carry reader tokens)."""
    import uvicorn

    uvicorn.run(create_app(study_folder), host=host, port=port, log_level="warning", access_log=False)
