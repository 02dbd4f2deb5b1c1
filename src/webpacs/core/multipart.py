"""Media type parsing and streaming ``multipart/related`` writing.

* Media types and their parameters follow RFC 9110 section 8.3.1 (``type "/" subtype
  *( OWS ";" OWS parameter )``, parameter values a token or a quoted-string with
  backslash escapes, section 5.6.4).
* ``multipart/related`` (RFC 2387) with the body framing of RFC 2046 section 5.1.1, as
  DICOMweb uses it for WADO-RS responses and STOW-RS requests (PS3.18 section 8.6.1.2 and
  section 8.7.2 "Multipart Media Types"): every part is introduced by ``--boundary CRLF``,
  its headers, an empty line and its body; the message closes with ``--boundary--``.

Reading request bodies is the web layer's job (``webpacs.web.multipart_reader``), which
uses a real streaming parser; this module is pure standard library.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from typing import TypeVar

from webpacs.errors import InvalidRequest

__all__ = [
    "iter_multipart",
    "multipart_content_type",
    "new_boundary",
    "parse_media_type",
    "quote_param",
    "split_header_list",
]

_Chunk = TypeVar("_Chunk")

# RFC 9110 section 5.6.2: tchar.
_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_OWS = " \t"


def _is_token(value: str) -> bool:
    return bool(value) and all(c in _TCHARS for c in value)


def _read_quoted(value: str, pos: int) -> tuple[str, int]:
    """Read a quoted-string starting at ``value[pos] == '"'``; return (content, next pos)."""
    out: list[str] = []
    pos += 1
    while pos < len(value):
        c = value[pos]
        if c == "\\":
            if pos + 1 >= len(value):
                break
            out.append(value[pos + 1])
            pos += 2
        elif c == '"':
            return "".join(out), pos + 1
        else:
            out.append(c)
            pos += 1
    raise InvalidRequest(f"unterminated quoted string in {value!r}")


def split_header_list(value: str, sep: str = ",") -> list[str]:
    """Split a header list (RFC 9110 section 5.6.1) on ``sep``, ignoring separators
    inside quoted strings; empty elements are dropped and elements are stripped."""
    items: list[str] = []
    start = 0
    pos = 0
    while pos < len(value):
        c = value[pos]
        if c == '"':
            _, pos = _read_quoted(value, pos)
            continue
        if c == sep:
            items.append(value[start:pos])
            start = pos + 1
        pos += 1
    items.append(value[start:])
    return [item.strip(_OWS) for item in items if item.strip(_OWS)]


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """Parse a media type with parameters (RFC 9110 section 8.3.1).

    >>> parse_media_type('Multipart/Related; type="application/dicom"; boundary=abc')
    ('multipart/related', {'type': 'application/dicom', 'boundary': 'abc'})

    The type and parameter names are lower-cased, parameter values are unquoted (backslash
    escapes resolved) and otherwise kept as sent. Raises :class:`InvalidRequest` when the
    value is not a media type.
    """
    if value is None or not value.strip(_OWS):
        raise InvalidRequest("empty media type")
    if value.strip(_OWS).startswith(";"):
        raise InvalidRequest(f"invalid media type {value!r}")
    pieces = split_header_list(value, ";")
    full = pieces[0]
    main, slash, sub = full.partition("/")
    main, sub = main.strip(_OWS), sub.strip(_OWS)
    if not slash or not _is_token(main) or not _is_token(sub):
        raise InvalidRequest(f"invalid media type {value!r}")
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        name, eq, raw = piece.partition("=")
        name = name.strip(_OWS).lower()
        raw = raw.strip(_OWS)
        if not eq or not _is_token(name):
            raise InvalidRequest(f"invalid parameter {piece!r} in media type {value!r}")
        if raw.startswith('"'):
            text, end = _read_quoted(raw, 0)
            if raw[end:].strip(_OWS):
                raise InvalidRequest(f"invalid parameter {piece!r} in media type {value!r}")
        elif _is_token(raw) or (raw and all(c in _TCHARS or c in "/:=?@[]" for c in raw)):
            # Be lenient with unquoted values holding '/' (``type=application/dicom``), which
            # many clients send although RFC 9110 requires quoting.
            text = raw
        else:
            raise InvalidRequest(f"invalid parameter {piece!r} in media type {value!r}")
        params[name] = text
    return f"{main.lower()}/{sub.lower()}", params


def quote_param(value: str) -> str:
    """Render a parameter value as a token when possible, else as a quoted-string."""
    if _is_token(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def new_boundary() -> str:
    """A fresh random boundary: 32 hex digits, which cannot occur in the boundary's own
    delimiter syntax and is within RFC 2046's 70-character limit (section 5.1.1)."""
    return secrets.token_hex(16)


def multipart_content_type(
    part_type: str, boundary: str, transfer_syntax: str | None = None
) -> str:
    """The ``Content-Type`` of a DICOMweb multipart response (PS3.18 section 8.7.2).

    >>> multipart_content_type("application/dicom", "b1")
    'multipart/related; type="application/dicom"; boundary=b1'
    """
    value = f'multipart/related; type="{part_type}"; boundary={quote_param(boundary)}'
    if transfer_syntax is not None:
        value += f"; transfer-syntax={quote_param(transfer_syntax)}"
    return value


def iter_multipart(
    parts: Iterable[tuple[dict[str, str], Iterable[_Chunk]]], boundary: str
) -> Iterator[bytes | _Chunk]:
    """Stream a ``multipart/related`` body (RFC 2046 section 5.1.1).

    Each part is ``(headers, body_chunks)``; chunks are yielded as they come, never joined,
    so a part may be a file read piece by piece (or stand for bytes the server sends
    itself: chunks of another type are passed through, with the framing around them as
    ``bytes``). Yields ``--boundary CRLF headers CRLF CRLF``,
    the body chunks, ``CRLF``, and finally ``--boundary-- CRLF``.
    """
    if not boundary or "\r" in boundary or "\n" in boundary:
        raise ValueError(f"invalid boundary {boundary!r}")
    dash = b"--" + boundary.encode("ascii")
    for headers, body in parts:
        head = [dash]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} contains a line break")
            head.append(f"{name}: {value}".encode("latin-1"))
        yield b"\r\n".join(head) + b"\r\n\r\n"
        for chunk in body:
            if chunk:
                yield chunk
        yield b"\r\n"
    yield dash + b"--\r\n"
