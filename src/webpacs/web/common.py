"""Helpers shared by the route modules: the store, base URLs, UIDs from paths, responses."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from webpacs.config import Settings
from webpacs.core import media
from webpacs.core.uids import check_uid
from webpacs.storage.registry import Store

P = ParamSpec("P")
T = TypeVar("T")


def store(request: Request) -> Store:
    st: Store = request.app.state.store
    return st


def settings(request: Request) -> Settings:
    the_settings: Settings = request.app.state.settings
    return the_settings


def base_url(request: Request) -> str:
    """The DICOMweb root as clients reach it (``server.publicUrl`` when configured)."""
    configured = settings(request).server.public_url
    if configured:
        return configured.rstrip("/")
    root = settings(request).server.root_path.rstrip("/")
    host = request.headers.get("host", "")
    server = request.scope.get("server") or ("127.0.0.1", 80)
    if not host:
        host = f"{server[0]}:{server[1]}"
    elif ":" not in host.rsplit("]", 1)[-1] and server[1] not in (80, 443):
        # Some clients (dicomweb-client) send Host without the port; without a proxy in
        # front (which should set server.publicUrl) the port we listen on is the right one.
        host = f"{host}:{server[1]}"
    return f"{request.url.scheme}://{host}{root}"


def path_uids(request: Request) -> tuple[str | None, str | None, str | None]:
    """Study, series and instance UIDs from the path, each checked (400 when malformed)."""
    p = request.path_params
    study = check_uid(p["study"], "StudyInstanceUID") if "study" in p else None
    series = check_uid(p["series"], "SeriesInstanceUID") if "series" in p else None
    sop = check_uid(p["instance"], "SOPInstanceUID") if "instance" in p else None
    return study, series, sop


def accepts_gzip(request: Request) -> bool:
    """Whether the client takes ``Content-Encoding: gzip`` (``core.media.accepts_gzip``)."""
    return media.accepts_gzip(request.headers.get("accept-encoding", ""))


def warning_header(request: Request, text: str) -> str:
    """A ``Warning`` header value (RFC 7234 5.5, PS3.18 8.10.3: code 299, agent, quoted
    text); several are joined with ``, ``."""
    host = request.url.hostname or "webpacs"
    clean = " ".join(text.replace('"', "'").split())[:300]
    return f'299 {host} "{clean}"'


async def threaded(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking storage call on the threadpool (the storage Protocol is synchronous);
    typed as ``fn`` is, so an awaited storage call has the type the Protocol declares."""
    return await run_in_threadpool(fn, *args, **kwargs)
