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
    """Writes pieces to the non-blocking socket ``sock`` (files by ``os.sendfile``), as far
    as the socket takes them now (``step``, on the event loop: most responses fit in the
    socket's buffer at once) or to the end (``finish``, on a thread, waiting with ``poll``
    while the socket is full)."""

    def __init__(self, sock: socket.socket, pieces: Sequence[Piece]) -> None:
        self.sock = sock
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
            more = self.index + 1 < len(self.pieces)  # coalesced with what follows
            return self.sock.send(memoryview(piece)[self.done :], socket.MSG_MORE if more else 0)
        if self.file is None:
            self.file = open(piece.path, "rb")  # noqa: SIM115 -- closed by step/close
        sent = os.sendfile(self.sock.fileno(), self.file.fileno(), piece.offset + self.done, left)
        if sent == 0:
            raise EOFError(f"{piece.path} ends {left} bytes before its span")
        return sent

    def finish(self, timeout: float = WRITE_TIMEOUT) -> None:
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLOUT)
        while not self.step():
            if not poller.poll(int(timeout * 1000)):
                raise TimeoutError(f"the client read nothing for {timeout:g} s")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class _Capture:
    """Stands for the transport while uvicorn writes a response head: keeps the bytes."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


class _Prefixed:
    """The transport, with ``head`` written together with the next write (one ``writev``
    on uvloop: the head and a small body leave in one packet, not two)."""

    def __init__(self, transport: asyncio.Transport, head: bytes) -> None:
        self.transport = transport
        self.head = head

    def write(self, data: bytes) -> None:
        head, self.head = self.head, b""
        self.transport.writelines([head, data] if head else [data])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def _head(cycle: Any, send: Send, start: Message) -> bytes:
    """The response head uvicorn writes for ``start``, as bytes, not written."""
    transport, cycle.transport = cycle.transport, _Capture()
    try:
        await send(start)
        return bytes(cycle.transport.data)
    finally:
        cycle.transport = transport


async def _send_body(cycle: Any, send: Send, message: Message, head: bytes) -> None:
    """An ordinary body message, the head in the same write."""
    transport, cycle.transport = cycle.transport, _Prefixed(cycle.transport, head)
    try:
        await send(message)
    finally:
        prefixed, cycle.transport = cycle.transport, transport
    if prefixed.head and not cycle.disconnected:  # nothing written (HEAD): the head alone
        transport.write(prefixed.head)


async def _drained(transport: asyncio.Transport) -> None:
    """Wait until the transport has written what it holds (usually at once: the headers)."""
    while transport.get_write_buffer_size() and not transport.is_closing():
        await asyncio.sleep(0.001)


async def serve(
    cycle: Any, transport: asyncio.Transport, message: Message, head: bytes = b""
) -> None:
    """Handle ``MESSAGE`` on uvicorn's request-response ``cycle`` (module doc); ``head``
    is the response head, not written yet."""
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
    # a socket of our own on a duplicate descriptor: the transport may close its own meanwhile
    own = socket.socket(fileno=os.dup(sock.fileno()))
    own.setblocking(False)
    writer = Writer(own, [head, *pieces] if head else pieces)
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
        own.close()
    cycle.expected_content_length -= total
    await cycle.send({"type": "http.response.body", "body": b"", "more_body": more})


def sendfile_app(app: ASGIApp, cycle: Any, transport: asyncio.Transport) -> ASGIApp:
    """``app`` with ``MESSAGE`` handled for this request's ``cycle`` (the protocol calls
    it). The response head is held until the first body message and written with it."""

    async def with_pieces(scope: Scope, receive: Receive, send: Send) -> None:
        held: Message | None = None

        async def sending(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and not cycle.response_started:
                held = message
                return
            head = b""
            if held is not None:
                start, held = held, None
                head = await _head(cycle, send, start)
            if message["type"] == MESSAGE:
                await serve(cycle, transport, message, head)
            elif head:
                await _send_body(cycle, send, message, head)
            else:
                await send(message)

        await app(scope, receive, sending)
        if held is not None:  # a start and no body: the head alone
            await send(held)

    return with_pieces
