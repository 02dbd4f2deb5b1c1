"""Streaming reader of ``multipart/related`` request bodies (STOW-RS).

STOW-RS requests are ``multipart/related; type="application/dicom"`` (or
``application/dicom+json`` with bulk data parts), PS3.18 section 10.5.1.1 and section 8.6.1.2;
the framing is RFC 2046 section 5.1.1 / RFC 2387.

The bytes are parsed by python-multipart's streaming ``MultipartParser`` (which accepts any
boundary). Each part body is written, as it arrives, to a ``SpooledTemporaryFile`` that stays
in memory up to ``spill_threshold`` bytes and then rolls over to disk, so a 1 GB upload is
never held in memory. The total body is limited to ``max_body`` bytes, each part to
``max_part_bytes`` (413), the number of parts to ``max_parts`` (400); a part that is itself
multipart is refused (400): STOW-RS bodies are one level deep, and nothing here reads a
nested body (README "Hardening").

RFC 2045/822 allow part headers to be folded (a line starting with a space or tab continues the
previous header). The parser rejects folded lines, so the reader hands it each part's header
block whole, unfolded; part data goes to the parser in the chunks it arrived in. A preamble
before the first delimiter and an epilogue after the last are ignored (RFC 2046 5.1.1);
transport padding after a delimiter is accepted except after the first one (a limit of
python-multipart).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from tempfile import SpooledTemporaryFile
from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState

from webpacs.config import ServerSettings
from webpacs.core.multipart import parse_media_type
from webpacs.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["MultipartReader", "Part", "read_multipart"]

_HEADER_STATES = frozenset(
    {
        MultipartState.HEADER_FIELD_START,
        MultipartState.HEADER_FIELD,
        MultipartState.HEADER_VALUE_START,
        MultipartState.HEADER_VALUE,
        MultipartState.HEADER_VALUE_ALMOST_DONE,
        MultipartState.HEADERS_ALMOST_DONE,
    }
)
_BEFORE_FIRST_BOUNDARY = frozenset({MultipartState.START, MultipartState.START_BOUNDARY})
_FOLD = re.compile(rb"\r\n[ \t]+")
# How far after a "--boundary" candidate we look for the end of its line (transport padding).
_MAX_BOUNDARY_LINE = 1024
_MAX_BOUNDARY_LENGTH = 256  # python-multipart's limit (RFC 2046 says 70)


@dataclass
class Part:
    """One body part of a multipart request (RFC 2046 section 5.1)."""

    headers: dict[str, str]
    """Part headers, names lower-cased, values with folding removed."""
    content_type: str
    """The part's media type, lower-cased, without parameters; ``""`` if it had none."""
    params: dict[str, str]
    """The part's media type parameters (e.g. ``transfer-syntax``)."""
    file: SpooledTemporaryFile[bytes]
    """The body, rewound: in memory up to the spill threshold, then on disk."""
    size: int
    """Body length in bytes."""

    def read(self) -> bytes:
        """The whole body (only for parts known to be small)."""
        self.file.seek(0)
        return self.file.read()

    def close(self) -> None:
        """Release the body's memory or temporary file."""
        self.file.close()


@dataclass
class _Building:
    file: SpooledTemporaryFile[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    name: bytearray = field(default_factory=bytearray)
    value: bytearray = field(default_factory=bytearray)
    size: int = 0


class MultipartReader:
    """Push parser for a ``multipart/related`` body: :meth:`feed` chunks, then :meth:`finish`.

    ``content_type_header`` is the request's ``Content-Type``; it must be
    ``multipart/related`` (else :class:`UnsupportedMediaType`) with a ``boundary`` parameter
    (else :class:`InvalidRequest`). The ``type`` parameter (PS3.18 section 8.6.1.2, e.g.
    ``application/dicom`` or ``application/dicom+json``) is exposed as :attr:`type_param`.

    Parts returned by :meth:`feed`/:meth:`finish` belong to the caller, who closes them. On
    any error the reader closes the part it was building and refuses further input.
    """

    def __init__(
        self,
        content_type_header: str | None,
        *,
        max_body: int,
        spill_threshold: int = 1 << 20,
        max_header_block: int = 16 * 1024,
        max_parts: int = ServerSettings.max_parts,
        max_part_bytes: int = ServerSettings.max_part_bytes,
    ) -> None:
        if content_type_header is None or not content_type_header.strip():
            raise UnsupportedMediaType("request has no Content-Type; expected multipart/related")
        media_type, params = parse_media_type(content_type_header)
        if media_type != "multipart/related":
            raise UnsupportedMediaType(
                f"request body is {media_type}; expected multipart/related (PS3.18 8.6.1.2)"
            )
        boundary = params.get("boundary", "")
        if not boundary:
            raise InvalidRequest("missing boundary parameter in Content-Type multipart/related")
        try:
            boundary_bytes = boundary.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidRequest(f"invalid multipart boundary {boundary!r}") from None
        if len(boundary_bytes) > _MAX_BOUNDARY_LENGTH or b"\r" in boundary_bytes:
            raise InvalidRequest(f"invalid multipart boundary {boundary!r}")
        self.boundary = boundary
        self.type_param = params.get("type", "").lower()
        self.params = params
        self.max_body = max_body
        self.spill_threshold = spill_threshold
        self.max_header_block = max_header_block
        self.max_parts = max_parts
        self.max_part_bytes = max_part_bytes
        self.bytes_read = 0
        self.parts_read = 0
        self._dash = b"--" + boundary_bytes
        self._carry = b""
        self._current: _Building | None = None
        self._done: list[Part] = []
        self._failed = False
        self._parser = MultipartParser(
            boundary_bytes,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
            },
            max_header_count=256,  # the header block as a whole is limited by max_header_block
        )

    # -- parser callbacks -------------------------------------------------------------------

    def _on_part_begin(self) -> None:
        if self.parts_read >= self.max_parts:
            raise InvalidRequest(
                f"multipart body has more than {self.max_parts} parts (server.maxParts)"
            )
        # Closed by _on_part_end's consumer (Part.close) or by close() on error.
        spool = SpooledTemporaryFile(max_size=self.spill_threshold)  # noqa: SIM115
        self._current = _Building(spool)

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        assert self._current is not None
        self._current.name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        assert self._current is not None
        self._current.value += data[start:end]

    def _on_header_end(self) -> None:
        cur = self._current
        assert cur is not None
        name = cur.name.decode("latin-1").strip().lower()
        value = cur.value.decode("latin-1").strip(" \t")
        cur.headers[name] = f"{cur.headers[name]}, {value}" if name in cur.headers else value
        if name == "content-type":
            self._refuse_nested(value)
        cur.name.clear()
        cur.value.clear()

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        cur = self._current
        assert cur is not None
        cur.size += end - start
        if cur.size > self.max_part_bytes:
            raise PayloadTooLarge(
                f"part {self.parts_read + 1} exceeds {self.max_part_bytes} bytes"
                " (server.maxPartBytes)"
            )
        cur.file.write(data[start:end])

    def _on_part_end(self) -> None:
        cur = self._current
        assert cur is not None
        self._current = None
        try:
            raw = cur.headers.get("content-type", "").strip()
            content_type, params = parse_media_type(raw) if raw else ("", {})
        except InvalidRequest as exc:
            cur.file.close()
            raise InvalidRequest(f"part {self.parts_read + 1}: {exc}") from None
        cur.file.seek(0)
        self.parts_read += 1
        self._done.append(Part(cur.headers, content_type, params, cur.file, cur.size))

    def _refuse_nested(self, content_type: str) -> None:
        if content_type.strip(" \t").lower().startswith("multipart/"):
            raise InvalidRequest(
                f"part {self.parts_read + 1} is {content_type.split(';')[0].strip()}:"
                " nested multipart bodies are not accepted"
            )

    # -- feeding ----------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if not data:
            return
        try:
            self._parser.write(data)
        except MultipartParseError as exc:
            if self._parser.state in _BEFORE_FIRST_BOUNDARY:
                raise InvalidRequest(self._no_boundary_message()) from None
            raise InvalidRequest(f"malformed multipart body: {exc}") from None

    def _no_boundary_message(self) -> str:
        return (
            f"body does not contain the boundary {self.boundary!r} given in Content-Type "
            "(RFC 2046 5.1.1)"
        )

    def _pump(self, buf: bytes, final: bool) -> bytes:
        """Feed ``buf`` to the parser, header blocks whole and unfolded; return the carry."""
        pos = 0
        dash = self._dash
        while pos < len(buf):
            state = self._parser.state
            if state == MultipartState.END:
                return b""  # epilogue (RFC 2046 5.1.1): ignored
            if state == MultipartState.START and not buf.startswith(dash, pos):
                # Preamble (RFC 2046 5.1.1): skip to the first CRLF "--boundary".
                k = buf.find(b"\r\n" + dash, pos)
                if k >= 0:
                    pos = k + 2
                    continue
                if final:
                    return b""
                return buf[max(pos, len(buf) - len(dash) - 1) :]
            if state in _HEADER_STATES:
                if buf.startswith(b"\r\n", pos):
                    end = pos + 2
                else:
                    k = buf.find(b"\r\n\r\n", pos)
                    if k < 0:
                        if len(buf) - pos > self.max_header_block:
                            raise InvalidRequest(
                                f"part headers exceed {self.max_header_block} bytes"
                            )
                        if not final:
                            return buf[pos:]
                        end = len(buf)
                    else:
                        end = k + 4
                self._write(_FOLD.sub(b" ", buf[pos:end]))
                pos = end
                continue
            # Data (or preamble): write up to the end of the next "--boundary" line, so that
            # the parser enters a header block only at the start of a write.
            k = buf.find(dash, pos)
            if k < 0:
                cut = len(buf) if final else max(pos, len(buf) - (len(dash) - 1))
                self._write(buf[pos:cut])
                return buf[cut:]
            after = k + len(dash)
            lf = buf.find(b"\n", after, after + _MAX_BOUNDARY_LINE)
            if lf >= 0:
                end = lf + 1
            elif final or len(buf) - after >= _MAX_BOUNDARY_LINE:
                end = min(len(buf), after + _MAX_BOUNDARY_LINE)
            else:
                self._write(buf[pos:k])
                return buf[k:]
            self._write(buf[pos:end])
            pos = end
        return b""

    def _take(self) -> list[Part]:
        done, self._done = self._done, []
        return done

    def feed(self, chunk: bytes) -> list[Part]:
        """Parse the next chunk of the body; return the parts it completed.

        Raises :class:`PayloadTooLarge` once more than ``max_body`` bytes were fed and
        :class:`InvalidRequest` on a malformed body.
        """
        if self._failed:
            raise InvalidRequest("multipart reader already failed")
        self.bytes_read += len(chunk)
        try:
            if self.bytes_read > self.max_body:
                raise PayloadTooLarge(
                    f"request body exceeds the limit of {self.max_body} bytes (server.maxBodyBytes)"
                )
            buf = self._carry + chunk if self._carry else bytes(chunk)
            self._carry = self._pump(buf, final=False)
        except BaseException:
            self._fail()
            raise
        return self._take()

    def finish(self) -> list[Part]:
        """Signal the end of the body; return the last parts.

        Raises :class:`InvalidRequest` if the body did not contain the boundary, ended
        before the closing delimiter, or held no part at all.
        """
        if self._failed:
            raise InvalidRequest("multipart reader already failed")
        try:
            carry, self._carry = self._carry, b""
            self._pump(carry, final=True)
            self._parser.finalize()
            state = self._parser.state
            if state in _BEFORE_FIRST_BOUNDARY:
                raise InvalidRequest(self._no_boundary_message())
            if state != MultipartState.END:
                raise InvalidRequest(
                    f"multipart body ended before the closing boundary '--{self.boundary}--'"
                )
            if self.parts_read == 0:
                raise InvalidRequest("multipart body contains no parts")
        except BaseException:
            self._fail()
            raise
        return self._take()

    def _fail(self) -> None:
        self._failed = True
        self.close()

    def close(self) -> None:
        """Close the part being built and completed parts not yet handed out."""
        if self._current is not None:
            self._current.file.close()
            self._current = None
        for part in self._take():
            part.close()

    def __enter__(self) -> MultipartReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def read_multipart(
    request: Request,
    *,
    max_body: int,
    spill_threshold: int = 1 << 20,
    max_parts: int = ServerSettings.max_parts,
    max_part_bytes: int = ServerSettings.max_part_bytes,
) -> AsyncGenerator[Part, None]:
    """Yield the parts of a ``multipart/related`` request body as they complete.

    Rejects the request early with :class:`PayloadTooLarge` when ``Content-Length`` exceeds
    ``max_body`` (and later, while streaming, when the body does). Each part is closed when
    the iteration moves past it (or stops), so consume or move its file before asking for
    the next one.

    Parsing runs on the event loop; it is a few ``bytes.find`` calls and a file write per
    received chunk.
    """
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise InvalidRequest(f"invalid Content-Length {length!r}") from None
        if declared > max_body:
            raise PayloadTooLarge(
                f"request body of {declared} bytes exceeds the limit of {max_body} bytes"
                " (server.maxBodyBytes)"
            )
    reader = MultipartReader(
        request.headers.get("content-type"),
        max_body=max_body,
        spill_threshold=spill_threshold,
        max_parts=max_parts,
        max_part_bytes=max_part_bytes,
    )
    pending: list[Part] = []
    try:
        async for chunk in request.stream():
            if not chunk:
                continue
            pending = reader.feed(chunk)
            while pending:
                part = pending.pop(0)
                try:
                    yield part
                finally:
                    part.close()
        pending = reader.finish()
        while pending:
            part = pending.pop(0)
            try:
                yield part
            finally:
                part.close()
    finally:
        for part in pending:
            part.close()
        reader.close()
