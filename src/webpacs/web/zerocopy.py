"""Response bodies sent from stored files without copying them through Python (sendfile).

A WADO-RS retrieve of a series is mostly stored objects sent as they are, and a frame of
a native or encapsulated image is a byte range of one. Reading those bytes into Python
and writing them to the socket costs two copies and a pass through the event loop per
chunk; ``os.sendfile`` moves them from the page cache to the socket in the kernel, as
nginx does.

* A body is a list of **pieces**: ``bytes`` (multipart part headers, boundaries) or a
  ``Span`` of a file (path, offset, count; the file is opened when its turn comes, so a
  study of thousands of objects does not hold thousands of descriptors).
  ``PiecesResponse`` sends them with a ``Content-Length`` computed up front, so no chunked
  framing copies the body either.
* The server side is ``webpacs.web.protocol.LimitedHTTPProtocol``: on a plain TCP
  connection it puts ``EXTENSION`` in the request's ``scope["extensions"]`` and handles the
  message ``{"type": MESSAGE, "pieces": [...], "more_body": bool}`` (``serve``): once the
  transport's own buffer is empty it writes every piece to a duplicate of the socket's
  descriptor on a worker thread (``os.write`` and ``os.sendfile``, waiting with ``poll``
  when the socket is full), and then lets uvicorn finish the response as usual.
* Without the extension (TLS, another ASGI server, the test client) the same response
  reads each piece and sends it as an ordinary body message, one piece at a time (memory
  stays bounded by the largest piece).

A client that goes away mid-body ends the write (the connection is closed); a file
shorter than its span (changed under the server) closes the connection too, since the
promised length can no longer be kept, and is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("webpacs.web")

#: The ``scope["extensions"]`` key a server that takes ``MESSAGE`` sets.
EXTENSION = "webpacs.pieces"
#: The ASGI message carrying pieces.
MESSAGE = "webpacs.response.pieces"
#: How long a socket may stay full before the write gives up (seconds).
WRITE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Span:
    """``count`` bytes of the file at ``path`` from ``offset``."""

    path: str
    offset: int
    count: int


Piece = bytes | Span


def length(pieces: Sequence[Piece]) -> int:
    return sum(p.count if isinstance(p, Span) else len(p) for p in pieces)


def joined(chunks: Iterable[bytes | Span]) -> list[Piece]:
    """``chunks`` with neighbouring ``bytes`` joined (one write for a part's CRLF, the next
    boundary and its headers)."""
    out: list[Piece] = []
    for chunk in chunks:
        if isinstance(chunk, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += chunk
        else:
            out.append(chunk)
    return out


def read(piece: Piece) -> bytes:
    """A piece's bytes (the path without the extension)."""
    if not isinstance(piece, Span):
        return piece
    with open(piece.path, "rb") as f:
        data = os.pread(f.fileno(), piece.count, piece.offset)
    if len(data) != piece.count:
        raise OSError(f"{piece.path}: {len(data)} bytes where {piece.count} were expected")
    return data


class PiecesResponse(Response):
    """A body of pieces (module doc)."""

    def __init__(
        self, pieces: list[Piece], media_type: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(b"", media_type=media_type, headers=headers)
        self.pieces = pieces
        self.headers["content-length"] = str(length(pieces))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if EXTENSION in scope.get("extensions", {}) and scope.get("method") != "HEAD":
            await send({"type": MESSAGE, "pieces": self.pieces, "more_body": False})
        else:
            await self._send_read(scope, send)

    async def _send_read(self, scope: Scope, send: Send) -> None:
        if scope.get("method") == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        last = len(self.pieces) - 1
        for i, piece in enumerate(self.pieces):
            body = piece if isinstance(piece, bytes) else await run_in_threadpool(read, piece)
            await send({"type": "http.response.body", "body": body, "more_body": i < last})
        if last < 0:
            await send({"type": "http.response.body", "body": b""})


# -- the server side -------------------------------------------------------------------
class Writer:
    """Writes pieces to the non-blocking socket ``fd`` (files by ``os.sendfile``), as far
    as the socket takes them now (``step``, on the event loop: most responses fit in the
    socket's buffer at once) or to the end (``finish``, on a thread, waiting with ``poll``
    while the socket is full)."""

    def __init__(self, fd: int, pieces: Sequence[Piece]) -> None:
        self.fd = fd
        self.pieces = pieces
        self.index = 0  # the piece being written
        self.done = 0  # its bytes already written
        self.file: BinaryIO | None = None  # its file, open while it is written

    def step(self) -> bool:
        """Write until the socket is full; whether every piece is written."""
        try:
            while self.index < len(self.pieces):
                piece = self.pieces[self.index]
                left = (piece.count if isinstance(piece, Span) else len(piece)) - self.done
                if left > 0:
                    self.done += self._write(piece, left)
                    continue
                if self.file is not None:
                    self.file.close()
                    self.file = None
                self.index, self.done = self.index + 1, 0
        except BlockingIOError:
            return False
        return True

    def _write(self, piece: Piece, left: int) -> int:
        if not isinstance(piece, Span):
            return os.write(self.fd, memoryview(piece)[self.done :])
        if self.file is None:
            self.file = open(piece.path, "rb")  # noqa: SIM115 -- closed by step/close
        sent = os.sendfile(self.fd, self.file.fileno(), piece.offset + self.done, left)
        if sent == 0:
            raise EOFError(f"{piece.path} ends {left} bytes before its span")
        return sent

    def finish(self, timeout: float = WRITE_TIMEOUT) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLOUT)
        while not self.step():
            if not poller.poll(int(timeout * 1000)):
                raise TimeoutError(f"the client read nothing for {timeout:g} s")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def write_all(fd: int, pieces: Sequence[Piece], timeout: float = WRITE_TIMEOUT) -> None:
    """Write ``pieces`` to the non-blocking socket ``fd`` to the end."""
    writer = Writer(fd, pieces)
    try:
        writer.finish(timeout)
    finally:
        writer.close()


def _cork(sock: Any, on: bool) -> None:
    """``TCP_CORK`` (Linux): part headers go out with the file bytes after them, not alone."""
    if hasattr(socket, "TCP_CORK"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, int(on))


async def _drained(transport: asyncio.Transport) -> None:
    """Wait until the transport has written what it holds (usually at once: the headers)."""
    while transport.get_write_buffer_size() and not transport.is_closing():
        await asyncio.sleep(0.001)


async def serve(cycle: Any, transport: asyncio.Transport, message: Message) -> None:
    """Handle ``MESSAGE`` on uvicorn's request-response ``cycle`` (module doc)."""
    if cycle.disconnected:
        return
    pieces: list[Piece] = message["pieces"]
    more = bool(message.get("more_body", False))
    total = length(pieces)
    if cycle.chunked_encoding or total > cycle.expected_content_length:
        raise RuntimeError("webpacs pieces need a Content-Length that covers them")
    await _drained(transport)
    sock = transport.get_extra_info("socket")
    if transport.is_closing() or sock is None:
        cycle.disconnected = True
        return
    fd = os.dup(sock.fileno())  # the transport may close its descriptor meanwhile
    writer = Writer(fd, pieces)
    cork = len(pieces) > 1
    if cork:
        _cork(sock, True)
    try:
        if not writer.step():  # the socket is full: the rest from a thread
            await run_in_threadpool(writer.finish)
    except (OSError, EOFError) as e:  # the client went away, or a file changed under us
        if not isinstance(e, BrokenPipeError | ConnectionResetError):
            log.warning("response body broken off: %s", e)
        cycle.disconnected = True
        transport.close()
        return
    finally:
        writer.close()
        os.close(fd)
        if cork and not transport.is_closing():
            _cork(sock, False)
    cycle.expected_content_length -= total
    await cycle.send({"type": "http.response.body", "body": b"", "more_body": more})


def sendfile_app(app: ASGIApp, cycle: Any, transport: asyncio.Transport) -> ASGIApp:
    """``app`` with ``MESSAGE`` handled for this request's ``cycle`` (the protocol calls it)."""

    async def with_pieces(scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == MESSAGE:
                await serve(cycle, transport, message)
            else:
                await send(message)

        await app(scope, receive, sending)

    return with_pieces
