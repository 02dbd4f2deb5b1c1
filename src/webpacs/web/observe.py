"""What each HTTP request leaves behind: an access log line and the request metrics.

A plain ASGI middleware (no per-request task or body buffering, so it costs next to nothing
on the hot path): it notes the status and counts the body bytes as the response goes out,
then, when the request is done,

* logs one line to ``webpacs.access`` (``log.access``, on by default)::

    GET /dicomweb/studies?limit=25 200 1532 B 4.1 ms 127.0.0.1:51234

  with the same fields (``method``, ``path``, ``status``, ``bytes``, ``ms``, ``client``,
  ``route``) as structured values for ``log.format: "json"``;
* counts it in ``webpacs_http_requests_total`` and ``..._duration_seconds`` by the route
  template that answered (``/dicomweb/studies/{study}/series``; ``unmatched`` for a path no
  route knows, so that scanners cannot grow the label set; ``preflight`` for the CORS
  preflights that the CORS middleware answers).

A request that raised counts as status 500 (the error handler answers it afterwards).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webpacs import metrics
from webpacs.web import zerocopy

log = logging.getLogger("webpacs.access")


def route_template(scope: Scope) -> str:
    """The path template of the route that answered (mount prefixes included)."""
    route = scope.get("route")
    if route is None and scope["method"] == "OPTIONS":
        headers = dict(scope.get("headers") or [])
        if b"access-control-request-method" in headers:
            return "preflight"  # answered by the CORS middleware before any route
    path = getattr(route, "path", None)
    if not isinstance(path, str) or isinstance(route, Mount):  # no route inside the mount
        return "unmatched"
    prefix: str = scope.get("root_path", "")[len(scope.get("app_root_path", "")) :]
    return prefix + path


class Observe:
    """The middleware (see the module docstring); ``access_log`` switches the log line."""

    def __init__(self, app: ASGIApp, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "bytes": 0}

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            elif message["type"] == zerocopy.MESSAGE:
                state["bytes"] += zerocopy.length(message["pieces"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self._done(scope, state["status"], state["bytes"], time.perf_counter() - start)

    def _done(self, scope: Scope, status: int, nbytes: int, seconds: float) -> None:
        method = scope["method"]
        metrics.http_request(method, route_template(scope), status, seconds)
        if not self.access_log:
            return
        path = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
        if scope.get("query_string") and "?" not in path:
            path += "?" + scope["query_string"].decode("latin-1")
        client = scope.get("client")
        who = f"{client[0]}:{client[1]}" if client else "-"
        ms = round(seconds * 1000, 1)
        log.info(
            "%s %s %d %d B %.1f ms %s",
            method,
            path,
            status,
            nbytes,
            ms,
            who,
            extra={
                "method": method,
                "path": path,
                "status": status,
                "bytes": nbytes,
                "ms": ms,
                "client": who,
                "route": route_template(scope),
            },
        )
