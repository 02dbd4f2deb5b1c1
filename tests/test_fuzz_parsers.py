"""Property tests of the parsers that take untrusted bytes (README "Hardening").

The multipart reader, the media type parser, the QIDO-RS query parser (and the index
searching what it parsed), JSON bodies, DICOM JSON to Part 10 (STOW-RS's JSON form) and
Part 10 ingest through pydicom (mutated bytes of real files): each input parses or is
refused with a typed 4xx error (``fuzz_support.parses_or_refuses``), never another
exception. See ``fuzz_support`` for how many examples run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import data_file, make_settings
from tests.fuzz_support import (
    dicom_json_objects,
    fuzz_settings,
    json_value,
    mutated,
    parses_or_refuses,
    part10_bytes,
    qido_params,
    tricky_text,
)
from webpacs.config import ServerSettings
from webpacs.core import part10
from webpacs.core.attributes import Level
from webpacs.core.multipart import parse_media_type, split_header_list
from webpacs.core.query import Query, parse_qido
from webpacs.errors import WebpacsError
from webpacs.ingest import IngestResult, ingest
from webpacs.storage.registry import Store, open_store
from webpacs.web.limits import load_json
from webpacs.web.multipart_reader import MultipartReader


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    st_ = open_store(make_settings(tmp_path_factory.mktemp("data")))
    ingest(st_.index, st_.blobs, data_file("CT_small.dcm").read_bytes())
    try:
        yield st_
    finally:
        st_.close()


# --------------------------------------------------------------------------- multipart
def read_parts(
    content_type: str, body: bytes, chunks: list[int], **limits: int
) -> list[tuple[str, dict[str, str], bytes]]:
    """The parts a MultipartReader makes of ``body`` fed in pieces of ``chunks`` bytes."""
    out = []
    options = {"max_body": 1 << 20, **limits}
    with MultipartReader(content_type, **options) as reader:
        pos = 0
        for size in [*chunks, len(body)]:
            for part in reader.feed(body[pos : pos + size]):
                out.append((part.content_type, part.params, part.read()))
                part.close()
            pos += size
            if pos >= len(body):
                break
        for part in reader.finish():
            out.append((part.content_type, part.params, part.read()))
            part.close()
    return out


header_names = st.one_of(
    st.sampled_from(["Content-Type", "content-location", "Content-ID", "X-A", " Folded"]),
    tricky_text,
)
header_values = st.one_of(
    st.sampled_from(
        [
            "application/dicom",
            "application/dicom+json",
            "multipart/related; boundary=q",
            "Multipart/Mixed",
            'application/octet-stream; transfer-syntax="1.2.840.10008.1.2.4.50"',
            "image/jpeg; transfer-syntax",
            '"',
            "",
        ]
    ),
    tricky_text,
)


def _latin1(text: str) -> bytes:
    return text.encode("latin-1", "replace")


@st.composite
def multipart_requests(draw: st.DrawFn) -> tuple[str, bytes, list[int]]:
    """A Content-Type, a body (framed more or less well, then maybe mutated) and how it is
    cut into pieces."""
    boundary = draw(
        st.one_of(
            st.sampled_from(["XyZ", "b", "a" * 70, "a" * 300, "--", "x y", "é"]),
            st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=20),
        )
    )
    quoted = boundary.replace("\\", "\\\\").replace('"', '\\"')
    content_type = draw(
        st.one_of(
            st.just(f'multipart/related; type="application/dicom"; boundary="{quoted}"'),
            st.just(f"multipart/related; boundary={boundary}"),
            tricky_text,
        )
    )
    dash = b"--" + _latin1(boundary)
    body = bytearray(draw(st.sampled_from([b"", b"preamble\r\n", b"\r\n"])))
    parts = draw(
        st.lists(
            st.tuples(
                st.lists(st.tuples(header_names, header_values), max_size=3),
                st.one_of(st.binary(max_size=200), st.just(dash), st.just(b"\r\n" + dash)),
            ),
            max_size=7,
        )
    )
    for headers, data in parts:
        body += dash + draw(st.sampled_from([b"\r\n", b"  \r\n", b"\n", b""]))
        for name, value in headers:
            body += _latin1(name) + b": " + _latin1(value) + b"\r\n"
        body += b"\r\n" + data + b"\r\n"
    body += dash + draw(st.sampled_from([b"--\r\n", b"--", b"", b"--epilogue"]))
    raw = bytes(body)
    if draw(st.booleans()):
        raw = draw(mutated(raw)) if raw else raw
    chunks = draw(st.lists(st.integers(1, 64), max_size=12))
    return content_type, raw, chunks


@fuzz_settings(100)
@given(request=multipart_requests(), parts=st.integers(1, 8), part_bytes=st.integers(1, 300))
def test_multipart_reader(
    request: tuple[str, bytes, list[int]], parts: int, part_bytes: int
) -> None:
    content_type, body, chunks = request
    limits = {"max_parts": parts, "max_part_bytes": part_bytes, "max_header_block": 256}
    result = parses_or_refuses(read_parts, content_type, body, chunks, **limits)
    if not isinstance(result, WebpacsError):
        assert 1 <= len(result) <= parts
        assert all(len(data) <= part_bytes for _, _, data in result)
        assert not any(ct.startswith("multipart/") for ct, _, _ in result)


token = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_'"), min_size=1, max_size=30)


@fuzz_settings(100)
@given(
    boundary=token,
    parts=st.lists(
        st.tuples(st.sampled_from(["application/dicom", "application/octet-stream"]), st.binary()),
        min_size=1,
        max_size=5,
    ),
    chunks=st.lists(st.integers(1, 50), max_size=20),
)
def test_multipart_reader_reads_what_was_sent(
    boundary: str, parts: list[tuple[str, bytes]], chunks: list[int]
) -> None:
    """A well-framed body gives back its parts, however it is cut into pieces."""
    dash = b"--" + boundary.encode()
    parts = [(ct, data.replace(b"--", b"-")) for ct, data in parts]  # no delimiter inside
    body = b"".join(
        dash + f"\r\nContent-Type: {ct}\r\n\r\n".encode() + d + b"\r\n" for ct, d in parts
    )
    body += dash + b"--\r\n"
    got = read_parts(f"multipart/related; boundary={boundary}", body, chunks)
    assert [(ct, data) for ct, _, data in got] == parts


@fuzz_settings(150)
@given(value=st.one_of(tricky_text, st.text(max_size=60)))
def test_media_type_and_header_lists(value: str) -> None:
    result = parses_or_refuses(parse_media_type, value)
    if not isinstance(result, WebpacsError):
        media_type, params = result
        assert "/" in media_type and media_type == media_type.lower()
    parses_or_refuses(split_header_list, value)


# --------------------------------------------------------------------------- QIDO
@fuzz_settings(120)
@given(
    level=st.sampled_from([Level.STUDY, Level.SERIES, Level.INSTANCE]),
    params=qido_params,
    study=st.one_of(st.none(), tricky_text, st.just("1.3.6.1.4.1.5962.1.2.1.20040119072730.12322")),
)
def test_qido_parser_and_search(
    store: Store, level: Level, params: list[tuple[str, str]], study: str | None
) -> None:
    """What the parser accepts, the index can search: no query it lets through fails there."""
    if level is Level.STUDY:
        study = None
    query = parses_or_refuses(parse_qido, level, params, study_uid=study, max_limit=50)
    if isinstance(query, Query):
        parses_or_refuses(store.index.search, query)


# --------------------------------------------------------------------------- JSON
@fuzz_settings(100)
@given(
    raw=st.one_of(
        st.binary(max_size=200),
        json_value.map(lambda v: json.dumps(v).encode()),  # integers of any size
        st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(1, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    )
)
def test_json_bodies(raw: bytes) -> None:
    parses_or_refuses(load_json, raw, ServerSettings(max_json_depth=64), "body")


bulk_parts = st.dictionaries(
    st.sampled_from(["bulk/7FE00010", "bulk/00420011", "7FE00010", "x"]),
    st.tuples(
        st.sampled_from(
            ["application/octet-stream", "", "image/jpeg", "image/jp2", "application/dicom"]
        ),
        st.dictionaries(st.sampled_from(["transfer-syntax"]), tricky_text),
        st.binary(max_size=300),
    ),
    max_size=3,
)


@fuzz_settings(80)
@given(obj=dicom_json_objects, bulk=bulk_parts)
def test_dicom_json_to_part10_and_ingest(
    store: Store, obj: Any, bulk: dict[str, tuple[str, dict[str, str], bytes]]
) -> None:
    """STOW-RS's JSON form: DICOM JSON (+ bulk data parts) to Part 10, then ingest."""
    parts = {
        uri: part10.BulkPart(ct, params, (lambda d=data: d))
        for uri, (ct, params, data) in bulk.items()
    }
    raw = parses_or_refuses(part10.from_json, obj, parts, 0)
    if isinstance(raw, bytes):
        result = parses_or_refuses(ingest, store.index, store.blobs, raw)
        assert isinstance(result, IngestResult | WebpacsError)


# --------------------------------------------------------------------------- Part 10
@fuzz_settings(100, long=3000)
@given(data=part10_bytes)
def test_part10_ingest(store: Store, data: bytes) -> None:
    """Mutated bytes of real files, through pydicom, into the store."""
    result = parses_or_refuses(ingest, store.index, store.blobs, data)
    assert isinstance(result, IngestResult | WebpacsError)
