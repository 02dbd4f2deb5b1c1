"""uvicorn's HTTP protocol with ``TCP_NODELAY`` set on every connection.

With ``--workers`` > 1 uvicorn binds the listening socket itself with protocol 0, and
asyncio only sets ``TCP_NODELAY`` on accepted sockets whose protocol is
``IPPROTO_TCP``: responses written in two parts (headers, then body; or multipart
parts) then wait for the peer's delayed ACK, ~40 ms each. Setting the option here makes
every worker count the same as a single-process server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol


# AutoHTTPProtocol is a variable (httptools' or h11's protocol, chosen on import): mypy
# sees no class to derive from, hence the ignore.
class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """``uvicorn.protocols.http.auto`` with ``TCP_NODELAY`` on TCP connections."""

    def connection_made(self, transport: asyncio.Transport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
