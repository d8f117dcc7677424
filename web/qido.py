"""QIDO-RS: the six search resources (PS3.18 10.6): studies, series and instances, at the root or
scoped by study and series. Parameters are validated by ``archive.query.parse_query``; an unknown or
malformed filter is a 400 naming it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from archive.parse import BULK_URI_PREFIX
from archive.query import Query, parse_query, row_to_json, vr_of
from web.common import dicom_json_response, optional_uid, require_json_accept


def _search(level: str):  # type: ignore[no-untyped-def]
    async def handler(request: Request) -> Response:
        from web.app import base_url, runtime

        rt = runtime(request)
        require_json_accept(request)
        query = parse_query(
            level,
            request.query_params.multi_items(),
            study=optional_uid(request, "study"),
            series=optional_uid(request, "series"),
            max_limit=rt.settings.max_qido_limit,
        )
        principal = request.scope.get("tessera.principal")
        if principal is not None and principal.studies is not None:
            query = replace(query, allowed_studies=principal.studies)
        results = await rt.io(_run, rt, query, base_url(request))
        return dicom_json_response(results)

    return handler


def _run(rt: Any, query: Query, base: str) -> list[dict[str, Any]]:
    rows = rt.archive.index.search(query)
    results = [row_to_json(query, row, base) for row in rows]
    if query.extra_tags and rows:
        # includefield of attributes the index does not hold: taken from stored metadata (of the
        # instance itself, or the first instance of the study/series).
        metas = rt.archive.index.metadata_by_pk([row["_meta_pk"] for row in rows])
        for row, result in zip(rows, results):
            text = metas.get(row["_meta_pk"], "{}").replace(BULK_URI_PREFIX, '"BulkDataURI":"' + base)
            meta = json.loads(text)
            for tag in query.extra_tags:
                result[tag] = meta.get(tag, {"vr": vr_of(tag)})
    return results


def routes() -> list[Route]:
    return [
        Route("/studies", _search("study"), methods=["GET"]),
        Route("/series", _search("series"), methods=["GET"]),
        Route("/instances", _search("instance"), methods=["GET"]),
        Route("/studies/{study}/series", _search("series"), methods=["GET"]),
        Route("/studies/{study}/instances", _search("instance"), methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances", _search("instance"), methods=["GET"]),
    ]
