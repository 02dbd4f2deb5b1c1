"""QIDO-RS (PS3.18 10.6): search for studies, series and instances."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webpacs.core.attributes import Level
from webpacs.core.dicomjson import render
from webpacs.core.media import DICOM_JSON, Representation, negotiate
from webpacs.core.query import parse_qido
from webpacs.web import remote
from webpacs.web.common import base_url, path_uids, settings, store, threaded, warning_header

_OFFERS = [
    Representation(DICOM_JSON, None, False),
    Representation("application/json", None, False),
]


def _retrieve_url(level: Level, row: dict[str, Any], base: str) -> str:
    def uid(tag: str) -> str:
        return str(row[tag]["Value"][0])

    url = f"{base}/studies/{uid('0020000D')}"
    if level in (Level.SERIES, Level.INSTANCE):
        url += f"/series/{uid('0020000E')}"
    if level is Level.INSTANCE:
        url += f"/instances/{uid('00080018')}"
    return url


def _search(level: Level) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        rep = negotiate(request.headers.get("accept"), _OFFERS)
        study, series, _ = path_uids(request)
        cap = settings(request).server.qido_max_results
        query = parse_qido(
            level,
            request.query_params.multi_items(),
            study_uid=study,
            series_uid=series,
            max_limit=cap,
        )
        # research keys are this server's own (README "Research queries"): the index alone
        local_only = bool(query.research) or query.include_labels
        proxy = None if local_only else remote.searching(request, level)
        warnings: list[str] = []
        if proxy is not None and any(c.path is not None for c in query.conditions):
            proxy = None  # a remote PACS cannot match webpacs' extension keys
            warnings.append("the remote PACS was not asked: extension keys are matched locally")
        if proxy is None:
            result = await threaded(store(request).index.search, query)
        else:
            result, warnings = await remote.search(request, proxy, query)
        base = base_url(request)
        for row in result.rows:
            row.setdefault("00081190", {"vr": "UR", "Value": [_retrieve_url(level, row, base)]})
        headers = {}
        if result.truncated:
            warnings = [
                f"The number of results exceeded the limit ({query.limit}); request more with"
                " offset",
                *warnings,
            ]
        if warnings:
            headers["Warning"] = ", ".join(warning_header(request, w) for w in warnings)
        body = render(orjson.dumps(result.rows), base)
        return Response(body, media_type=rep.media_type, headers=headers)

    return endpoint


routes = [
    Route("/studies", _search(Level.STUDY), methods=["GET"]),
    Route("/series", _search(Level.SERIES), methods=["GET"]),
    Route("/instances", _search(Level.INSTANCE), methods=["GET"]),
    Route("/studies/{study}/series", _search(Level.SERIES), methods=["GET"]),
    Route("/studies/{study}/instances", _search(Level.INSTANCE), methods=["GET"]),
    Route("/studies/{study}/series/{series}/instances", _search(Level.INSTANCE), methods=["GET"]),
]
