"""The proxy to a remote PACS (issue 4 point 3) against a real one: Orthanc from Debian.

Orthanc 1.10 binds every interface, so it runs in a network namespace that has only
loopback. The test thread enters that namespace (``setns``) for the module; everything
it starts from there (Orthanc, webpacs' HTTP server and SCP threads, the HTTP and DIMSE
clients) lives in it, and the namespace is deleted at the end. Orthanc's DICOMweb
plugin (``orthanc-dicomweb``) gives the reference answers the proxy must reproduce.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import io
import json
import os
import shutil
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from tests.conftest import (
    RunningServer,
    data_file,
    missing,
    require_binary,
    start_server,
)
from webpacs.dimse import ScpHandle, start_scp
from webpacs.ingest import ingest
from webpacs.web import remote

ORTHANC_AET = "ORTHANC"
ORTHANC_DICOM = 4242
ORTHANC_HTTP = 8043
WEBPACS_AET = "WEBPACS"
WEBPACS_SCP = 11112
EVICT_AET = "WEBPACS2"
EVICT_SCP = 11113
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
CLONE_NEWNET = 0x40000000

REMOTE_FILES = ("CT_small.dcm", "MR_small.dcm", "emri_small.dcm", "SC_rgb_jpeg_dcmtk.dcm")
LOCAL_FILES = ("CT_small.dcm", "rtdose.dcm")  # CT_small is on both sides: local wins


def uids(name: str) -> tuple[str, str, str]:
    ds = pydicom.dcmread(data_file(name), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def variant(name: str, seed: str) -> tuple[bytes, str, str]:
    """A copy of a test file as a study of its own (new UIDs); its bytes and UIDs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(data_file(name))
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[seed, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[seed, "series"])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[seed, "sop"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue(), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


# -- the network namespace ---------------------------------------------------------
class Netns:
    """A network namespace with loopback up, which the calling thread enters and leaves."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)

    def __enter__(self) -> Netns:
        ip = shutil.which("ip")
        if ip is None:
            os.close(self._home)
            missing("ip (iproute2) is not installed")
        made = subprocess.run([ip, "netns", "add", self.name], capture_output=True, text=True)
        if made.returncode != 0:
            os.close(self._home)
            missing(f"cannot create a network namespace: {made.stderr.strip()}")
        try:
            subprocess.run(
                [ip, "netns", "exec", self.name, ip, "link", "set", "lo", "up"], check=True
            )
            fd = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
            try:
                self._setns(fd)
            finally:
                os.close(fd)
        except BaseException:
            subprocess.run([ip, "netns", "del", self.name], check=False)
            raise
        return self

    def _setns(self, fd: int) -> None:
        if self._libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns: {os.strerror(err)}")

    def __exit__(self, *exc: object) -> None:
        try:
            self._setns(self._home)
        finally:
            os.close(self._home)
            subprocess.run(["ip", "netns", "del", self.name], check=False)


# -- Orthanc -------------------------------------------------------------------------
class Orthanc:
    """Orthanc with DICOMweb on loopback ports, its storage in ``tmp``."""

    def __init__(self, tmp: Path, binary: str) -> None:
        self.url = f"http://127.0.0.1:{ORTHANC_HTTP}"
        self.dicomweb = f"{self.url}/dicom-web"
        config = {
            "Name": "webpacs-proxy-test",
            "StorageDirectory": str(tmp / "storage"),
            "IndexDirectory": str(tmp / "index"),
            "HttpPort": ORTHANC_HTTP,
            "DicomAet": ORTHANC_AET,
            "DicomPort": ORTHANC_DICOM,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomModalities": {
                "webpacs": [WEBPACS_AET, "127.0.0.1", WEBPACS_SCP],
                "webpacs2": [EVICT_AET, "127.0.0.1", EVICT_SCP],
            },
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full"},
        }
        cfg = tmp / "orthanc.json"
        cfg.write_text(json.dumps(config))
        self.log = (tmp / "orthanc.log").open("wb")
        self.proc = subprocess.Popen([binary, str(cfg)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/system", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Orthanc did not start; see {tmp / 'orthanc.log'}")
            time.sleep(0.2)

    def add(self, data: bytes) -> None:
        r = httpx.post(f"{self.url}/instances", content=data, timeout=30)
        assert r.status_code == 200, r.text

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@dataclass
class Webpacs:
    """webpacs (HTTP server and SCP) with a proxy to Orthanc."""

    server: RunningServer
    scp: ScpHandle | None

    @property
    def url(self) -> str:
        return self.server.url

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=60, **kwargs)

    def stats(self) -> dict[str, int]:
        return self.get("/webpacs/proxy").json()["stats"]  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.scp is not None:
            self.scp.shutdown()
        self.server.stop()


def orthanc_ae(port: int = ORTHANC_DICOM, title: str = ORTHANC_AET) -> dict[str, Any]:
    return {"orthanc": {"title": title, "host": "127.0.0.1", "port": port}}


def start_webpacs(
    data: Path,
    *,
    title: str = WEBPACS_AET,
    scp_port: int | None = WEBPACS_SCP,
    ae: dict[str, Any] | None = None,
    proxy: dict[str, Any] | None = None,
    query_ae: str = "orthanc",
    proxy_ae: str = "orthanc",
) -> Webpacs:
    server = start_server(
        data,
        queryAe=query_ae,
        proxyAe=proxy_ae,
        ae=ae if ae is not None else orthanc_ae(),
        dimse={"aeTitle": title, "port": scp_port or 0},
        proxy={"timeout": 10, **(proxy or {})},
    )
    scp = None
    if scp_port is not None:
        try:
            scp = start_scp(server.settings, server.store)
        except BaseException:
            server.stop()
            raise
    return Webpacs(server, scp)


@pytest.fixture(scope="module")
def netns() -> Iterator[Netns]:
    with Netns(f"webpacs-proxy-{os.getpid()}") as ns:
        yield ns


@pytest.fixture(scope="module")
def orthanc(netns: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    binary = require_binary("Orthanc")
    if not Path(DICOMWEB_PLUGIN).exists():
        missing(f"{DICOMWEB_PLUGIN} is missing (Debian package orthanc-dicomweb)")
    o = Orthanc(tmp_path_factory.mktemp("orthanc"), binary)
    try:
        for name in REMOTE_FILES:
            o.add(data_file(name).read_bytes())
        yield o
    finally:
        o.stop()


@pytest.fixture(scope="module")
def webpacs(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webpacs]:
    w = start_webpacs(tmp_path_factory.mktemp("webpacs"))
    try:
        for name in LOCAL_FILES:
            r = httpx.post(
                w.url + "/studies",
                content=_multipart(data_file(name).read_bytes()),
                headers={
                    "Content-Type": 'multipart/related; type="application/dicom"; boundary=XX'
                },
                timeout=30,
            )
            assert r.status_code == 200, r.text
        yield w
    finally:
        w.stop()


def _multipart(data: bytes) -> bytes:
    return b"--XX\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n--XX--\r\n"


def _values(rows: list[dict[str, Any]], tag: str) -> list[Any]:
    return [r.get(tag, {}).get("Value", [None])[0] for r in rows]


def _by_uid(rows: list[dict[str, Any]], tag: str = "0020000D") -> dict[str, dict[str, Any]]:
    return {r[tag]["Value"][0]: r for r in rows}


# -- QIDO-RS -------------------------------------------------------------------------
def test_qido_studies_merged(webpacs: Webpacs) -> None:
    r = webpacs.get("/studies")
    assert r.status_code == 200, r.text
    assert "Warning" not in r.headers
    rows = r.json()
    found = _by_uid(rows)
    expected = {uids(n)[0] for n in REMOTE_FILES + LOCAL_FILES}
    assert set(found) == expected
    assert len(rows) == len(expected)  # CT_small's study once: deduplicated
    ct, rtdose = uids("CT_small.dcm")[0], uids("rtdose.dcm")[0]
    assert found[ct]["00080056"]["Value"] == ["ONLINE"]  # local wins
    assert found[rtdose]["00080056"]["Value"] == ["ONLINE"]
    for name in ("MR_small.dcm", "emri_small.dcm", "SC_rgb_jpeg_dcmtk.dcm"):
        row = found[uids(name)[0]]
        assert row["00080056"]["Value"] == ["NEARLINE"]
        assert row["00080054"]["Value"] == [ORTHANC_AET]
        assert row["00081190"]["Value"][0] == f"{webpacs.url}/studies/{uids(name)[0]}"
        assert int(row["00201208"]["Value"][0]) == 1  # NumberOfStudyRelatedInstances


def test_qido_remote_matching(webpacs: Webpacs) -> None:
    mr = pydicom.dcmread(data_file("MR_small.dcm"), stop_before_pixels=True)
    cases: list[tuple[str, set[str]]] = [
        (f"PatientID={mr.PatientID}", {mr.StudyInstanceUID}),
        ("PatientName=*^MR?", {mr.StudyInstanceUID}),
        (f"StudyDate={mr.StudyDate}-{mr.StudyDate}", {mr.StudyInstanceUID}),
        ("ModalitiesInStudy=MR", {uids("MR_small.dcm")[0], uids("emri_small.dcm")[0]}),
        (
            f"StudyInstanceUID={uids('emri_small.dcm')[0]}\\{uids('rtdose.dcm')[0]}",
            {uids("emri_small.dcm")[0], uids("rtdose.dcm")[0]},
        ),
    ]
    for params, want in cases:
        r = webpacs.get("/studies?" + params)
        assert r.status_code == 200, (params, r.text)
        assert set(_by_uid(r.json())) == want, params
    # series: of one study, all series by modality, and with a study-level key
    emri_study, emri_series, _ = uids("emri_small.dcm")
    r = webpacs.get(f"/studies/{emri_study}/series")
    assert r.status_code == 200, r.text
    assert list(_by_uid(r.json(), "0020000E")) == [emri_series]
    r = webpacs.get("/series?Modality=MR")
    assert set(_by_uid(r.json(), "0020000E")) == {uids("MR_small.dcm")[1], emri_series}
    r = webpacs.get(f"/series?PatientID={mr.PatientID}")
    rows = r.json()
    assert set(_by_uid(rows, "0020000E")) == {uids("MR_small.dcm")[1]}
    assert rows[0]["00100020"]["Value"] == [mr.PatientID]  # study attributes filled in
    # extension keys are matched locally only, and the answer says so
    for params, want in (("SliceThickness=5", {uids("CT_small.dcm")[0]}),
                         (f"SliceThickness={mr.SliceThickness}", set())):  # fmt: skip
        r = webpacs.get("/studies?" + params)
        assert r.status_code == 200 and set(_by_uid(r.json())) == want, params
        assert "remote PACS was not asked" in r.headers["Warning"]
    # paging runs over local and remote rows together
    everything = [row["0020000D"]["Value"][0] for row in webpacs.get("/studies").json()]
    paged = [
        row["0020000D"]["Value"][0]
        for offset in range(0, len(everything), 2)
        for row in webpacs.get(f"/studies?limit=2&offset={offset}").json()
    ]
    assert paged == everything


# -- WADO-RS ---------------------------------------------------------------------------
_IGNORED = {"00081190", "00080056", "00080054"}  # RetrieveURL, availability, Retrieve AE


def _comparable(meta: dict[str, Any]) -> dict[str, Any]:
    """DICOM JSON without what legitimately differs between servers (bulk data refs)."""
    out: dict[str, Any] = {}
    for tag, value in meta.items():
        if tag in _IGNORED or tag.startswith("0002"):
            continue
        if "BulkDataURI" in value or "InlineBinary" in value:
            out[tag] = {"vr": value["vr"], "bulk": True}
        elif value.get("vr") == "SQ":
            out[tag] = {"vr": "SQ", "Value": [_comparable(i) for i in value.get("Value", [])]}
        else:
            out[tag] = value
    return out


def _orthanc(orthanc: Orthanc, path: str, **kwargs: Any) -> httpx.Response:
    r = httpx.get(orthanc.dicomweb + path, timeout=60, **kwargs)
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return r


def test_wado_metadata_equals_orthanc(webpacs: Webpacs, orthanc: Orthanc) -> None:
    study, series, sop = uids("emri_small.dcm")
    before = webpacs.stats()["retrieves"]
    path = f"/studies/{study}/series/{series}/metadata"
    ours = webpacs.get(path)
    assert ours.status_code == 200, ours.text
    assert webpacs.stats()["retrieves"] == before + 1
    theirs = _orthanc(orthanc, path).json()
    assert [_comparable(m) for m in ours.json()] == [_comparable(m) for m in theirs]
    path = f"/studies/{study}/series/{series}/instances/{sop}/metadata"
    assert [_comparable(m) for m in webpacs.get(path).json()] == [
        _comparable(m) for m in _orthanc(orthanc, path).json()
    ]
    # now local: answered without the remote, and QIDO says so
    assert webpacs.stats()["retrieves"] == before + 1
    row = _by_uid(webpacs.get(f"/studies?StudyInstanceUID={study}").json())[study]
    assert row["00080056"]["Value"] == ["ONLINE"]


def _parts(response: httpx.Response) -> list[bytes]:
    ctype = response.headers["content-type"]
    boundary = ctype.split("boundary=")[1].split(";")[0].strip('"')
    body = response.content
    parts = []
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        _, _, payload = chunk.partition(b"\r\n\r\n")
        parts.append(payload[:-2] if payload.endswith(b"\r\n") else payload)
    return parts


@pytest.mark.parametrize(
    ("name", "accept"),
    [
        ("emri_small.dcm", 'multipart/related; type="application/octet-stream"'),
        (
            "SC_rgb_jpeg_dcmtk.dcm",
            'multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50',
        ),
    ],
)
def test_wado_frames_equal_orthanc(
    webpacs: Webpacs, orthanc: Orthanc, name: str, accept: str
) -> None:
    study, series, sop = uids(name)
    frames = "1,3,10" if name == "emri_small.dcm" else "1"
    path = f"/studies/{study}/series/{series}/instances/{sop}/frames/{frames}"
    ours = webpacs.get(path, headers={"Accept": accept})
    assert ours.status_code == 200, ours.text
    theirs = _orthanc(orthanc, path, headers={"Accept": accept})
    mine, ref = _parts(ours), _parts(theirs)
    assert len(mine) == len(frames.split(","))
    assert mine == ref


def test_wado_retrieve_study_from_remote(webpacs: Webpacs) -> None:
    """A study-level retrieve of a remote-only study: a STUDY-level C-MOVE."""
    data, study, _ = variant("CT_small.dcm", "study-level")
    _add_to_orthanc(data)
    r = webpacs.get(
        f"/studies/{study}", headers={"Accept": 'multipart/related; type="application/dicom"'}
    )
    assert r.status_code == 200, r.text
    (part,) = _parts(r)
    assert pydicom.dcmread(io.BytesIO(part)).StudyInstanceUID == study


def _add_to_orthanc(data: bytes) -> None:
    r = httpx.post(f"http://127.0.0.1:{ORTHANC_HTTP}/instances", content=data, timeout=30)
    assert r.status_code == 200, r.text


def test_concurrent_requests_one_retrieve(webpacs: Webpacs) -> None:
    study, series, sop = uids("MR_small.dcm")
    before = webpacs.stats()["retrieves"]
    paths = [
        f"/studies/{study}/series/{series}/metadata",
        f"/studies/{study}/series/{series}/instances/{sop}/metadata",
        f"/studies/{study}/series/{series}/instances/{sop}/frames/1",
    ] * 4
    with concurrent.futures.ThreadPoolExecutor(len(paths)) as pool:
        results = list(pool.map(lambda p: webpacs.get(p), paths))
    assert [r.status_code for r in results] == [200] * len(paths), [r.text for r in results]
    assert webpacs.stats()["retrieves"] == before + 1


def test_not_on_remote_either(webpacs: Webpacs) -> None:
    r = webpacs.get(f"/studies/{generate_uid()}/series/{generate_uid()}/metadata")
    assert r.status_code == 404
    assert "neither stored here nor on ORTHANC" in r.json()["error"]


# -- failures ----------------------------------------------------------------------------
# pynetdicom's transport drops the socket of a refused connection without closing it
# (transport.py, AssociationSocket.connect): a ResourceWarning that is not ours.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_remote_down(orthanc: Orthanc, tmp_path: Path) -> None:
    """Nothing listens on the remote's port: QIDO warns, WADO answers 502."""
    w = start_webpacs(tmp_path / "data", scp_port=None, ae=orthanc_ae(port=4299))
    try:
        r = w.get("/studies")
        assert r.status_code == 200
        assert r.json() == []
        assert "remote search failed" in r.headers["Warning"]
        assert "ORTHANC@127.0.0.1:4299" in r.headers["Warning"]
        study, series, _ = uids("MR_small.dcm")
        r = w.get(f"/studies/{study}/series/{series}/metadata")
        assert r.status_code == 502, r.text
        assert "cannot associate with ORTHANC@127.0.0.1:4299" in r.json()["error"]
    finally:
        w.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # as above
@pytest.mark.parametrize("query_ae", ["", "orthanc"])
def test_qido_asks_the_remote_only_with_a_query_ae(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, query_ae: str
) -> None:
    """Without ``queryAe`` QIDO-RS answers from the index alone, never entering the remote
    search; with one (here nothing listens on its port) it does, and warns."""
    calls: list[str] = []
    merged = remote.search

    async def counting(request: Any, proxy: Any, query: Any) -> Any:
        calls.append(query.level.value)
        return await merged(request, proxy, query)

    monkeypatch.setattr(remote, "search", counting)
    w = start_webpacs(tmp_path / "data", scp_port=None, ae=orthanc_ae(port=4298), query_ae=query_ae)
    try:
        ingest(w.server.store.index, w.server.store.blobs, data_file("CT_small.dcm").read_bytes())
        study, _, _ = uids("CT_small.dcm")
        for path in ("/studies", f"/studies/{study}/series", f"/studies/{study}/instances"):
            r = w.get(path)
            assert r.status_code == 200 and len(r.json()) == 1, r.text
            assert ("remote search failed" in r.headers.get("Warning", "")) == (
                bool(query_ae) and "instances" not in path
            )
        assert calls == (["study", "series"] if query_ae else [])
    finally:
        w.stop()


def test_remote_rejects_us(orthanc: Orthanc, tmp_path: Path) -> None:
    """Orthanc does not know our AE title: it aborts, and says so in its log: 502."""
    w = start_webpacs(tmp_path / "data", title="STRANGER", scp_port=None)
    try:
        study, series, _ = uids("SC_rgb_jpeg_dcmtk.dcm")
        r = w.get(f"/studies/{study}/series/{series}/metadata")
        assert r.status_code == 502, r.text
        assert "C-MOVE: ORTHANC@127.0.0.1:4242 (ae.orthanc) aborted" in r.json()["error"]
    finally:
        w.stop()


def test_remote_status_in_502(tmp_path: Path) -> None:
    """A C-MOVE failure status of the remote is named in the 502 (here 0xA801)."""

    def refuse(event: Any) -> Any:
        yield None, None  # pynetdicom: destination unknown, it answers A801

    ae = AE(ae_title="REFUSER")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
    server = ae.start_server(
        ("127.0.0.1", 4301), block=False, evt_handlers=[(evt.EVT_C_MOVE, refuse)]
    )
    assert server is not None
    w = start_webpacs(tmp_path / "data", scp_port=None, ae=orthanc_ae(4301, "REFUSER"))
    try:
        r = w.get(f"/studies/{generate_uid()}/series/{generate_uid()}/metadata")
        assert r.status_code == 502, r.text
        assert r.json()["error"] == (
            "C-MOVE refused by REFUSER@127.0.0.1:4301 (ae.orthanc): 0xA801 Move destination unknown"
        )
    finally:
        w.stop()
        server.shutdown()
        ae.shutdown()


def test_remote_timeout(tmp_path: Path) -> None:
    """A remote that accepts the association but does not answer in time: 504."""

    def slow(event: Any) -> Any:
        time.sleep(3)
        yield 0xC000, None

    def slow_find(event: Any) -> Any:
        time.sleep(3)
        yield 0x0000, None

    ae = AE(ae_title="SLOW")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    server = ae.start_server(
        ("127.0.0.1", 4300),
        block=False,
        evt_handlers=[(evt.EVT_C_MOVE, slow), (evt.EVT_C_FIND, slow_find)],
    )
    assert server is not None
    w = start_webpacs(
        tmp_path / "data",
        scp_port=None,
        ae=orthanc_ae(port=4300, title="SLOW"),
        proxy={"timeout": 1},
    )
    try:
        r = w.get("/studies")
        assert r.status_code == 200
        assert "sent no response within 1 s" in r.headers["Warning"]
        r = w.get(f"/studies/{generate_uid()}/series/{generate_uid()}/metadata")
        assert r.status_code == 504, r.text
        assert "SLOW@127.0.0.1:4300" in r.json()["error"]
    finally:
        w.stop()
        server.shutdown()
        ae.shutdown()


# -- cache -------------------------------------------------------------------------------
def test_cache_eviction_by_size(orthanc: Orthanc, tmp_path: Path) -> None:
    studies = []
    for i in range(3):
        data, study, series = variant("CT_small.dcm", f"evict-{i}")
        _add_to_orthanc(data)
        studies.append((study, series, len(data)))
    size = studies[0][2]
    w = start_webpacs(
        tmp_path / "data",
        title=EVICT_AET,
        scp_port=EVICT_SCP,
        proxy={"cacheMaxBytes": int(size * 1.5)},
    )
    try:
        local_study = uids("rtdose.dcm")[0]
        r = httpx.post(
            w.url + "/studies",
            content=_multipart(data_file("rtdose.dcm").read_bytes()),
            headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=XX'},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        index = w.server.store.index
        for i, (study, series, _) in enumerate(studies):
            r = w.get(f"/studies/{study}/series/{series}/metadata")
            assert r.status_code == 200, r.text
            assert index.instances(study, series), f"study {i} retrieved"
            if i > 0:
                assert not index.instances(*studies[i - 1][:2]), f"study {i - 1} evicted"
            time.sleep(0.01)
        assert index.instances(local_study), "stored by STOW-RS: never evicted"
        summary = w.get("/webpacs/proxy").json()
        assert summary["stats"]["evictedSeries"] == 2
        assert [e["series"] for e in summary["cache"]["entries"]] == [studies[-1][1]]
        # evicted is not lost: asked again, it comes back from the remote
        study, series, _ = studies[0]
        assert w.get(f"/studies/{study}/series/{series}/metadata").status_code == 200
        assert w.stats()["retrieves"] == 4
    finally:
        w.stop()


def test_retrieve_by_c_get(orthanc: Orthanc, tmp_path: Path) -> None:
    """``proxy.retrieve: get``: no SCP needed; frames equal Orthanc's."""
    w = start_webpacs(tmp_path / "data", scp_port=None, proxy={"retrieve": "get"})
    try:
        study, series, sop = uids("emri_small.dcm")
        path = f"/studies/{study}/series/{series}/instances/{sop}/frames/2"
        accept = 'multipart/related; type="application/octet-stream"'
        r = w.get(path, headers={"Accept": accept})
        assert r.status_code == 200, r.text
        assert _parts(r) == _parts(_orthanc(orthanc, path, headers={"Accept": accept}))
        assert w.stats()["retrieves"] == 1
    finally:
        w.stop()


def test_worker_processes_share_one_retrieve(orthanc: Orthanc, tmp_path: Path) -> None:
    """Two workers of one store (two ``Proxy``s, as in two processes) asked for the same
    series at once: one retrieves, the other waits on the study's lock and finds it."""
    from webpacs.proxy.service import Proxy

    w = start_webpacs(tmp_path / "data", scp_port=None, proxy={"retrieve": "get"})
    other = Proxy.from_settings(w.server.settings, w.server.store)
    assert other is not None
    try:
        study, series, _ = uids("emri_small.dcm")
        proxies = [w.server.server.config.app.state.proxy, other]
        start = threading.Barrier(len(proxies))

        def retrieve(p: Proxy) -> int:
            start.wait()
            return p.retrieve(study, series)

        with concurrent.futures.ThreadPoolExecutor(len(proxies)) as pool:
            counts = list(pool.map(retrieve, proxies))
        assert sorted(counts)[0] == 0 and sorted(counts)[1] > 0, counts
        assert sum(p.stats["retrieves"] for p in proxies) == 1
    finally:
        other.close()
        w.stop()


def test_identifier_translation() -> None:
    """Every kind of condition is expressed in the C-FIND identifier (PS3.4 C.2.2.2)."""
    from webpacs.core.attributes import Level
    from webpacs.core.query import parse_qido
    from webpacs.proxy import query as q

    query = parse_qido(
        Level.STUDY,
        [
            ("PatientName", "Do*"),
            ("StudyDate", "20200101-"),
            ("StudyTime", "-10"),
            ("ModalitiesInStudy", "CT,MR"),
            ("AccessionNumber", "A1"),
            ("includefield", "StudyComments"),
        ],
    )
    ds: Dataset = q.study_identifier(query)
    assert ds.QueryRetrieveLevel == "STUDY"
    assert ds.PatientName == "Do*"
    assert ds.StudyDate == "20200101-"
    assert ds.StudyTime == "-105959.999999"
    assert list(ds.ModalitiesInStudy) == ["CT", "MR"]
    assert ds.AccessionNumber == "A1"
    assert "StudyComments" in ds and not ds.StudyComments
    assert "StudyInstanceUID" in ds and "NumberOfStudyRelatedInstances" in ds
    fuzzy = parse_qido(Level.STUDY, [("PatientName", "doe"), ("fuzzymatching", "true")])
    assert not q.study_identifier(fuzzy).PatientName  # matched here, on the responses
    row = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]}}
    assert q.keep(fuzzy, row)
    assert not q.keep(parse_qido(Level.STUDY, [("PatientName", "Smith*")]), row)
