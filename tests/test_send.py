"""Send a study or series to an AE of the ``ae`` table by C-STORE, with its progress streamed
as NDJSON (``POST {rootPath}/webpacs/studies/{s}[/series/{x}]/send``), against dcmtk's
``storescp`` as the receiving SCP."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, data_file, free_port, require_binary, start_server
from tests.test_dimse import wait_port

#: One study: two CT instances in one series, a JPEG baseline one in another.
FILES = [("CT_small.dcm", "ct"), ("CT_small.dcm", "ct"), ("SC_rgb_jpeg_dcmtk.dcm", "jpeg")]


@pytest.fixture(scope="module")
def peer_ports() -> dict[str, int]:
    return {"all": free_port(), "plain": free_port(), "nobody": free_port()}


@pytest.fixture(scope="module")
def srv(
    tmp_path_factory: pytest.TempPathFactory, peer_ports: dict[str, int]
) -> Iterator[RunningServer]:
    ae = {
        "all": {"title": "TAKESALL", "host": "127.0.0.1", "port": peer_ports["all"]},
        "plain": {"title": "PLAIN", "host": "127.0.0.1", "port": peer_ports["plain"]},
        "nobody": {"title": "NOBODY", "host": "127.0.0.1", "port": peer_ports["nobody"]},
    }
    server = start_server(tmp_path_factory.mktemp("send"), ae=ae, dimse={"dimseTimeout": 10})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def study(srv: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("sendsrc")
    study_uid, series = generate_uid(), {"ct": generate_uid(), "jpeg": generate_uid()}
    sops: dict[str, str] = {}
    body = b""
    for i, (name, kind) in enumerate(FILES):
        ds = pydicom.dcmread(data_file(name))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series[kind]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        path = out / f"{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        sops[str(ds.SOPInstanceUID)] = kind
        body += b"--b\r\nContent-Type: application/dicom\r\n\r\n" + path.read_bytes() + b"\r\n"
    r = httpx.post(
        f"{srv.url}/studies",
        content=body + b"--b--\r\n",
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
    )
    assert r.status_code == 200, r.text
    return {"study": study_uid, "series": series, "sops": sops}


def _storescp(port: int, title: str, out: Path, *options: str) -> subprocess.Popen[bytes]:
    binary = require_binary("storescp")
    out.mkdir()
    proc = subprocess.Popen(
        [binary, *options, "-aet", title, "--output-directory", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, proc)
    return proc


def _send(srv: RunningServer, path: str, ae: str) -> tuple[int, list[dict[str, Any]]]:
    """POST the send; the status and each streamed event, as they came."""
    events = []
    with httpx.stream("POST", f"{srv.url}/webpacs/{path}/send", json={"ae": ae}, timeout=60) as r:
        if r.status_code != 200:
            return r.status_code, [json.loads(r.read())]
        assert r.headers["content-type"] == "application/x-ndjson"
        for line in r.iter_lines():
            if line.strip():
                events.append(json.loads(line))
    return r.status_code, events


def _received(out: Path) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in out.iterdir()}


def test_send_study_to_storescp(
    srv: RunningServer, study: dict[str, Any], peer_ports: dict[str, int], tmp_path: Path
) -> None:
    proc = _storescp(peer_ports["all"], "TAKESALL", tmp_path / "in", "+xa")
    try:
        status, events = _send(srv, f"studies/{study['study']}", "all")
    finally:
        proc.terminate()
        proc.wait(10)
    assert status == 200
    start, *each, end = events
    assert start == {
        "event": "start",
        "total": 3,
        "destination": f"TAKESALL@127.0.0.1:{peer_ports['all']} (ae.all)",
    }
    assert [e["category"] for e in each] == ["Success"] * 3
    assert [(e["sent"], e["failed"]) for e in each] == [(1, 0), (2, 0), (3, 0)]  # progress
    assert end == {"event": "end", "sent": 3, "failed": 0, "total": 3, "error": ""}
    assert _received(tmp_path / "in") == set(study["sops"])
    for path in (tmp_path / "in").iterdir():  # what arrived is what was stored
        got = pydicom.dcmread(path)
        stored = httpx.get(
            f"{srv.url}/wado",
            params={
                "requestType": "WADO",
                "studyUID": study["study"],
                "seriesUID": str(got.SeriesInstanceUID),
                "objectUID": str(got.SOPInstanceUID),
                "contentType": "application/dicom",
            },
        )
        assert pydicom.dcmread(pydicom.filebase.DicomBytesIO(stored.content)).PixelData == (
            got.PixelData
        )


def test_send_series_with_a_refused_instance(
    srv: RunningServer, study: dict[str, Any], peer_ports: dict[str, int], tmp_path: Path
) -> None:
    """storescp without ``+xa`` takes uncompressed data only: the JPEG instance fails with
    its reason in words, the others are sent."""
    proc = _storescp(peer_ports["plain"], "PLAIN", tmp_path / "in")
    try:
        status, events = _send(srv, f"studies/{study['study']}", "plain")
    finally:
        proc.terminate()
        proc.wait(10)
    assert status == 200
    end = events[-1]
    assert (end["sent"], end["failed"], end["error"]) == (2, 1, "")
    failed = [e for e in events if e.get("category") == "Failure"]
    assert len(failed) == 1 and study["sops"][failed[0]["sop"]] == "jpeg"
    assert failed[0]["status"] == 0x0122 and "PLAIN@127.0.0.1" in failed[0]["message"]
    ct = {sop for sop, kind in study["sops"].items() if kind == "ct"}
    assert _received(tmp_path / "in") == ct
    # one series only
    proc = _storescp(peer_ports["plain"], "PLAIN", tmp_path / "series")
    try:
        path = f"studies/{study['study']}/series/{study['series']['ct']}"
        status, events = _send(srv, path, "plain")
    finally:
        proc.terminate()
        proc.wait(10)
    assert events[-1]["sent"] == 2 and _received(tmp_path / "series") == ct


# pynetdicom leaves the socket of a refused connection to the garbage collector
# (transport.py, AssociationSocket.connect), as test_proxy notes: a ResourceWarning not ours.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_send_errors(srv: RunningServer, study: dict[str, Any]) -> None:
    status, body = _send(srv, f"studies/{study['study']}", "nosuch")
    assert status == 400 and "no AE named 'nosuch'" in body[0]["error"]
    assert "all, nobody, plain" in body[0]["error"]
    status, body = _send(srv, "studies/1.2.3.4", "all")
    assert status == 404
    # nothing listens: the stream ends with why, nothing sent
    status, events = _send(srv, f"studies/{study['study']}", "nobody")
    assert status == 200
    assert events[-1]["event"] == "end" and events[-1]["sent"] == 0
    assert "cannot associate" in events[-1]["error"] and "NOBODY@127.0.0.1" in events[-1]["error"]


def test_browser_settings_name_the_destinations(srv: RunningServer) -> None:
    r = httpx.get(f"{srv.url}/webpacs/browser")
    assert r.status_code == 200
    body = r.json()
    assert [a["name"] for a in body["aes"]] == ["all", "nobody", "plain"]
    assert body["allowDelete"] is True and body["aeTitle"] == "WEBPACS"
