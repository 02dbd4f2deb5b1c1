"""The one map from typed errors to HTTP responses."""

from __future__ import annotations

import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response

from webpacs import errors

log = logging.getLogger("webpacs.web")

STATUS: dict[type[errors.WebpacsError], int] = {
    errors.InvalidRequest: 400,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.NotAcceptable: 406,
    errors.UnsupportedMediaType: 415,
    errors.PayloadTooLarge: 413,
    errors.RequestTimeout: 408,
    errors.UriTooLong: 414,
    errors.HeadersTooLarge: 431,
    errors.Forbidden: 403,
    errors.Unauthorized: 401,
    errors.NotImplementedFeature: 501,
    errors.ConfigError: 500,
    errors.StorageError: 503,
    errors.UpstreamError: 502,
    errors.UpstreamTimeout: 504,
}


def status_for(exc: errors.WebpacsError) -> int:
    """The HTTP status for an error (its nearest class in ``STATUS``)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"error": message, "status": status}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


#: Statuses after which the rest of the request body is not read: the connection is closed
#: rather than kept for a client that may still be sending (or trickling) it.
CLOSE_AFTER = frozenset({408, 413, 414, 431})


def response_for(exc: errors.WebpacsError) -> Response:
    """The error response for ``exc`` (its status, message and the headers it needs)."""
    status = status_for(exc)
    headers = {}
    challenge = exc.details.get("challenge")
    if challenge:
        headers["WWW-Authenticate"] = str(challenge)
    if status in CLOSE_AFTER:
        headers["Connection"] = "close"
    return error_response(status, str(exc), headers or None)


async def handle_webpacs_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.WebpacsError)
    if status_for(exc) >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc)
    return response_for(exc)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}")
