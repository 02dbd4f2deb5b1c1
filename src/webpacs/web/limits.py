"""Limits on what a request carries, checked as the app reads it (README "Hardening").

* ``server.maxQueryBytes``: a longer query string answers 414.
* ``server.maxQueryParams``: more query parameters than this answer 400 (QIDO-RS is the
  route that takes many; every route is held to it).
* ``server.bodyTimeout``: when the next piece of a request body does not arrive within
  this many seconds, the read fails with 408 and the connection is closed. Only reads of a
  body wait (STOW-RS, updates, send); the whole upload may take as long as it needs.
* ``server.maxJsonBytes``, ``server.maxJsonDepth``: every JSON body the server parses goes
  through ``load_json`` (STOW-RS's DICOM JSON metadata parts, update and send bodies): a
  larger one answers 413, a deeper one 400, before any of it is interpreted.

The limits of the request head are ``webpacs.web.protocol``'s; those of multipart bodies
(part count, part size, nesting) ``webpacs.web.multipart_reader``'s.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webpacs.config import ServerSettings
from webpacs.errors import (
    InvalidRequest,
    PayloadTooLarge,
    RequestTimeout,
    UriTooLong,
    WebpacsError,
)
from webpacs.web.errors import response_for

__all__ = ["Limits", "check_json_size", "load_json", "read_json"]

_BODY_HEADERS = (b"content-length", b"transfer-encoding")


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers") or ():
        if name in _BODY_HEADERS and value.strip() != b"0":
            return True
    return False


class Limits:
    """ASGI middleware: the query string's limits, and the body timeout (module doc)."""

    def __init__(self, app: ASGIApp, server: ServerSettings) -> None:
        self.app = app
        self.max_query = server.max_query_bytes
        self.max_params = server.max_query_params
        self.body_timeout = server.body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query: bytes = scope.get("query_string", b"")
        error: WebpacsError | None = None
        if len(query) > self.max_query:
            error = UriTooLong(
                f"query string of {len(query)} bytes exceeds {self.max_query} bytes"
                " (server.maxQueryBytes)"
            )
        elif query and query.count(b"&") >= self.max_params:
            error = InvalidRequest(
                f"{query.count(b'&') + 1} query parameters exceed {self.max_params}"
                " (server.maxQueryParams)"
            )
        if error is not None:
            await response_for(error)(scope, receive, send)
            return
        if self.body_timeout > 0 and _has_body(scope):
            receive = self._timed(receive)
        await self.app(scope, receive, send)

    def _timed(self, receive: Receive) -> Receive:
        """``receive`` failing with ``RequestTimeout`` while the body is not all there."""
        timeout = self.body_timeout
        done = False

        async def timed() -> Message:
            nonlocal done
            if done:  # after the body: a wait for the disconnect, as long as it takes
                return await receive()
            try:
                async with asyncio.timeout(timeout):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"no request body data for {timeout:g} s (server.bodyTimeout)"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                done = True
            return message

        return timed


def check_json_size(size: int, server: ServerSettings, what: str) -> None:
    """Refuse (413) a JSON body of ``size`` bytes over ``server.maxJsonBytes``."""
    if size > server.max_json_bytes:
        raise PayloadTooLarge(
            f"{what} of {size} bytes exceeds {server.max_json_bytes} bytes (server.maxJsonBytes)"
        )


def _depth_error(server: ServerSettings, what: str) -> InvalidRequest:
    return InvalidRequest(
        f"{what} is nested deeper than {server.max_json_depth} levels (server.maxJsonDepth)"
    )


def _too_deep(value: Any, limit: int) -> bool:
    """Whether arrays and objects in ``value`` nest deeper than ``limit`` (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def load_json(raw: bytes, server: ServerSettings, what: str) -> Any:
    """Parse a JSON body within ``server``'s size and depth limits.

    Raises ``PayloadTooLarge`` over ``maxJsonBytes`` and ``InvalidRequest`` when it is not
    JSON or nests arrays and objects deeper than ``maxJsonDepth``.
    """
    check_json_size(len(raw), server, what)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        if "depth limit" in str(e):  # orjson's own, at 1024
            raise _depth_error(server, what) from None
        raise InvalidRequest(f"{what} is not valid JSON: {e}") from None
    if _too_deep(value, server.max_json_depth):
        raise _depth_error(server, what)
    return value


async def read_json(request: Request, server: ServerSettings, what: str) -> Any:
    """The request's JSON body (``None`` when it is empty), within ``load_json``'s limits; a
    body over ``maxJsonBytes`` is refused (413) before more of it is read."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit():
        check_json_size(int(declared), server, what)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        check_json_size(size, server, what)
        chunks.append(chunk)
    raw = b"".join(chunks)
    return load_json(raw, server, what) if raw.strip() else None
