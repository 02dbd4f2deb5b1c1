"""The remote PACS seen through the web server: QIDO-RS merged with the ``queryAe``,
WADO-RS retrieving from the ``proxyAe`` on first access (issue 4; README "Proxy to a
remote PACS"). Only used when one of them is configured: otherwise QIDO-RS asks the
index alone and the WADO-RS routes are not wrapped.

* ``search`` answers a study or series level QIDO-RS query from the index and from
  the ``queryAe``: local rows first, then the remote rows whose UID is not
  local (local wins), paged together. A remote failure does not fail the search: the
  local rows are returned with a ``Warning`` header (PS3.18 8.10.3: ``299``) naming it.
* ``wrap`` makes a WADO-RS route retrieve its study or series first when it is not
  stored. Concurrent requests for one study or series wait for one retrieve (a map of
  in-flight tasks per key in this process; across worker processes, ``Proxy.retrieve``
  takes a file lock per study and finds what another process retrieved meanwhile). The
  retrieve runs shielded, so a client that goes away does not cancel it for the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from webpacs.core.attributes import Level
from webpacs.core.query import Query
from webpacs.errors import NotFound, UpstreamError
from webpacs.proxy import Proxy
from webpacs.proxy import query as q
from webpacs.storage.base import SearchResult
from webpacs.web.common import path_uids, store, threaded

log = logging.getLogger("webpacs.proxy")

Endpoint = Callable[[Request], Awaitable[Response]]
Inflight = dict[tuple[str, str | None], "asyncio.Task[int]"]


def proxy_of(request: Request) -> Proxy | None:
    return getattr(request.app.state, "proxy", None)


def searching(request: Request, level: Level) -> Proxy | None:
    """The proxy when a QIDO-RS search at ``level`` also asks the ``queryAe``, else None."""
    proxy = proxy_of(request)
    if proxy is None or proxy.query_remote is None or level is Level.INSTANCE:
        return None
    return proxy


async def search(request: Request, proxy: Proxy, query: Query) -> tuple[SearchResult, list[str]]:
    """The QIDO-RS result, merged with the ``queryAe``'s (see ``searching``); and warnings
    for the response."""
    index = store(request).index
    window = None if query.limit is None else query.offset + query.limit
    local = await threaded(index.search, dataclasses.replace(query, offset=0, limit=window))
    try:
        remote = await threaded(proxy.search, query, window)
    except UpstreamError as exc:
        log.warning("QIDO-RS: remote search failed: %s", exc)
        return _page(local, [], query), [f"remote search failed, local results only: {exc}"]
    return _page(local, remote, query), []


def _page(local: SearchResult, remote: list[dict[str, Any]], query: Query) -> SearchResult:
    seen = {q.uid_of(query.level, r) for r in local.rows}
    rows = list(local.rows)
    for r in remote:
        uid = q.uid_of(query.level, r)
        if uid not in seen:
            seen.add(uid)
            rows.append(r)
    end = None if query.limit is None else query.offset + query.limit
    truncated = local.truncated or (end is not None and len(rows) > end)
    return SearchResult(rows[query.offset : end], truncated)


async def ensure_local(proxy: Proxy, inflight: Inflight, study: str, series: str | None) -> None:
    """Retrieve the study or series from the ``proxyAe`` unless it is stored.

    One retrieve per key at a time: ``inflight`` maps keys to the running retrieve, and
    later requests wait for it and share its outcome (errors included).
    """
    if await threaded(proxy.is_local, study, series):
        return
    whole = inflight.get((study, None))
    if series is not None and whole is not None:
        await _wait(whole)  # the whole study is on its way: this series may be in it
        if await threaded(proxy.is_local, study, series):
            return
    key = (study, series)
    task = inflight.get(key)
    if task is None:
        task = asyncio.ensure_future(threaded(proxy.retrieve, study, series))
        inflight[key] = task
        task.add_done_callback(lambda t: _done(inflight, key, t))
    await _wait(task)


async def _wait(task: asyncio.Task[int]) -> None:
    await asyncio.shield(task)


def _done(inflight: Inflight, key: Any, task: Any) -> None:
    inflight.pop(key, None)
    if not task.cancelled():
        task.exception()  # retrieved: no "never retrieved" noise when every waiter left


def wrap(endpoint: Endpoint) -> Endpoint:
    """``endpoint``, first retrieving its study/series from the ``proxyAe`` if needed."""

    async def proxied(request: Request) -> Response:
        proxy = proxy_of(request)
        if proxy is not None and proxy.proxy_remote is not None:
            study, series, _ = path_uids(request)
            if study is not None:
                inflight = request.app.state.proxy_inflight
                await ensure_local(proxy, inflight, study, series)
        return await endpoint(request)

    proxied.__name__ = getattr(endpoint, "__name__", "proxied")
    proxied.__doc__ = endpoint.__doc__
    return proxied


def wrap_routes(routes: list[Route]) -> list[Route]:
    """The routes with ``wrap``ped endpoints (same paths, methods and names)."""
    return [
        Route(r.path, wrap(r.endpoint), methods=list(r.methods or ()), name=r.name) for r in routes
    ]


async def status(request: Request) -> Response:
    """Non-standard: the proxy's remotes, counters and cache content."""
    proxy = proxy_of(request)
    if proxy is None:
        raise NotFound("no proxy configured (queryAe, proxyAe)")
    return JSONResponse(await threaded(proxy.summary))


routes = [Route("/webpacs/proxy", status, methods=["GET"])]
