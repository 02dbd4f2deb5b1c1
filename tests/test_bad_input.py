"""Bad input gets the right status and a message naming the problem, and loses nothing."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests

from tests.conftest import RunningServer, data_file, start_server
from webpacs.core.multipart import iter_multipart

DICOM_TYPE = 'multipart/related; type="application/dicom"; boundary=XyZ'


def multipart(parts: list[tuple[str, bytes]], boundary: str = "XyZ") -> bytes:
    return b"".join(iter_multipart(((({"Content-Type": t}), [b]) for t, b in parts), boundary))


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    s = start_server(tmp_path_factory.mktemp("bad"), server={"maxBodyBytes": 2_000_000})
    ct = data_file("CT_small.dcm").read_bytes()
    r = requests.post(
        f"{s.url}/studies",
        data=multipart([("application/dicom", ct)]),
        headers={"Content-Type": DICOM_TYPE},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def nothing_lost(srv: RunningServer) -> Iterator[None]:
    """After every bad request the stored data is unchanged and the server still serves."""
    before = snapshot(srv)
    yield
    assert snapshot(srv) == before


def snapshot(srv: RunningServer) -> Any:
    r = requests.get(f"{srv.url}/instances", params={"includefield": "all"}, timeout=10)
    assert r.status_code == 200
    rows = r.json()
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    raw = requests.get(
        f"{srv.url}/wado",
        params={
            "requestType": "WADO",
            "studyUID": ds.StudyInstanceUID,
            "seriesUID": ds.SeriesInstanceUID,
            "objectUID": ds.SOPInstanceUID,
        },
        timeout=10,
    ).content
    return rows, raw


def stow(
    srv: RunningServer, body: bytes, ctype: str = DICOM_TYPE, path: str = "/studies"
) -> requests.Response:
    return requests.post(srv.url + path, data=body, headers={"Content-Type": ctype}, timeout=30)


def failure(r: requests.Response) -> tuple[int, str]:
    item = r.json()["00081198"]["Value"][0]
    return item["00081197"]["Value"][0], r.headers.get("Warning", "")


def test_truncated_part10(srv: RunningServer) -> None:
    data = data_file("MR_small.dcm").read_bytes()[:-500]
    r = stow(srv, multipart([("application/dicom", data)]))
    assert r.status_code == 409
    reason, message = failure(r)
    assert reason == 0xC000 and "truncated" in message


def test_corrupt_part10(srv: RunningServer) -> None:
    data = bytearray(data_file("MR_small.dcm").read_bytes())
    data[300:340] = b"\xff" * 40  # garbage in the middle of the data set
    r = stow(srv, multipart([("application/dicom", bytes(data))]))
    assert r.status_code == 409
    assert failure(r)[0] == 0xC000


def test_not_dicom(srv: RunningServer) -> None:
    r = stow(srv, multipart([("application/dicom", b"hello, this is not DICOM" * 20)]))
    assert r.status_code == 409
    reason, message = failure(r)
    assert reason == 0xC000 and "not a DICOM" in message


def test_dicomdir(srv: RunningServer) -> None:
    dicomdir = data_file("DICOMDIR").read_bytes()
    r = stow(srv, multipart([("application/dicom", dicomdir)]))
    assert r.status_code == 409
    assert "DICOMDIR" in failure(r)[1]


def test_part_with_wrong_content_type(srv: RunningServer) -> None:
    mr = data_file("MR_small.dcm").read_bytes()
    r = stow(srv, multipart([("text/plain", mr)]))
    assert r.status_code == 409
    assert "text/plain" in failure(r)[1]


def test_missing_boundary(srv: RunningServer) -> None:
    r = stow(
        srv, multipart([("application/dicom", b"x")]), 'multipart/related; type="application/dicom"'
    )
    assert r.status_code == 400 and "boundary" in r.json()["error"]


def test_wrong_boundary(srv: RunningServer) -> None:
    body = multipart([("application/dicom", data_file("MR_small.dcm").read_bytes())], "other")
    r = stow(srv, body)
    assert r.status_code == 400 and "boundary" in r.json()["error"]


def test_not_multipart(srv: RunningServer) -> None:
    r = stow(srv, data_file("MR_small.dcm").read_bytes(), "application/dicom")
    assert r.status_code == 415 and "multipart/related" in r.json()["error"]


def test_unsupported_part_type(srv: RunningServer) -> None:
    r = stow(
        srv,
        multipart([("application/xml", b"<x/>")]),
        'multipart/related; type="application/xml"; boundary=XyZ',
    )
    assert r.status_code == 415


def test_body_over_limit(srv: RunningServer) -> None:
    r = stow(srv, multipart([("application/dicom", b"\0" * 2_100_000)]))
    assert r.status_code == 413 and "limit" in r.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        body = multipart([("application/dicom", b"\0" * 2_100_000)])
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    r = requests.post(
        srv.url + "/studies", data=chunks(), headers={"Content-Type": DICOM_TYPE}, timeout=30
    )
    assert r.status_code == 413


def test_instance_of_other_study(srv: RunningServer) -> None:
    mr = data_file("MR_small.dcm").read_bytes()
    r = stow(srv, multipart([("application/dicom", mr)]), path="/studies/1.2.3.4")
    assert r.status_code == 409
    assert "belongs to study" in failure(r)[1]


def test_conflicting_duplicate(srv: RunningServer) -> None:
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    ds.PatientName = "Someone^Else"
    buf = io.BytesIO()
    ds.save_as(buf)
    r = stow(srv, multipart([("application/dicom", buf.getvalue())]))
    assert r.status_code == 409
    reason, message = failure(r)
    assert reason == 0x0111 and "different content" in message


@pytest.mark.parametrize(
    "path",
    [
        "/studies/%2e%2e/metadata",
        "/studies/1.2.abc/series",
        "/studies/" + "1." * 40 + "1/metadata",
    ],
)
def test_bad_uids(srv: RunningServer, path: str) -> None:
    r = requests.get(srv.url + path, timeout=10)
    assert r.status_code == 400
    assert "invalid UID" in r.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/studies/../../etc/passwd",
        "/studies/..%2F..%2Fetc/series",
        "/studies/1.2/series/..%2f/metadata",
    ],
)
def test_path_with_slash_is_not_found(srv: RunningServer, path: str) -> None:
    r = requests.get(srv.url + path, timeout=10)
    assert r.status_code == 404


def _ct_path() -> str:
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    series = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    return f"{series}/instances/{ds.SOPInstanceUID}"


def test_frame_numbers(srv: RunningServer) -> None:
    assert requests.get(srv.url + _ct_path() + "/frames/0", timeout=10).status_code == 400
    assert requests.get(srv.url + _ct_path() + "/frames/x", timeout=10).status_code == 400
    r = requests.get(srv.url + _ct_path() + "/frames/2", timeout=10)
    assert r.status_code == 404 and "1 frame" in r.json()["error"]
    assert requests.get(srv.url + _ct_path() + "/frames/1", timeout=10).status_code == 200
    # a superscript two passes str.isdigit(); 5,000 digits pass Python's int limit: both 400,
    # for frames, rendered frames and frame thumbnails alike (one parser)
    for tail in ("", "/rendered", "/thumbnail"):
        for bad in ("%C2%B2", "1" * 5000, "1,%C2%B2"):
            r = requests.get(srv.url + _ct_path() + f"/frames/{bad}{tail}", timeout=10)
            assert r.status_code == 400, (bad[:10], tail, r.status_code)
            assert "frame number" in r.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/studies/1.2.3/metadata",
        "/studies/1.2.3/series/4.5/metadata",
        "/studies/1.2.3",
        "/studies/1.2.3/series/4.5/instances/6.7/frames/1",
        "/studies/1.2.3/series/4.5/instances/6.7/bulkdata/7FE00010",
    ],
)
def test_unknown_resources(srv: RunningServer, path: str) -> None:
    r = requests.get(srv.url + path, timeout=10)
    assert r.status_code == 404 and "not found" in r.json()["error"]


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"StudyDate": "20200101-2020"}, "StudyDate"),
        ({"StudyDate": "2020-13-01"}, "StudyDate"),
        ({"limit": "-1"}, "limit"),
        ({"offset": "x"}, "offset"),
        ({"NoSuchKeyword": "1"}, "NoSuchKeyword"),
        ({"Rows": "many"}, "Rows"),  # an instance attribute (an extension key here): no number
    ],
)
def test_bad_queries(srv: RunningServer, params: dict[str, str], word: str) -> None:
    r = requests.get(srv.url + "/studies", params=params, timeout=10)
    assert r.status_code == 400
    assert word in r.json()["error"]


def test_not_acceptable(srv: RunningServer) -> None:
    r = requests.get(srv.url + "/studies", headers={"Accept": "application/dicom+xml"}, timeout=10)
    assert r.status_code == 406
    r = requests.get(
        srv.url + _ct_path(),
        headers={
            "Accept": 'multipart/related; type="application/dicom";'
            " transfer-syntax=1.2.840.10008.1.2.4.50"
        },
        timeout=10,
    )
    assert r.status_code == 406
    r = requests.get(
        srv.url + "/wado",
        params={
            "requestType": "WADO",
            "studyUID": "1.2",
            "seriesUID": "1.3",
            "objectUID": "1.4",
            "contentType": "video/mpeg",  # image/jpeg and image/png are rendered
        },
        timeout=10,
    )
    assert r.status_code == 406


def test_delete_can_be_disabled(tmp_path: Path) -> None:
    s = start_server(tmp_path, server={"allowDelete": False})
    try:
        r = requests.delete(s.url + "/studies/1.2.3", timeout=10)
        assert r.status_code == 403 and "allowDelete" in r.json()["error"]
    finally:
        s.stop()
