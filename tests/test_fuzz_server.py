"""Fuzzed requests against a real server (HTTP and DIMSE) that must keep serving.

HTTP: requests to every route of the app's table (method and path template taken from it,
path parameters UIDs of a stored study or made up), with fuzzed query parameters, headers
and bodies (mutated Part 10, DICOM JSON, multipart, bytes), and raw bytes that are barely
HTTP. Every answer is a 2xx, 3xx or 4xx; none is a 5xx or a dropped connection; after each
one the server still answers a normal request.

DIMSE: C-STORE of mutated Part 10 files (sent as their bytes, as a modality would) and
C-FIND with fuzzed identifiers: every one gets a status (success or a failure status),
and the association goes on (a C-ECHO after it succeeds).
"""

from __future__ import annotations

import http.client
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import orjson
import pydicom
import pytest
from hypothesis import given, reject
from hypothesis import strategies as st
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pynetdicom import AE, build_context

from tests.conftest import RunningServer, data_file, start_server
from tests.fuzz_support import (
    PART10_FILES,
    dicom_json_objects,
    fuzz_settings,
    mutated,
    part10,
    part10_bytes,
    qido_keys,
    qido_params,
    tricky_text,
)
from tests.test_no_500 import _find
from webpacs.dimse import ScpHandle, start_scp
from webpacs.web import access

CT = pydicom.dcmread(data_file("CT_small.dcm"), stop_before_pixels=True)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, ScpHandle]]:
    """A server and SCP holding CT_small; short head and body timeouts, so that requests
    the fuzzer leaves incomplete are answered (408) soon."""
    srv = start_server(
        tmp_path_factory.mktemp("data"),
        server={"headerTimeout": 0.3, "bodyTimeout": 0.3},
        dimse={"port": 0},
    )
    scp = start_scp(srv.settings, srv.store)
    r = httpx.post(
        f"{srv.url}/studies",
        content=_multipart([("application/dicom", data_file("CT_small.dcm").read_bytes())]),
        headers={"Content-Type": _MULTIPART_TYPE},
    )
    assert r.status_code == 200
    try:
        yield srv, scp
    finally:
        scp.shutdown()
        srv.stop()


_MULTIPART_TYPE = 'multipart/related; type="application/dicom"; boundary=XyZ'


def _multipart(parts: list[tuple[str, bytes]]) -> bytes:
    body = b"".join(
        b"--XyZ\r\nContent-Type: " + ct.encode() + b"\r\n\r\n" + data + b"\r\n"
        for ct, data in parts
    )
    return body + b"--XyZ--\r\n"


# --------------------------------------------------------------------------- HTTP requests
def _routes(srv: RunningServer) -> list[tuple[str, str]]:
    root = srv.settings.server.root_path.rstrip("/")
    app: Any = srv.server.config.app
    return sorted(access.route_roles(list(app.routes), root))


_UIDS = {
    "study": CT.StudyInstanceUID,
    "series": CT.SeriesInstanceUID,
    "instance": CT.SOPInstanceUID,
    "frames": "1",
    "label": "review",
    "patient": CT.PatientID,
}


@st.composite
def paths(draw: st.DrawFn, template: str) -> str:
    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        value = draw(st.one_of(st.just(_UIDS.get(name, "x")), tricky_text))
        return quote(value, safe="") or "x"

    return re.sub(r"\{(\w+)(:\w+)?\}", fill, template)


#: What a client library lets through as a header value (visible ASCII, inner spaces).
header_text = tricky_text.map(lambda t: "".join(c for c in t if " " <= c <= "~").strip() or "x")
accepts = st.one_of(
    st.sampled_from(
        [
            "application/dicom+json",
            'multipart/related; type="application/dicom"',
            'multipart/related; type="application/octet-stream"; transfer-syntax=*',
            "image/jpeg",
            "*/*",
            "application/zip",
        ]
    ),
    header_text,
)
json_bodies = st.lists(dicom_json_objects, max_size=2).map(orjson.dumps)
bodies = st.one_of(
    st.just((None, b"")),
    st.tuples(st.just(_MULTIPART_TYPE), st.lists(part10_bytes, max_size=2).map(
        lambda ps: _multipart([("application/dicom", p) for p in ps])
    )),
    st.tuples(
        st.just('multipart/related; type="application/dicom+json"; boundary=XyZ'),
        json_bodies.map(lambda j: _multipart([("application/dicom+json", j)])),
    ),
    st.tuples(st.just("application/json"), json_bodies),
    st.tuples(st.one_of(st.just(_MULTIPART_TYPE), header_text), st.binary(max_size=300)),
)  # fmt: skip


@st.composite
def requests(draw: st.DrawFn, routes: list[tuple[str, str]]) -> dict[str, Any]:
    method, template = draw(st.sampled_from(routes))
    method = draw(st.one_of(st.just(method), st.sampled_from(["PATCH", "OPTIONS", "HEAD"])))
    params = draw(qido_params)
    content_type, body = draw(bodies)
    headers = {"Accept": draw(accepts)}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return {
        "method": method,
        "url": draw(paths(template)) + ("?" + urlencode(params) if params else ""),
        "headers": headers,
        "content": body,
    }


def _still_serving(srv: RunningServer) -> None:
    r = httpx.get(f"{srv.url}/studies", params={"StudyInstanceUID": CT.StudyInstanceUID})
    assert r.status_code == 200


@pytest.fixture(scope="module")
def routes(target: tuple[RunningServer, ScpHandle]) -> list[tuple[str, str]]:
    found = _routes(target[0])
    assert ("POST", "/dicomweb/studies") in found and len(found) > 30
    return found


@fuzz_settings(25, long=3000)
@given(data=st.data())
def test_fuzzed_http_requests(
    target: tuple[RunningServer, ScpHandle], routes: list[tuple[str, str]], data: st.DataObject
) -> None:
    srv, _ = target
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(srv.url))
    request = data.draw(requests(routes))
    r = httpx.request(timeout=30, **{**request, "url": origin + request["url"]})
    assert r.status_code < 500, (request["method"], request["url"], r.status_code, r.text[:300])
    _still_serving(srv)


@st.composite
def raw_requests(draw: st.DrawFn) -> bytes:
    """Bytes that start like a request (or do not): a valid one mutated, or noise."""
    key = draw(st.sampled_from(qido_keys()))
    valid = (
        f"POST /dicomweb/studies?{quote(key)}=1 HTTP/1.1\r\nHost: t\r\n"
        f"Content-Type: {_MULTIPART_TYPE}\r\nContent-Length: 60\r\n\r\n"
    ).encode() + _multipart([("application/dicom", b"DICM" * 5)])
    return draw(st.one_of(mutated(valid), st.binary(min_size=1, max_size=200)))


@fuzz_settings(15, long=1000)
@given(raw=raw_requests())
def test_raw_bytes(target: tuple[RunningServer, ScpHandle], raw: bytes) -> None:
    """Whatever arrives, the server answers it with a status below 500, and goes on
    serving."""
    srv, _ = target
    parts = urlsplit(srv.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock)
        try:  # an incomplete request is answered too: 408 once the short timeouts pass
            response.begin()
        except http.client.RemoteDisconnected:
            pytest.fail(f"closed without an answer: {raw[:200]!r}")
        assert response.status < 500, (raw[:200], response.status)
    _still_serving(srv)


# --------------------------------------------------------------------------- DIMSE
def _association(scp: ScpHandle, contexts: list[Any]) -> Any:
    ae = AE(ae_title="FUZZ")
    ae.requested_contexts = contexts
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="WEBPACS")
    assert assoc.is_established
    return assoc


#: DIMSE statuses a C-STORE may answer (PS3.4 B.2.3, PS3.7 C): success, warnings, failures.
STORE_STATUSES = {0x0000, 0x0107, 0x0110, 0x0111, 0x0116, 0x0122, 0x0124, 0xB000, 0xB006, 0xB007}


@pytest.fixture(scope="module")
def store_association(target: tuple[RunningServer, ScpHandle]) -> Iterator[Any]:
    """One association (reused by every example: a new one costs most of a second) with a
    context for each test file's SOP Class and transfer syntax, and Verification."""
    contexts = {("1.2.840.10008.1.1", "1.2.840.10008.1.2")}
    for name in PART10_FILES:
        meta = pydicom.dcmread(data_file(name), stop_before_pixels=True).file_meta
        contexts.add((meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID))
    assoc = _association(target[1], [build_context(c, t) for c, t in sorted(contexts)])
    try:
        yield assoc
    finally:
        assoc.release()


@fuzz_settings(25, long=2000)
@given(name=st.sampled_from(PART10_FILES), data=st.data())
def test_fuzzed_c_store(
    store_association: Any, tmp_path_factory: pytest.TempPathFactory, name: str,
    data: st.DataObject,
) -> None:  # fmt: skip
    """The data set after a file's intact File Meta, mutated, sent as it is."""
    original = part10(name)
    meta = pydicom.dcmread(data_file(name), stop_before_pixels=True).file_meta
    start = 132 + 12 + meta.FileMetaInformationGroupLength
    body = data.draw(mutated(original[start:]))
    path = Path(tmp_path_factory.mktemp("cstore")) / "x.dcm"
    path.write_bytes(original[:start] + body)
    try:
        status = store_association.send_c_store(path)
    except Exception:
        # pynetdicom, the SCU here, reads some files (deflate, a File Meta that no longer
        # ends where it did) and fails on them itself (zlib.error, ValueError, 3.0.4's
        # UnboundLocalError): nothing reached the server, whose association stays
        assert store_association.is_established
        reject()
    assert store_association.is_established, "the association was aborted"
    assert "Status" in status, "no status"
    code = int(status.Status)
    assert code in STORE_STATUSES or 0xA000 <= code <= 0xCFFF, hex(code)
    assert int(store_association.send_c_echo().Status) == 0


find_keywords = [k for k in qido_keys() if tag_for_keyword(k) is not None]


@fuzz_settings(10, long=1000)
@given(
    level=st.sampled_from(["STUDY", "SERIES", "IMAGE", "PATIENT", "", "X"]),
    elements=st.lists(
        st.tuples(st.sampled_from(find_keywords), st.one_of(tricky_text.map(str.encode),
                                                            st.binary(max_size=40))),
        max_size=4,
    ),
)  # fmt: skip
def test_fuzzed_c_find(
    target: tuple[RunningServer, ScpHandle], level: str, elements: list[tuple[str, bytes]]
) -> None:
    _, scp = target
    elems = []
    for keyword, value in elements:
        raw = value + b" " * (len(value) % 2)
        with pydicom.config.disable_value_validation():
            elems.append(DataElement(tag_for_keyword(keyword), "LO", raw))
    with pydicom.config.disable_value_validation():
        status, _ = _find(scp.port, elems, level)  # asserts the association went on
    assert status in (0x0000, 0xFE00) or 0xA000 <= status <= 0xCFFF, hex(status)
