"""The "LAION search" page in the Airflow UI: a text box or an image, filters and k, and the hits as
a grid of pictures with caption, distance and NSFW tag.

A FastAPI app that the plugin (laion_ingest_plugin.py) mounts on Airflow's API server at /laion-search.
The UI shows it in an iframe at /plugin/laion-search. The page and its API need a user logged in to
Airflow: the UI's `_token` cookie, or a bearer token. The search is the command line's
(`search.search`, with the `hnsw_candidate_list_size_for_search` chosen by the latest evaluation),
and the CLIP model loads once per API server process, on its first query.

Everything a request carries is checked before work is spent on it: a body over MAX_BODY_BYTES is
refused with 413 before it is read (from its Content-Length, or as soon as a chunked body passes the
limit; a 200 MB upload used to be spooled to disk first), an image the encoder refuses (a
decompression bomb, say) and a filter out of range are 400s naming the field, and k is 1..1000.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import get_user, requires_access_view
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse

from laion_ingest.redaction import redact

TEMPLATE = (Path(__file__).with_name("search_page.html")).read_text()
MAX_K = 1000
MAX_BODY_BYTES = 21 * 2**20  # the largest image the encoder takes (20 MiB) and the form's other fields


class BodyLimit:
    """Refuse a request body over MAX_BODY_BYTES with 413 before it is read or spooled."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            return await _too_large()(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:  # a chunked body has no Content-Length to go by
                raise HTTPException(413, _TOO_LARGE)
            return message

        await self.app(scope, limited, send)


_TOO_LARGE = f"the request is larger than {MAX_BODY_BYTES // 2**20} MiB (an image may be up to 20 MiB)"


def _too_large():
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": _TOO_LARGE}, status_code=413)


app = FastAPI(title="LAION search", docs_url=None, redoc_url=None, openapi_url=None)
app.add_middleware(BodyLimit)


@app.get("/", response_class=HTMLResponse)
async def page(request: Request):
    try:
        await get_user(request, None, None)
    except HTTPException:  # not logged in: through Airflow's login and back
        return RedirectResponse(f"/auth/login?next={quote(str(request.url))}", status_code=303)
    return _page()


def _page() -> str:
    """The page, its dataset picker listing the family with LAION_DATASET's selected."""
    from laion_ingest import datasets, settings

    default = settings.dataset()
    options = "".join(f'<option value="{d.name}"{" selected" * (d.name == default)}>{d.name}</option>'
                      for d in datasets.DATASETS.values())
    return TEMPLATE.replace("<!-- datasets -->", options)


@app.post("/api/search", dependencies=[Depends(requires_access_view(AccessView.PLUGINS))])
def api_search(text: Annotated[str, Form()] = "", image: Annotated[UploadFile | None, File()] = None,
               k: Annotated[int, Form(ge=1, le=MAX_K)] = 20,
               dataset: Annotated[str | None, Form()] = None,
               against: Annotated[str, Form(pattern="^(images|captions)$")] = "images",
               nsfw: Annotated[list[str] | None, Form()] = None,
               min_similarity: Annotated[str | None, Form()] = None,
               min_width: Annotated[str | None, Form()] = None) -> dict:
    """Hits as JSON; a sync endpoint, so FastAPI runs the model and the query in its thread pool."""
    from laion_ingest import clip, datasets, settings
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.errors import SettingError
    from laion_ingest.search import Filters, search, tuned_settings

    started = time.perf_counter()
    try:
        chosen = datasets.get(dataset or settings.dataset())
        column = chosen.vectors[0] if against == "images" else "text_embedding"
        if column not in chosen.vectors:
            raise SettingError(f"against: {chosen.name} has no caption vectors to search; search its images")
        filters = Filters(tuple(nsfw or ()), min_similarity or None, min_width or None)
        if image is not None and image.filename:
            data = image.file.read(clip.MAX_IMAGE_BYTES + 1)
            if len(data) > clip.MAX_IMAGE_BYTES:
                raise HTTPException(413, f"{image.filename}: larger than {clip.MAX_IMAGE_BYTES // 2**20} MiB")
            target = clip.image_encoder(chosen.model)([data])[0]
        elif text.strip():
            target = clip.text_encoder(chosen.model)([text])[0]
        else:
            raise HTTPException(400, "type a text or choose an image")
    except (clip.ClipError, SettingError) as exc:
        raise HTTPException(400, redact(exc)) from None
    encoded = time.perf_counter()
    with ClickHouse(chosen) as ch:
        tuned = tuned_settings(ch)
        hits = search(ch, target, column, k, filters=filters, tuned=tuned)
    return {"hits": [h.__dict__ for h in hits], "settings": tuned, "encode_ms": round(1000 * (encoded - started), 1),
            "search_ms": round(1000 * (time.perf_counter() - encoded), 1)}
