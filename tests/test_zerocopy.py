"""Stored files sent by sendfile (webpacs.web.zerocopy): whole series and frames as stored,
byte for byte what is stored, through a real server and dicomweb-client, and the paths
around it (HEAD, a slow reader, a client that goes away, a missing object, TLS-less
fallback through an ASGI client without the extension)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, data_file
from webpacs.ingest import ingest
from webpacs.storage.base import InstanceRecord
from webpacs.web import zerocopy

CT = "CT_small.dcm"
MULTIFRAME = "emri_small.dcm"  # 10 native frames


def _store(srv: RunningServer, data: bytes) -> InstanceRecord:
    result = ingest(srv.store.index, srv.store.blobs, data)
    rec = srv.store.index.get(result.sop_uid)
    assert rec is not None
    return rec


def _copies(name: str, n: int, study: str, series: str) -> list[bytes]:
    out = []
    for _ in range(n):
        ds = pydicom.dcmread(data_file(name))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"zc-{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(path.read_bytes())
        path.unlink()
    return out


@pytest.fixture(scope="module")
def stored(module_server: RunningServer) -> Iterator[tuple[str, str, list[bytes]]]:
    study, series = generate_uid(), generate_uid()
    files = _copies(CT, 6, study, series)
    for data in files:
        _store(module_server, data)
    yield study, series, files


@pytest.fixture
def sendfile_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte counts ``os.sendfile`` was asked to send (the server runs in this process)."""
    calls: list[int] = []
    real = os.sendfile

    def counting(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        calls.append(count)
        return real(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", counting)
    return calls


def _stored_bytes(srv: RunningServer, study: str, series: str) -> dict[str, bytes]:
    return {
        rec.sop_uid: srv.store.blobs.get(rec.blob_key)
        for rec in srv.store.index.instances(study, series)
    }


def test_series_is_the_stored_files_sent_by_sendfile(
    module_server: RunningServer, stored: tuple[str, str, list[bytes]], sendfile_calls: list[int]
) -> None:
    study, series, _ = stored
    client = DICOMwebClient(module_server.url)
    got = client.retrieve_series(study, series)
    expected = _stored_bytes(module_server, study, series)
    assert len(got) == len(expected) == 6
    raw = httpx.get(
        f"{module_server.url}/studies/{study}/series/{series}",
        headers={"Accept": 'multipart/related; type="application/dicom"'},
    )
    assert raw.status_code == 200
    assert int(raw.headers["content-length"]) == len(raw.content)
    for data in expected.values():  # each stored object whole in the body, as stored
        assert raw.content.count(data) == 1
    assert {ds.SOPInstanceUID for ds in got} == set(expected)
    sizes = sorted(len(d) for d in expected.values())
    # every stored object went through sendfile, whole (maybe in several calls each)
    assert sum(sendfile_calls) >= 2 * sum(sizes)  # two GETs of the series


def test_frames_are_stored_bytes_sent_by_sendfile(
    module_server: RunningServer, sendfile_calls: list[int]
) -> None:
    ds = pydicom.dcmread(data_file(MULTIFRAME))
    _store(module_server, data_file(MULTIFRAME).read_bytes())
    client = DICOMwebClient(module_server.url)
    frames = client.retrieve_instance_frames(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, [2, 5]
    )
    size = ds.Rows * ds.Columns * ds.BitsAllocated // 8
    assert frames == [ds.PixelData[size : 2 * size], ds.PixelData[4 * size : 5 * size]]
    assert sendfile_calls and sum(sendfile_calls) >= 2 * size


def _raw_get(url: str, head: bool = False, rcvbuf: int = 0) -> tuple[socket.socket, bytes]:
    """A hand-made HTTP/1.1 request on a plain socket; the socket and the response head."""
    parsed = httpx.URL(url)
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((parsed.host, parsed.port))
    target = parsed.raw_path.decode()
    sock.sendall(
        f"{'HEAD' if head else 'GET'} {target} HTTP/1.1\r\nHost: x\r\n"
        'Accept: multipart/related; type="application/dicom"\r\n\r\n'.encode()
    )
    head_bytes = b""
    while b"\r\n\r\n" not in head_bytes:
        chunk = sock.recv(1)
        assert chunk, "connection closed before the head ended"
        head_bytes += chunk
    return sock, head_bytes


def _boundary(content_type: bytes) -> bytes:
    return content_type.split(b"boundary=")[1].split(b";")[0].split(b"\r\n")[0].strip(b'"')


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise AssertionError(f"no Content-Length in {head!r}")


def test_head_has_the_length_and_no_body(
    module_server: RunningServer, stored: tuple[str, str, list[bytes]]
) -> None:
    study, series, _ = stored
    url = f"{module_server.url}/studies/{study}/series/{series}"
    got = httpx.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
    sock, head = _raw_get(url, head=True)
    with sock:
        assert head.startswith(b"HTTP/1.1 200")
        assert _content_length(head) == len(got.content)
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            assert sock.recv(1) == b""  # no body follows (the connection stays open)


def test_a_slow_reader_gets_every_byte(
    module_server: RunningServer, stored: tuple[str, str, list[bytes]]
) -> None:
    """The socket fills up (a small receive buffer, a reader that pauses): the server waits
    for it (the writer's thread) and the body arrives whole."""
    study, series, _ = stored
    url = f"{module_server.url}/studies/{study}/series/{series}"
    expected = httpx.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
    sock, head = _raw_get(url, rcvbuf=4096)
    body = b""
    with sock:
        n = _content_length(head)
        while len(body) < n:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(body)} of {n} bytes"
            body += chunk
            if len(body) < 200_000:
                time.sleep(0.01)
    # the same bytes as another GET, but for the (random) boundary
    assert body.replace(_boundary(head), _boundary(expected.headers["content-type"].encode())) == (
        expected.content
    )


def test_a_client_that_goes_away_does_not_stop_the_server(
    module_server: RunningServer, stored: tuple[str, str, list[bytes]]
) -> None:
    study, series, files = stored
    url = f"{module_server.url}/studies/{study}/series/{series}"
    for _ in range(5):
        sock, head = _raw_get(url, rcvbuf=4096)
        assert head.startswith(b"HTTP/1.1 200")
        sock.recv(1000)
        sock.close()  # mid-body
    got = httpx.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
    assert got.status_code == 200
    assert all(data in got.content for data in files)


def test_without_the_extension_the_bytes_are_read_and_sent(
    module_server: RunningServer, stored: tuple[str, str, list[bytes]]
) -> None:
    """An ASGI server that does not take the pieces message (here httpx's ASGI transport;
    also TLS connections) gets the same body as ordinary body messages."""
    study, series, files = stored
    url = httpx.URL(f"{module_server.url}/studies/{study}/series/{series}")

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=module_server.server.config.loaded_app)
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.get(
                url, headers={"Accept": 'multipart/related; type="application/dicom"'}
            )

    got = asyncio.run(get())
    assert got.status_code == 200
    assert int(got.headers["content-length"]) == len(got.content)
    assert all(got.content.count(data) == 1 for data in files)


def test_a_missing_object_is_a_clean_error_before_any_byte(
    module_server: RunningServer,
) -> None:
    study, series = generate_uid(), generate_uid()
    files = _copies(CT, 2, study, series)
    recs = [_store(module_server, data) for data in files]
    path = module_server.store.blobs.local_path(recs[1].blob_key)
    assert path is not None
    os.unlink(path)
    url = f"{module_server.url}/studies/{study}/series/{series}"
    got = httpx.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
    assert got.status_code == 503
    assert recs[1].sop_uid in got.text
    frame = httpx.get(
        f"{url}/instances/{recs[1].sop_uid}/frames/1",
        headers={"Accept": 'multipart/related; type="application/octet-stream"'},
    )
    assert frame.status_code == 503
    uri = httpx.get(
        f"{module_server.url}/wado",
        params={"requestType": "WADO", "studyUID": study, "seriesUID": series,
                "objectUID": recs[1].sop_uid, "contentType": "application/dicom"},
    )  # fmt: skip
    assert uri.status_code == 503
    assert recs[1].sop_uid in uri.text
    rendered = httpx.get(f"{url}/instances/{recs[1].sop_uid}/rendered")
    assert rendered.status_code == 503, rendered.text


def test_wado_uri_object_sent_by_sendfile(
    module_server: RunningServer, stored: tuple[str, str, list[bytes]], sendfile_calls: list[int]
) -> None:
    study, series, files = stored
    rec = module_server.store.index.instances(study, series)[0]
    got = httpx.get(
        f"{module_server.url}/wado",
        params={"requestType": "WADO", "studyUID": study, "seriesUID": series,
                "objectUID": rec.sop_uid, "contentType": "application/dicom"},
    )  # fmt: skip
    assert got.status_code == 200
    assert got.content == module_server.store.blobs.get(rec.blob_key)
    assert int(got.headers["content-length"]) == len(got.content)
    assert sum(sendfile_calls) == len(got.content)


def test_writer_stops_at_a_file_shorter_than_its_span(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"x" * 100)
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        with pytest.raises(EOFError, match="ends 50 bytes before its span"):
            writer = zerocopy.Writer(a, [b"head", zerocopy.Span(str(short), 0, 150)])
            try:
                writer.finish()
            finally:
                writer.close()
        assert writer.file is None
        assert b.recv(1000) == b"head" + b"x" * 100


def test_access_log_counts_the_bytes_sent_by_sendfile(
    module_server: RunningServer,
    stored: tuple[str, str, list[bytes]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    study, series, _ = stored
    url = f"{module_server.url}/studies/{study}/series/{series}"
    with caplog.at_level("INFO", logger="webpacs.access"):
        got = httpx.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
        deadline = time.monotonic() + 5
        line = f"GET /dicomweb/studies/{study}/series/{series} 200"
        while not any(r.getMessage().startswith(line) for r in caplog.records):
            assert time.monotonic() < deadline, "no access log line"
            time.sleep(0.02)
    logged = next(r for r in caplog.records if r.getMessage().startswith(line))
    assert logged.bytes == len(got.content)  # type: ignore[attr-defined]
