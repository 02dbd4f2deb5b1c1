"""Multipart/related writing (core.multipart) and streaming reading (web.multipart_reader)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from webpacs.core.multipart import (
    iter_multipart,
    multipart_content_type,
    new_boundary,
    parse_media_type,
    split_header_list,
)
from webpacs.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from webpacs.web.multipart_reader import MultipartReader, Part, read_multipart

MB = 1 << 20
_opened: list[Part] = []


@pytest.fixture(autouse=True)
def _close_parts() -> Iterator[None]:
    """Close the parts ``read_all`` returned (unclosed files warn, and warnings are errors)."""
    yield
    while _opened:
        _opened.pop().close()


def read_all(
    body: bytes, content_type: str, chunk: int = 64 * 1024, max_body: int = 1 << 30
) -> list[Part]:
    reader = MultipartReader(content_type, max_body=max_body)
    parts: list[Part] = []
    try:
        for i in range(0, len(body), chunk):
            parts += reader.feed(body[i : i + chunk])
        parts += reader.finish()
    finally:
        _opened.extend(parts)
    return parts


# -- parse_media_type ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            'multipart/related; type="application/dicom"; boundary=abc',
            ("multipart/related", {"type": "application/dicom", "boundary": "abc"}),
        ),
        ("Application/DICOM+JSON", ("application/dicom+json", {})),
        (
            "multipart/related;TYPE=application/dicom",
            ("multipart/related", {"type": "application/dicom"}),
        ),
        ('a/b; x="q\\"uo\\\\te;d"', ("a/b", {"x": 'q"uo\\te;d'})),
        ("a/b ; x = 1 ;", ("a/b", {"x": "1"})),
        ("*/*", ("*/*", {})),
    ],
)
def test_parse_media_type(value: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_media_type(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "  ", "text", "/plain", "text/", "a b/c", "a/b; x", 'a/b; x="open', "; a/b", "a/b; =1"],
)
def test_parse_media_type_garbage(value: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_media_type(value)


def test_split_header_list_respects_quotes() -> None:
    assert split_header_list('a/b; x="1,2", c/d,, e/f') == ['a/b; x="1,2"', "c/d", "e/f"]


# -- writer -------------------------------------------------------------------------------


def test_content_type_and_boundary() -> None:
    b = new_boundary()
    assert b != new_boundary() and 1 <= len(b) <= 70 and b.isalnum()
    assert multipart_content_type("application/dicom", "b1") == (
        'multipart/related; type="application/dicom"; boundary=b1'
    )
    assert multipart_content_type("image/jpeg", "b1", "1.2.840.10008.1.2.4.50").endswith(
        "; transfer-syntax=1.2.840.10008.1.2.4.50"
    )


def test_iter_multipart_exact_bytes_and_streaming() -> None:
    seen: list[bytes] = []

    def body() -> Iterator[bytes]:
        for piece in (b"ab", b"", b"cd"):
            seen.append(piece)
            yield piece

    out = iter_multipart([({"Content-Type": "application/dicom"}, body())], "XY")
    assert next(out) == b"--XY\r\nContent-Type: application/dicom\r\n\r\n"
    assert seen == []  # nothing read before it is needed
    assert list(out) == [b"ab", b"cd", b"\r\n", b"--XY--\r\n"]


def test_iter_multipart_rejects_header_injection() -> None:
    with pytest.raises(ValueError):
        list(iter_multipart([({"X": "a\r\nB: c"}, [b""])], "b"))


# -- reader: round trips ------------------------------------------------------------------

# Boundary-like bytes that are not delimiters: a delimiter is CRLF "--" boundary followed by
# optional padding and CRLF, or by "--" (RFC 2046 5.1.1); a body cannot contain one.
TRICKY = [
    b"x--BOUNDARY\r\n",
    b"\r\n--BOUNDARYX\r\n\r\n--BOUNDAR",
    b"",
    bytes(range(256)) * 3 + b"\r\n\r\n--",
    b"x--BOUNDARY--\r\n\r\n--BOUNDARYX\r\n--BOUNDAR",
    b"\r",
]


@pytest.mark.parametrize("chunk", [1, 7, 64 * 1024])
def test_round_trip_binary_bodies(chunk: int) -> None:
    boundary = "BOUNDARY"
    bodies = [*TRICKY, os.urandom(200_000)]
    parts_in = [
        ({"Content-Type": "application/dicom", "Content-Location": f"/p/{i}"}, [b])
        for i, b in enumerate(bodies)
    ]
    data = b"".join(iter_multipart(parts_in, boundary))
    if chunk == 1:  # one byte at a time: keep it quick
        bodies = bodies[:-1]
        data = b"".join(iter_multipart(parts_in[:-1], boundary))
    parts = read_all(data, multipart_content_type("application/dicom", boundary), chunk)
    assert [p.read() for p in parts] == bodies
    assert [p.size for p in parts] == [len(b) for b in bodies]
    assert [p.headers["content-location"] for p in parts] == [f"/p/{i}" for i in range(len(bodies))]
    for p in parts:
        p.close()


def test_random_boundary_round_trip() -> None:
    boundary = new_boundary()
    bodies = [os.urandom(n) for n in (0, 1, 1000, 70_000)]
    data = b"".join(iter_multipart([({}, [b]) for b in bodies], boundary))
    parts = read_all(data, multipart_content_type("application/dicom", boundary), 4096)
    assert [p.read() for p in parts] == bodies
    assert all(p.content_type == "" and p.params == {} for p in parts)


def test_reader_exposes_type_and_boundary() -> None:
    reader = MultipartReader(
        'Multipart/Related; boundary="a b:c"; type="Application/DICOM+JSON"', max_body=10
    )
    assert reader.boundary == "a b:c"
    assert reader.type_param == "application/dicom+json"


def test_quoted_boundary() -> None:
    data = b'--x"y; z\r\nContent-Type: application/dicom\r\n\r\nDATA\r\n--x"y; z--\r\n'
    parts = read_all(data, 'multipart/related; type="application/dicom"; boundary="x\\"y; z"')
    assert [p.read() for p in parts] == [b"DATA"]


def test_part_content_type_params_and_header_case_and_folding() -> None:
    data = (
        b"preamble is ignored\r\n"
        b"--b\r\n"
        b"CONTENT-type: Application/DICOM;\r\n"
        b'\t transfer-syntax="1.2.840.10008.1.2.4.50"\r\n'
        b"content-ID: <a@b>\r\n"
        b"X-Twice: 1\r\n"
        b"x-twice: 2\r\n"
        b"\r\n"
        b"PIXELS\r\n"
        b"--b--\r\n"
        b"epilogue is ignored"
    )
    for chunk in (1, 3, len(data)):
        (part,) = read_all(data, "multipart/related; boundary=b", chunk)
        assert part.content_type == "application/dicom"
        assert part.params == {"transfer-syntax": "1.2.840.10008.1.2.4.50"}
        assert part.headers["content-id"] == "<a@b>"
        assert part.headers["x-twice"] == "1, 2"
        assert part.read() == b"PIXELS"


def test_boundary_with_transport_padding() -> None:
    # python-multipart accepts padding after every delimiter but the first
    data = b"--b\r\n\r\nONE\r\n--b \t \r\n\r\nTWO\r\n--b--"
    assert [p.read() for p in read_all(data, "multipart/related; boundary=b", 2)] == [
        b"ONE",
        b"TWO",
    ]


# -- reader: errors -----------------------------------------------------------------------


def test_non_multipart_is_unsupported_media_type() -> None:
    for value in ("application/dicom", "multipart/form-data; boundary=x", None, ""):
        with pytest.raises(UnsupportedMediaType):
            MultipartReader(value, max_body=10)


def test_missing_boundary() -> None:
    with pytest.raises(InvalidRequest, match="missing boundary"):
        MultipartReader('multipart/related; type="application/dicom"', max_body=10)


@pytest.mark.parametrize("chunk", [1, 5, 1 << 16])
@pytest.mark.parametrize(
    "body",
    [
        b"--other\r\n\r\nDATA\r\n--other--\r\n",
        b"\r\nno dashes at all",
        b"",
        b"just some bytes",
    ],
)
def test_wrong_or_absent_boundary(body: bytes, chunk: int) -> None:
    with pytest.raises(InvalidRequest, match="does not contain the boundary"):
        read_all(body, "multipart/related; boundary=b", chunk)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"--b\r\n\r\nDATA", "before the closing boundary"),
        (b"--b\r\n\r\nDATA\r\n--b\r\n", "before the closing boundary"),
        (b"--b\r\nContent-Type: x", "before the closing boundary"),
        (b"--b--\r\n", "no parts"),
        (b"--b\r\nBad Header: 1\r\n\r\nDATA\r\n--b--", "malformed"),
        (b"--b\r\nContent-Type: not a type\r\n\r\nDATA\r\n--b--", "part 1"),
    ],
)
def test_incomplete_or_malformed(body: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        read_all(body, "multipart/related; boundary=b", 3)


def test_huge_header_block_rejected() -> None:
    reader = MultipartReader("multipart/related; boundary=b", max_body=1 << 30)
    reader.feed(b"--b\r\n")
    with pytest.raises(InvalidRequest, match="headers"):
        for _ in range(100):
            reader.feed(b"X-A: " + b"a" * 1000 + b"\r\n")


def test_over_limit_is_payload_too_large_and_closes_files() -> None:
    data = b"".join(iter_multipart([({}, [b"x" * 1000])] * 3, "b"))
    reader = MultipartReader("multipart/related; boundary=b", max_body=len(data) - 1)
    got: list[Part] = []
    with pytest.raises(PayloadTooLarge):
        for i in range(0, len(data), 500):
            got += reader.feed(data[i : i + 500])
    assert len(got) == 2  # the parts completed before the limit was crossed
    for part in got:
        part.close()
    assert reader._current is None  # the part in progress was closed
    with pytest.raises(InvalidRequest):
        reader.feed(b"more")
    # exactly at the limit is fine
    assert len(read_all(data, "multipart/related; boundary=b", 500, max_body=len(data))) == 3


def test_large_part_spills_to_disk_with_bounded_memory() -> None:
    size = 50 * MB
    chunk = b"\x00\x01\r\n-" * (64 * 1024 // 5) + b"\x00" * (64 * 1024 % 5)
    boundary = new_boundary()
    reader = MultipartReader(
        multipart_content_type("application/dicom", boundary), max_body=size + 4096
    )
    tracemalloc.start()
    try:
        parts = reader.feed(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        for _ in range(size // len(chunk)):
            parts += reader.feed(chunk)
        parts += reader.feed(f"\r\n--{boundary}--\r\n".encode())
        parts += reader.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (part,) = parts
    assert part.size == (size // len(chunk)) * len(chunk)
    assert part.file._rolled  # type: ignore[attr-defined]
    assert isinstance(part.file._file, io.BufferedRandom)  # type: ignore[attr-defined]
    assert peak < 4 * MB, peak
    part.file.seek(0)
    assert part.file.read(len(chunk)) == chunk
    part.close()


def test_small_part_stays_in_memory() -> None:
    (part,) = read_all(b"--b\r\n\r\nsmall\r\n--b--", "multipart/related; boundary=b")
    assert not part.file._rolled  # type: ignore[attr-defined]


# -- read_multipart through a Starlette app -----------------------------------------------
# (driven as plain ASGI: starlette's TestClient now warns about httpx, and this also lets the
# test choose exactly how the body is chunked)


def post(
    app: Any, chunks: Iterable[bytes], headers: dict[str, str], path: str = "/studies"
) -> tuple[int, Any]:
    """POST ``chunks`` as the ASGI body of one request; return (status, decoded JSON)."""
    pending = [*chunks]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("test", 1),
        "server": ("test", 80),
    }
    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


def make_app(max_body: int) -> Starlette:
    async def stow(request: Request) -> JSONResponse:
        out = []
        try:
            async for part in read_multipart(request, max_body=max_body, spill_threshold=10):
                out.append([part.content_type, part.params, part.read().decode("latin-1")])
        except PayloadTooLarge as exc:
            return JSONResponse({"error": str(exc)}, status_code=413)
        except UnsupportedMediaType as exc:
            return JSONResponse({"error": str(exc)}, status_code=415)
        except InvalidRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(out)

    return Starlette(routes=[Route("/studies", stow, methods=["POST"])])


def test_read_multipart_streams_request() -> None:
    boundary = new_boundary()
    parts = [
        ({"Content-Type": "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"}, [b"one"]),
        ({"Content-Type": "application/octet-stream"}, [b"two\r\n--" + boundary.encode() + b"x"]),
    ]
    app = make_app(1000)
    data = b"".join(iter_multipart(parts, boundary))
    ct = {"Content-Type": multipart_content_type("application/dicom", boundary)}
    for size in (1, 13, len(data)):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        status, got = post(app, chunks, {**ct, "Content-Length": str(len(data))})
        assert status == 200, got
        assert got == [
            ["application/dicom", {"transfer-syntax": "1.2.840.10008.1.2.1"}, "one"],
            ["application/octet-stream", {}, "two\r\n--" + boundary + "x"],
        ]

    ct = {"Content-Type": "multipart/related; boundary=b"}
    status, got = post(app, [b"x" * 2000], {**ct, "Content-Length": "2000"})
    assert status == 413 and "2000 bytes" in got["error"]

    status, got = post(app, [b"x" * 600, b"x" * 600], ct)  # no Content-Length
    assert status == 413

    status, got = post(app, [b"--b\r\n\r\n"], {**ct, "Content-Length": "x"})
    assert status == 400 and "Content-Length" in got["error"]

    status, got = post(app, [b"--c\r\n\r\nx\r\n--c--"], ct)
    assert status == 400 and "does not contain the boundary" in got["error"]

    status, got = post(app, [b"{}"], {"Content-Type": "application/json"})
    assert status == 415


def test_read_multipart_closes_parts_on_early_exit() -> None:
    kept: list[Part] = []

    async def first_only(request: Request) -> JSONResponse:
        gen = read_multipart(request, max_body=10_000)
        async for part in gen:
            kept.append(part)
            break
        await gen.aclose()
        return JSONResponse({})

    app = Starlette(routes=[Route("/", first_only, methods=["POST"])])
    data = b"".join(iter_multipart([({}, [b"a"]), ({}, [b"b"])], "b"))
    status, _ = post(app, [data], {"Content-Type": "multipart/related; boundary=b"}, "/")
    assert status == 200
    assert kept and kept[0].file.closed


def test_core_imports_only_stdlib_and_pydicom() -> None:
    code = (
        "import sys, webpacs.core.multipart, webpacs.core.media;"
        "mods = ('python_multipart', 'starlette', 'httpx', 'anyio');"
        "bad = [m for m in mods if m in sys.modules];"
        "sys.exit(str(bad) if bad else 0)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
