"""uvicorn's HTTP protocol with ``TCP_NODELAY`` and limits on the request head.

``TCP_NODELAY``: with ``--workers`` > 1 uvicorn binds the listening socket itself with
protocol 0, and asyncio only sets ``TCP_NODELAY`` on accepted sockets whose protocol is
``IPPROTO_TCP``: responses written in two parts (headers, then body; or multipart
parts) then wait for the peer's delayed ACK, ~40 ms each. Setting the option here makes
every worker count the same as a single-process server.

The request head (request line and headers) is read before the application sees anything,
so its limits live here, where the bytes arrive (README "Hardening"):

* ``server.maxHeaderBytes``: a larger head answers 431, or 414 when the request target is
  what is too long (longer than ``server.maxQueryBytes``), and the connection is closed.
  httptools (llhttp) itself puts no bound on a head.
* ``server.headerTimeout``: a head not complete this long after the request's first byte
  (for a connection's first request: after the connection was made) answers 408 and the
  connection is closed; a connection on which nothing arrived is closed without an answer.
  uvicorn times out idle keep-alive connections only (``server.keepAliveTimeout``), not a
  client that trickles its head ("slowloris").

The limits are those of the settings of the application served (``app.state.settings``),
so ``webpacs serve``, its worker processes and the tests' servers take them from one place;
``uvicorn_options`` gives uvicorn the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import weakref
from http import HTTPStatus
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from webpacs import errors
from webpacs.config import ServerSettings, Settings
from webpacs.web import zerocopy
from webpacs.web.errors import response_for

log = logging.getLogger("webpacs.web")

#: The protocol class, as uvicorn's ``http`` option names it.
PROTOCOL = "webpacs.web.protocol:LimitedHTTPProtocol"


def uvicorn_options(srv: ServerSettings) -> dict[str, Any]:
    """The uvicorn options every server of ``webpacs serve`` (and of the tests) runs with."""
    return {"http": PROTOCOL, "timeout_keep_alive": srv.keep_alive_timeout}


_SERVER_SETTINGS: weakref.WeakKeyDictionary[Config, ServerSettings] = weakref.WeakKeyDictionary()


def server_settings(config: Config) -> ServerSettings:
    """The ``server`` settings of the app ``config`` serves (under uvicorn's middleware);
    the defaults for an app without webpacs settings."""
    found = _SERVER_SETTINGS.get(config)
    if found is None:
        app: Any = config.loaded_app
        found = ServerSettings()
        for _ in range(10):  # uvicorn wraps the app in a middleware or two
            settings = getattr(getattr(app, "state", None), "settings", None)
            if isinstance(settings, Settings):
                found = settings.server
                break
            app = getattr(app, "app", None)
            if app is None:
                break
        _SERVER_SETTINGS[config] = found
    return found


def error_bytes(exc: errors.WebpacsError) -> bytes:
    """``exc``'s error response (``webpacs.web.errors.response_for``, which closes the
    connection after the statuses of these limits) as the bytes of an HTTP/1.1 response."""
    response = response_for(exc)
    status = response.status_code
    head = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode("latin-1")
    headers = b"".join(name + b": " + value + b"\r\n" for name, value in response.raw_headers)
    return head + headers + b"\r\n" + response.body


class LimitedHTTPProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``TCP_NODELAY`` and the head limits (module doc)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        srv = server_settings(config)
        self.max_head = srv.max_header_bytes
        self.max_target = srv.max_query_bytes
        self.head_timeout = srv.header_timeout
        self.head_bytes = 0  # bytes received since the last request ended
        self.in_head = True  # between the end of a request and the end of the next head
        self.head_timer: asyncio.TimerHandle | None = None

    # -- the connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        # stored files go to a plain TCP socket by sendfile (webpacs.web.zerocopy)
        self.sendfile = (
            sock is not None
            and sock.family in (socket.AF_INET, socket.AF_INET6)
            and transport.get_extra_info("sslcontext") is None
        )
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.in_head:
            self.head_bytes += len(data)
        super().data_received(data)
        if self.in_head and self.head_bytes > self.max_head and not self.transport.is_closing():
            self._refuse(self._head_error())

    # -- the parser's callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.head_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self.in_head = False
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size <= self.max_head:
            super().on_headers_complete()
            return
        app, self.app = self.app, response_for(self._head_error())
        try:  # uvicorn runs the request as usual, with an app that refuses it
            super().on_headers_complete()
        finally:
            self.app = app

    def shutdown(self) -> None:
        """The server stops: an idle TLS connection is dropped at once. (Closing it would
        wait for the client's close_notify, up to 30 s for each client that keeps its
        connection open, as browsers do; between requests nothing is cut short.)"""
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self.transport.get_extra_info("sslcontext") is not None:
            self.transport.abort()
            return
        super().shutdown()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if self.sendfile:
            extensions = {**(cycle.scope.get("extensions") or {}), zerocopy.EXTENSION: {}}
            cycle.scope["extensions"] = extensions
            app = zerocopy.sendfile_app(app, cycle, self.transport)
        super()._start_asgi_task(cycle, app)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head = True
        self.head_bytes = 0

    # -- limits -----------------------------------------------------------------------------

    def _head_error(self) -> errors.WebpacsError:
        if len(self.url or b"") > self.max_target:
            return errors.UriTooLong(
                f"request target of more than {self.max_target} bytes"
                " (server.maxQueryBytes, server.maxHeaderBytes)"
            )
        return errors.HeadersTooLarge(
            f"request line and headers exceed {self.max_head} bytes (server.maxHeaderBytes)"
        )

    def _arm(self) -> None:
        self._disarm()
        if self.head_timeout > 0:
            self.head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a request is answered: close after it
            return
        if self.head_bytes == 0:
            self.transport.close()  # nothing was asked
            return
        self._refuse(
            errors.RequestTimeout(
                f"request headers not complete within {self.head_timeout:g} s"
                " (server.headerTimeout)"
            )
        )

    def _refuse(self, exc: errors.WebpacsError) -> None:
        """Answer ``exc`` before any request was made of the app, and close."""
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        log.warning("%s refused: %s", client, exc)
        self._disarm()
        self.in_head = False
        self.transport.write(error_bytes(exc))
        self.transport.close()
