"""Hardening limits (README "Hardening"), each against a real server over a real socket.

Every limit answers a 4xx whose message names the setting; the server keeps serving. Slow
clients are real sockets that trickle or stall: what is checked is that the server cuts
them off (with 408, or by closing an idle connection), not how fast.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import orjson
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, data_file, start_server
from webpacs.core.multipart import iter_multipart

#: Small limits, so that tests reach them with small requests.
LIMITS = {
    "maxHeaderBytes": 4096,
    "maxQueryBytes": 1024,
    "maxQueryParams": 20,
    "maxParts": 5,
    "maxPartBytes": 100_000,
    "maxJsonBytes": 50_000,
    "maxJsonDepth": 20,
    "headerTimeout": 1.0,
    "bodyTimeout": 1.0,
    "keepAliveTimeout": 1.0,
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("data"), server=LIMITS)
    try:
        yield srv
    finally:
        srv.stop()


@dataclass
class Answer:
    status: int
    body: bytes
    closed: bool  # the server closed the connection after answering

    @property
    def error(self) -> str:
        return str(orjson.loads(self.body)["error"])


def _address(srv: RunningServer) -> tuple[str, int]:
    parts = urlsplit(srv.url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def _closed(sock: socket.socket) -> bool:
    """Whether the peer closed (reads end) within the socket's timeout."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def exchange(srv: RunningServer, *pieces: bytes, pause: float = 0.0) -> Answer:
    """Send ``pieces`` on a new connection (``pause`` seconds apart; a write the server
    refused ends the sending) and read the one answer."""
    with socket.create_connection(_address(srv), timeout=20) as sock:
        for i, piece in enumerate(pieces):
            if i and pause:
                time.sleep(pause)
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        return Answer(response.status, body, _closed(sock))


def get(path: str, extra_headers: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra_headers}\r\n".encode()


def test_headers_over_the_limit_431(limited: RunningServer) -> None:
    a = exchange(limited, get("/dicomweb/studies", f"X-Big: {'a' * 5000}\r\n"))
    assert a.status == 431 and "server.maxHeaderBytes" in a.error and a.closed
    # many small headers count as much as one big one
    many = "".join(f"X-H{i}: {'b' * 40}\r\n" for i in range(200))
    a = exchange(limited, get("/dicomweb/studies", many))
    assert a.status == 431 and a.closed
    # headers that never end: refused once they pass the limit, not after they end
    start = b"GET /dicomweb/studies HTTP/1.1\r\nHost: t\r\n"
    a = exchange(limited, start, *[b"X-More: " + b"c" * 500 + b"\r\n"] * 40, pause=0.01)
    assert a.status == 431 and "server.maxHeaderBytes" in a.error and a.closed
    # under the limit: served
    a = exchange(limited, get("/dicomweb/studies", f"X-Big: {'a' * 3000}\r\n"))
    assert a.status == 200


def test_long_request_target_414(limited: RunningServer) -> None:
    # longer than the query limit, within the head's: refused by name
    a = exchange(limited, get("/dicomweb/studies?PatientID=" + "a" * 2000))
    assert a.status == 414 and "server.maxQueryBytes" in a.error and a.closed
    # longer than the whole head
    a = exchange(limited, get("/dicomweb/studies?PatientID=" + "a" * 20000))
    assert a.status == 414 and "server.maxQueryBytes" in a.error and a.closed
    a = exchange(limited, get("/dicomweb/studies?PatientID=" + "a" * 900))
    assert a.status == 200


def test_query_parameter_count_400(limited: RunningServer) -> None:
    many = "&".join(["includefield=PatientAge"] * 21)
    r = httpx.get(f"{limited.url}/studies?{many}")
    assert r.status_code == 400 and "server.maxQueryParams" in r.json()["error"]
    r = httpx.get(f"{limited.url}/studies?" + "&".join(["includefield=PatientAge"] * 20))
    assert r.status_code == 200


def _multipart(parts: list[tuple[dict[str, str], bytes]]) -> tuple[bytes, str]:
    body = b"".join(iter_multipart(((h, [b]) for h, b in parts), "XyZ"))
    return body, 'multipart/related; type="application/dicom"; boundary=XyZ'


def _stow(srv: RunningServer, body: bytes, content_type: str) -> httpx.Response:
    return httpx.post(f"{srv.url}/studies", content=body, headers={"Content-Type": content_type})


def test_multipart_limits(limited: RunningServer) -> None:
    ct = data_file("CT_small.dcm").read_bytes()
    dicom = {"Content-Type": "application/dicom"}
    r = _stow(limited, *_multipart([(dicom, ct)] * 6))
    assert r.status_code == 400 and "server.maxParts" in r.json()["error"]
    r = _stow(limited, *_multipart([(dicom, ct + b"\0" * 100_000)]))
    assert r.status_code == 413 and "server.maxPartBytes" in r.json()["error"]
    inner, inner_type = _multipart([(dicom, ct)])
    r = _stow(limited, *_multipart([({"Content-Type": inner_type}, inner)]))
    assert r.status_code == 400 and "nested multipart" in r.json()["error"]
    # within every limit: stored
    r = _stow(limited, *_multipart([(dicom, ct)] * 5))
    assert r.status_code == 200


def _nested(depth: int) -> object:
    """A DICOM JSON object whose ReferencedSeriesSequence nests ``depth`` levels of arrays
    and objects (3 per sequence level)."""
    item: dict[str, object] = {}
    for _ in range(depth // 3):
        item = {"00081115": {"vr": "SQ", "Value": [item]}}
    return item


def _json_stow(srv: RunningServer, metadata: bytes) -> httpx.Response:
    body = b"".join(
        iter_multipart([({"Content-Type": "application/dicom+json"}, [metadata])], "XyZ")
    )
    ct = 'multipart/related; type="application/dicom+json"; boundary=XyZ'
    return _stow(srv, body, ct)


def _instance_json() -> dict[str, object]:
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    del ds.PixelData
    ds.SOPInstanceUID = generate_uid()  # not the CT_small other tests store
    return ds.to_json_dict(bulk_data_threshold=1 << 20, bulk_data_element_handler=lambda e: "")


def test_json_limits_in_dicom_json_stow(limited: RunningServer) -> None:
    meta = _instance_json()
    deep = {**meta, **_nested(30)}  # type: ignore[dict-item]
    r = _json_stow(limited, orjson.dumps([deep]))
    assert r.status_code == 400 and "server.maxJsonDepth" in r.json()["error"]
    # deeper than orjson's own limit: the same answer
    r = _json_stow(limited, b"[" * 2000 + b"]" * 2000)
    assert r.status_code == 400 and "server.maxJsonDepth" in r.json()["error"]
    big = {**meta, "00204000": {"vr": "LT", "Value": ["x" * 60_000]}}
    r = _json_stow(limited, orjson.dumps([big]))
    assert r.status_code == 413 and "server.maxJsonBytes" in r.json()["error"]
    shallow = {**meta, **_nested(15)}  # type: ignore[dict-item]
    r = _json_stow(limited, orjson.dumps([shallow]))
    assert r.status_code == 200, r.text


def test_json_limits_in_other_bodies(limited: RunningServer) -> None:
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    path = f"{limited.url}/webpacs/studies/{ds.StudyInstanceUID}/update"
    deep: object = "x"
    for _ in range(30):
        deep = [deep]
    r = httpx.post(path, content=orjson.dumps({"set": deep}))
    assert r.status_code == 400 and "server.maxJsonDepth" in r.json()["error"]
    r = httpx.post(path, content=b'{"set": "' + b"y" * 60_000 + b'"}')
    assert r.status_code == 413 and "server.maxJsonBytes" in r.json()["error"]


def test_slow_headers_408(limited: RunningServer) -> None:
    """A client that sends its headers a line at a time, each line in time, is cut off."""
    lines = [b"GET /dicomweb/studies HTTP/1.1\r\n"] + [b"X-Slow: 1\r\n"] * 100
    a = exchange(limited, *lines, pause=0.2)
    assert a.status == 408 and "server.headerTimeout" in a.error and a.closed


def test_idle_connection_closed(limited: RunningServer) -> None:
    with socket.create_connection(_address(limited), timeout=20) as sock:
        assert _closed(sock)  # nothing asked, nothing answered
    with socket.create_connection(_address(limited), timeout=20) as sock:
        sock.sendall(get("/dicomweb/studies"))
        response = http.client.HTTPResponse(sock)
        response.begin()
        response.read()
        assert response.status == 200 and not response.will_close
        assert _closed(sock)  # then the keep-alive connection stays idle


def test_stalled_body_408(limited: RunningServer) -> None:
    head = (
        b"POST /dicomweb/studies HTTP/1.1\r\nHost: t\r\nContent-Length: 10000\r\n"
        b'Content-Type: multipart/related; type="application/dicom"; boundary=XyZ\r\n\r\n'
    )
    a = exchange(limited, head + b"--XyZ\r\nContent-Type: application/dicom\r\n\r\n" + b"a" * 100)
    assert a.status == 408 and "server.bodyTimeout" in a.error and a.closed
    # a JSON body too
    head = (
        b"POST /dicomweb/webpacs/studies/1.2.3/update HTTP/1.1\r\nHost: t\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    a = exchange(limited, head + b'{"set": ')
    assert a.status == 408 and "server.bodyTimeout" in a.error and a.closed


def test_still_serving_after_the_limits(limited: RunningServer) -> None:
    """After every refusal above (whatever order they ran in), a normal request is served."""
    mr = data_file("MR_small.dcm")
    r = _stow(limited, *_multipart([({"Content-Type": "application/dicom"}, mr.read_bytes())]))
    assert r.status_code == 200
    study = pydicom.dcmread(mr).StudyInstanceUID
    r = httpx.get(f"{limited.url}/studies", params={"StudyInstanceUID": study})
    assert r.status_code == 200 and len(r.json()) == 1
