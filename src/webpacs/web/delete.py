"""DELETE of studies, series and instances (switch off with ``server.allowDelete: false``)."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webpacs.errors import Forbidden, NotFound
from webpacs.remove import remove
from webpacs.web.common import path_uids, settings, store, threaded

log = logging.getLogger("webpacs.delete")


async def delete(request: Request) -> Response:
    if not settings(request).server.allow_delete:
        raise Forbidden("DELETE is disabled by configuration (server.allowDelete)")
    study, series, sop = path_uids(request)
    assert study is not None
    n = len(await threaded(remove, store(request), study, series, sop))
    what = f"instance {sop}" if sop else f"series {series}" if series else f"study {study}"
    if n == 0:
        raise NotFound(f"{what} not found")
    log.info("DELETE of %s: %d instance(s) deleted", what, n)
    return Response(status_code=204)


routes = [
    Route("/studies/{study}", delete, methods=["DELETE"]),
    Route("/studies/{study}/series/{series}", delete, methods=["DELETE"]),
    Route("/studies/{study}/series/{series}/instances/{instance}", delete, methods=["DELETE"]),
]
