"""The "LAION search" page in the Airflow UI: a text box or an image, filters and k, and the hits as
a grid of pictures with caption, distance and NSFW tag.

A FastAPI app that the plugin (laion_ingest_plugin.py) mounts on Airflow's API server at /laion-search.
The UI shows it in an iframe at /plugin/laion-search. The page and its API need a user logged in to
Airflow: the UI's `_token` cookie, or a bearer token. The search is the command line's
(`search.search`, with the `hnsw_candidate_list_size_for_search` chosen by the latest evaluation),
and the CLIP model loads once per API server process, on its first query.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import get_user, requires_access_view

PAGE = (Path(__file__).with_name("search_page.html")).read_text()
MAX_K = 1000

app = FastAPI(title="LAION search", docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/", response_class=HTMLResponse)
async def page(request: Request):
    try:
        await get_user(request, None, None)
    except HTTPException:  # not logged in: through Airflow's login and back
        return RedirectResponse(f"/auth/login?next={quote(str(request.url))}", status_code=303)
    return PAGE


@app.post("/api/search", dependencies=[Depends(requires_access_view(AccessView.PLUGINS))])
def api_search(text: Annotated[str, Form()] = "", image: Annotated[UploadFile | None, File()] = None,
               k: Annotated[int, Form(ge=1, le=MAX_K)] = 20,
               column: Annotated[str, Form(pattern="^(image|text)_embedding$")] = "image_embedding",
               nsfw: Annotated[list[str], Form()] = [],
               min_similarity: Annotated[float | None, Form()] = None,
               min_width: Annotated[int | None, Form(ge=0)] = None) -> dict:
    """Hits as JSON; a sync endpoint, so FastAPI runs the model and the query in its thread pool."""
    from laion_ingest import clip
    from laion_ingest.clickhouse import ClickHouse
    from laion_ingest.search import Filters, search, tuned_settings

    started = time.perf_counter()
    try:
        if image is not None and image.filename:
            data = image.file.read(clip.MAX_IMAGE_BYTES + 1)
            if len(data) > clip.MAX_IMAGE_BYTES:
                raise HTTPException(413, f"{image.filename}: larger than {clip.MAX_IMAGE_BYTES // 2**20} MiB")
            target = clip.image_encoder()([data])[0]
        elif text.strip():
            target = clip.text_encoder()([text])[0]
        else:
            raise HTTPException(400, "type a text or choose an image")
    except clip.ClipError as exc:
        raise HTTPException(400, str(exc)) from None
    encoded = time.perf_counter()
    with ClickHouse() as ch:
        tuned = tuned_settings(ch)
        hits = search(ch, target, column, k, filters=Filters(tuple(nsfw), min_similarity, min_width), tuned=tuned)
    return {"hits": [h.__dict__ for h in hits], "settings": tuned, "encode_ms": round(1000 * (encoded - started), 1),
            "search_ms": round(1000 * (time.perf_counter() - encoded), 1)}
