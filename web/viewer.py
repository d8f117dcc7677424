"""The browser viewer's static files under ``/viewer/``: the study list and viewer page at ``/viewer/``,
the embeddable page at ``/viewer/embed?study=UID``, and the ES modules and stylesheets they load.

Responsible for serving the files of ``web/static/viewer/`` through Starlette's StaticFiles (media
types, ETag and Last-Modified, 304s, paths kept inside the folder) with ``Cache-Control: no-cache``
(the names carry no version, so a browser revalidates and picks up a new release at once). The pages hold no patient data: every data call the viewer makes
is a DICOMweb URL under ``/dicomweb`` with that route's own access checks.

Must not serve anything outside the static folder (paths are resolved and checked), template pages
with request data, or know about DICOM.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).resolve().parent / "static" / "viewer"
CACHE_CONTROL = "no-cache"


class _ViewerFiles(StaticFiles):
    """StaticFiles that always revalidates (unversioned names)."""

    def file_response(self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = CACHE_CONTROL
        return response


_files = _ViewerFiles(directory=STATIC)


async def _page(request: Request, name: str) -> Response:
    response: Response = await _files.get_response(name, request.scope)
    return response


async def index_page(request: Request) -> Response:
    """GET /viewer/: the study list; ``?study=UID`` opens a study (handled by the page's script)."""
    return await _page(request, "index.html")


async def embed_page(request: Request) -> Response:
    """GET /viewer/embed?study=UID: the viewer alone, for an iframe; credentials in ``#token=``."""
    return await _page(request, "embed.html")


async def redirect_root(request: Request) -> Response:
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/viewer/{query}", status_code=308)


def routes() -> list[BaseRoute]:
    methods = ["GET", "HEAD"]
    static: Any = _files
    return [
        Route("/viewer", redirect_root, methods=methods),
        Route("/viewer/", index_page, methods=methods),
        Route("/viewer/embed", embed_page, methods=methods),
        Mount("/viewer", app=static),  # modules, stylesheets, icons
    ]
