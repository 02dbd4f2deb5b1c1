"""The DIMSE SCP against dcmtk's tools (echoscu, storescu, findscu, movescu, getscu, storescp)
and pynetdicom as SCU. Every SCP and process a test starts, it stops; all bind 127.0.0.1."""

from __future__ import annotations

import io
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pydicom.config
import pytest
from pydicom.dataset import Dataset
from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    StoragePresentationContexts,
    evt,
)
from pynetdicom import _config as pynetdicom_config
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from tests.conftest import data_file as sample
from tests.conftest import free_port, require_binary
from webpacs.config import isolated
from webpacs.dimse import ScpHandle, start_scp
from webpacs.errors import StorageError
from webpacs.ingest import ingest
from webpacs.storage.registry import Store, open_store

CT = "CT_small.dcm"
MR = "MR_small.dcm"
EMRI = "emri_small.dcm"
JPEG = "SC_rgb_jpeg_dcmtk.dcm"
LOADED = (CT, MR, EMRI, JPEG)


def dataset_bytes(data: bytes) -> bytes:
    """The data set of a Part 10 object: what follows the File Meta Information."""
    assert data[128:132] == b"DICM"
    pos = 132
    while pos + 8 <= len(data):
        group = struct.unpack_from("<H", data, pos)[0]
        if group != 0x0002:
            break
        if data[pos + 4 : pos + 6] in (b"OB", b"OW", b"UN", b"UT", b"SQ", b"UC", b"UR"):
            pos += 12 + struct.unpack_from("<L", data, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", data, pos + 6)[0]
    return data[pos:]


def differences(a: Dataset, b: Dataset) -> list[str]:
    """Elements that differ, besides trailing padding and group lengths, which dcmtk drops."""
    skip = {0xFFFCFFFC}

    def tags(ds: Dataset) -> set[int]:
        return {int(e.tag) for e in ds if int(e.tag) not in skip and e.tag.element != 0}

    out = [f"{t:08X} only in one" for t in sorted(tags(a) ^ tags(b))]
    for t in sorted(tags(a) & tags(b)):
        if a[t].value != b[t].value:
            out.append(f"{t:08X}: {str(a[t].value)[:40]!r} != {str(b[t].value)[:40]!r}")
    return out


class Running:
    """An SCP started for a test, with its store and settings."""

    def __init__(
        self, tmp: Path, dimse: dict[str, Any], ae: dict[str, Any], **sections: Any
    ) -> None:
        self.settings = isolated(
            {"dataDir": str(tmp / "data"), "dimse": {"port": 0, **dimse}, "ae": ae, **sections}
        )
        self.store: Store = open_store(self.settings)
        try:
            self.handle: ScpHandle = start_scp(self.settings, self.store)
        except BaseException:
            self.store.close()
            raise
        self.port = self.handle.port

    def put(self, *names: str) -> None:
        for name in names:
            ingest(self.store.index, self.store.blobs, sample(name).read_bytes())

    def stored(self, sop_uid: str) -> bytes:
        rec = self.store.index.get(sop_uid)
        assert rec is not None, f"{sop_uid} not in the index"
        return self.store.blobs.get(rec.blob_key)

    def stop(self) -> None:
        self.handle.shutdown()
        self.store.close()


@pytest.fixture
def make_scp(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def make(dimse: dict[str, Any] | None = None, ae: dict[str, Any] | None = None) -> Running:
        scp = Running(tmp_path / f"scp{len(started)}", dimse or {}, ae or {})
        started.append(scp)
        return scp

    yield make
    for scp in started:
        scp.stop()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One SCP holding CT, MR, multi-frame MR and a JPEG secondary capture."""
    scp = Running(
        tmp_path_factory.mktemp("loaded"),
        {},
        {"dest": {"title": "DEST", "host": "127.0.0.1", "port": free_port()}},
    )
    scp.put(*LOADED)
    yield scp
    scp.stop()


def run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)


def header(name: str) -> Dataset:
    return pydicom.dcmread(sample(name), stop_before_pixels=True)


# --------------------------------------------------------------------------- C-ECHO


def test_echoscu(make_scp: Callable[..., Running]) -> None:
    echoscu = require_binary("echoscu")
    scp = make_scp()
    r = run([echoscu, "-aec", "WEBPACS", "127.0.0.1", str(scp.port)])
    assert r.returncode == 0, r.stderr


def test_restrict_calling_ae(make_scp: Callable[..., Running]) -> None:
    echoscu = require_binary("echoscu")
    ae = {"ws": {"title": "WORKSTATION", "host": "127.0.0.1", "port": 104, "services": []}}
    scp = make_scp({"restrictCallingAe": True}, ae)
    base = [echoscu, "-aec", "WEBPACS", "127.0.0.1", str(scp.port)]
    assert run([*base, "-aet", "WORKSTATION"]).returncode == 0
    refused = run([*base, "-aet", "STRANGER"])
    assert refused.returncode != 0
    assert "Rejected" in refused.stderr or "rejected" in refused.stderr.lower()
    # a known AE without "find" in its services: Refused: Not Authorized (PS3.7 C.5)
    status, _ = pynetdicom_find(scp.port, {"QueryRetrieveLevel": "STUDY"}, aet="WORKSTATION")
    assert status == 0x0124


# --------------------------------------------------------------------------- C-STORE

# file, storescu option proposing its transfer syntax
STORE_CASES = [
    (CT, []),
    (MR, []),
    (EMRI, []),  # multi-frame
    (JPEG, ["-xy"]),  # JPEG Baseline
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", ["-xs"]),  # JPEG Lossless SV1
    ("emri_small_jpeg_ls_lossless.dcm", ["-xt"]),  # JPEG-LS, multi-frame
    ("693_J2KR.dcm", ["-xv"]),  # JPEG 2000 lossless
    ("OBXXXX1A_rle.dcm", ["-xr"]),  # RLE
    ("SC_rgb_expb.dcm", ["-xb"]),  # Explicit VR Big Endian
    ("image_dfl.dcm", ["-xd"]),  # Deflated: stored inflated
]


@pytest.mark.parametrize(("name", "option"), STORE_CASES, ids=[c[0] for c in STORE_CASES])
def test_storescu(make_scp: Callable[..., Running], name: str, option: list[str]) -> None:
    storescu = require_binary("storescu")
    scp = make_scp()
    path = sample(name)
    r = run([storescu, *option, "-aec", "WEBPACS", "127.0.0.1", str(scp.port), str(path)])
    assert r.returncode == 0, r.stderr
    sent = pydicom.dcmread(path)
    stored = pydicom.dcmread(io.BytesIO(scp.stored(sent.SOPInstanceUID)))
    # storescu sends what dcmtk re-encodes from the file: the same elements and values
    assert differences(stored, sent) == []
    if not sent.file_meta.TransferSyntaxUID.is_deflated:  # else stored inflated
        assert stored.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID


@pytest.mark.parametrize("name", [CT, EMRI, JPEG, "OBXXXX1A_rle.dcm", "SC_rgb_expb.dcm"])
def test_stored_bytes_are_the_sent_bytes(
    make_scp: Callable[..., Running], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """pynetdicom sends the file's data set bytes unchanged; they are stored unchanged."""
    monkeypatch.setattr(pynetdicom_config, "STORE_SEND_CHUNKED_DATASET", True)
    scp = make_scp()
    path = sample(name)
    sent = header(name)
    ae = AE()
    ae.add_requested_context(sent.SOPClassUID, sent.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="WEBPACS")
    try:
        assert assoc.is_established
        assert assoc.send_c_store(path).Status == 0x0000
    finally:
        assoc.release()
    assert dataset_bytes(scp.stored(sent.SOPInstanceUID)) == dataset_bytes(path.read_bytes())


def test_store_conflict_and_out_of_resources(
    make_scp: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    scp = make_scp()
    ds = pydicom.dcmread(sample(CT))
    ae = AE()
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="WEBPACS")
    try:
        assert assoc.is_established
        assert assoc.send_c_store(ds).Status == 0x0000
        assert assoc.send_c_store(ds).Status == 0x0000  # same content again: success
        ds.PatientName = "Other^Content"
        rsp = assoc.send_c_store(ds)
        assert rsp.Status == 0x0111  # Duplicate SOP Instance (conflict policy: reject)
        assert rsp.ErrorComment.startswith(f"instance {ds.SOPInstanceUID}")

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise StorageError("disk full")

        monkeypatch.setattr(scp.store.index, "put", broken)
        ds.SOPInstanceUID = ds.SOPInstanceUID + ".1"
        rsp = assoc.send_c_store(ds)
        assert rsp.Status == 0xA700  # Refused: Out of Resources (PS3.4 B.2.3)
    finally:
        assoc.release()


# --------------------------------------------------------------------------- C-FIND


def findscu(port: int, model: str, keys: list[str], cwd: Path) -> list[Dataset]:
    """Run findscu, return the response identifiers it wrote (-X: rsp0001.dcm, ...)."""
    exe = require_binary("findscu")
    args = [exe, model, "-X", "-aec", "WEBPACS", "127.0.0.1", str(port)]
    for k in keys:
        args += ["-k", k]
    for old in cwd.glob("rsp*.dcm"):
        old.unlink()
    r = run(args, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return [pydicom.dcmread(p) for p in sorted(cwd.glob("rsp*.dcm"))]


def test_findscu_study_root_study_level(loaded: Running, tmp_path: Path) -> None:
    rsp = findscu(
        loaded.port,
        "-S",
        ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName=CompressedSamples*"],
        tmp_path,
    )
    names = sorted(str(d.PatientName) for d in rsp)
    assert names == ["CompressedSamples^CT1", "CompressedSamples^MR1"]
    for d in rsp:  # only the requested keys, plus the level (and the character set)
        assert set(d.dir()) <= {
            "QueryRetrieveLevel",
            "StudyInstanceUID",
            "PatientName",
            "SpecificCharacterSet",
        }
        assert d.QueryRetrieveLevel == "STUDY"


def test_findscu_date_ranges(loaded: Running, tmp_path: Path) -> None:
    def dates(value: str) -> list[str]:
        rsp = findscu(
            loaded.port, "-S", ["QueryRetrieveLevel=STUDY", f"StudyDate={value}"], tmp_path
        )
        return sorted(d.StudyDate for d in rsp)

    everything = dates("")
    assert len(everything) == len(LOADED)  # four studies
    assert dates("20040101-20041231") == ["20040119", "20040826"]
    assert dates("20040201-") == [d for d in everything if d >= "20040201"]
    assert dates("-20040119") == [d for d in everything if d <= "20040119"]
    assert dates("20040119") == ["20040119"]


def test_findscu_series_and_image_levels(loaded: Running, tmp_path: Path) -> None:
    ct = header(CT)
    series = findscu(
        loaded.port,
        "-S",
        [
            "QueryRetrieveLevel=SERIES",
            f"StudyInstanceUID={ct.StudyInstanceUID}",
            "SeriesInstanceUID",
            "Modality",
            "NumberOfSeriesRelatedInstances",
        ],
        tmp_path,
    )
    assert [(d.SeriesInstanceUID, d.Modality) for d in series] == [(ct.SeriesInstanceUID, "CT")]
    assert int(series[0].NumberOfSeriesRelatedInstances) == 1
    images = findscu(
        loaded.port,
        "-P",
        [
            "QueryRetrieveLevel=IMAGE",
            "PatientID=?MR1",
            "SOPInstanceUID",
            "SOPClassUID",
            "InstanceNumber",
        ],
        tmp_path,
    )
    mr = header(MR)
    assert [d.SOPInstanceUID for d in images] == [mr.SOPInstanceUID]
    assert images[0].SOPClassUID == mr.SOPClassUID
    # a SOP Instance UID list (PS3.4 C.2.2.2.2)
    uids = "\\".join(header(n).SOPInstanceUID for n in (CT, EMRI))
    listed = findscu(
        loaded.port, "-S", ["QueryRetrieveLevel=IMAGE", f"SOPInstanceUID={uids}"], tmp_path
    )
    assert sorted(d.SOPInstanceUID for d in listed) == sorted(uids.split("\\"))


def test_findscu_patient_root(loaded: Running, tmp_path: Path) -> None:
    patients = findscu(
        loaded.port,
        "-P",
        [
            "QueryRetrieveLevel=PATIENT",
            "PatientID=*CT1",
            "PatientName",
            "NumberOfPatientRelatedStudies",
            "StudyDate",  # a study-level key at PATIENT level: answered empty
        ],
        tmp_path,
    )
    assert [d.PatientID for d in patients] == ["1CT1"]
    assert str(patients[0].PatientName) == "CompressedSamples^CT1"
    assert int(patients[0].NumberOfPatientRelatedStudies) == 1
    assert patients[0].StudyDate == ""
    studies = findscu(
        loaded.port,
        "-P",
        ["QueryRetrieveLevel=STUDY", "PatientID=4MR1", "StudyInstanceUID", "ModalitiesInStudy"],
        tmp_path,
    )
    assert [d.StudyInstanceUID for d in studies] == [header(MR).StudyInstanceUID]
    assert studies[0].ModalitiesInStudy == "MR"


def pynetdicom_find(
    port: int,
    keys: dict[str, str],
    model: str = StudyRootQueryRetrieveInformationModelFind,
    aet: str = "PYNETDICOM",
) -> tuple[int, list[Dataset]]:
    ae = AE(ae_title=aet)
    ae.add_requested_context(model)
    assoc = ae.associate("127.0.0.1", port, ae_title="WEBPACS")
    assert assoc.is_established
    identifier = Dataset()
    for k, v in keys.items():
        setattr(identifier, k, v)
    found: list[Dataset] = []
    status = -1
    try:
        for st, ds in assoc.send_c_find(identifier, model):
            status = int(st.Status)
            if status in (0xFF00, 0xFF01) and ds is not None:
                found.append(ds)
    finally:
        assoc.release()
    return status, found


def test_find_failures(loaded: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    # PATIENT level is not a Study Root level: Identifier does not match SOP Class
    assert pynetdicom_find(loaded.port, {"QueryRetrieveLevel": "PATIENT"})[0] == 0xA900
    assert pynetdicom_find(loaded.port, {"StudyDate": ""})[0] == 0xA900  # no level
    bad_date = {"QueryRetrieveLevel": "STUDY", "StudyDate": "2004XX01"}
    with pydicom.config.disable_value_validation():  # send the invalid value anyway
        assert pynetdicom_find(loaded.port, bad_date)[0] == 0xA900
    ok, found = pynetdicom_find(
        loaded.port,
        {"QueryRetrieveLevel": "PATIENT", "PatientID": "4MR1"},
        PatientRootQueryRetrieveInformationModelFind,
    )
    assert (ok, [d.PatientID for d in found]) == (0x0000, ["4MR1"])

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise StorageError("index unavailable")

    monkeypatch.setattr(loaded.store.index, "search", broken)
    assert pynetdicom_find(loaded.port, {"QueryRetrieveLevel": "STUDY"})[0] == 0xA700


# --------------------------------------------------------------------------- C-MOVE / C-GET


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "storescp exited"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def received(directory: Path) -> dict[str, bytes]:
    out = {}
    for p in directory.iterdir():
        data = p.read_bytes()
        out[pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID] = data
    return out


@pytest.mark.parametrize("name", [CT, JPEG])
def test_movescu_series_to_storescp(loaded: Running, tmp_path: Path, name: str) -> None:
    movescu = require_binary("movescu")
    storescp = require_binary("storescp")
    dest = loaded.settings.ae("dest")
    out = tmp_path / "received"
    out.mkdir()
    proc = subprocess.Popen(
        [storescp, "+xa", "-aet", "DEST", "--output-directory", str(out), str(dest.port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(dest.port, proc)
        ds = header(name)
        r = run(
            [
                movescu, "-S", "-aec", "WEBPACS", "-aem", "DEST",
                "-k", "QueryRetrieveLevel=SERIES",
                "-k", f"StudyInstanceUID={ds.StudyInstanceUID}",
                "-k", f"SeriesInstanceUID={ds.SeriesInstanceUID}",
                "127.0.0.1", str(loaded.port),
            ]
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 10
        while not any(out.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    got = received(out)
    assert list(got) == [ds.SOPInstanceUID]
    # storescp writes what dcmtk decoded (it drops trailing padding): compare elements
    stored = pydicom.dcmread(io.BytesIO(loaded.stored(ds.SOPInstanceUID)))
    assert differences(pydicom.dcmread(io.BytesIO(got[ds.SOPInstanceUID])), stored) == []


def recording_scp(port: int, seen: dict[str, bytes], **options: Any) -> tuple[AE, Any]:
    """A pynetdicom storage SCP "DEST" on ``port`` that keeps each received data set's
    bytes in ``seen`` by SOP Instance UID; ``options`` go to ``start_server`` (e.g. TLS)."""

    def on_store(event: Any) -> int:
        seen[str(event.request.AffectedSOPInstanceUID)] = event.encoded_dataset(False)
        return 0x0000

    dest = AE(ae_title="DEST")
    for cx in AllStoragePresentationContexts:
        dest.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    server = dest.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)], **options
    )
    return dest, server


def test_move_sends_the_stored_bytes(loaded: Running) -> None:
    """A pynetdicom storage SCP as the destination sees the stored data set bytes."""
    seen: dict[str, bytes] = {}
    dest, server = recording_scp(loaded.settings.ae("dest").port, seen)
    try:
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "IMAGE"
        identifier.StudyInstanceUID = header(JPEG).StudyInstanceUID
        identifier.SeriesInstanceUID = header(JPEG).SeriesInstanceUID
        identifier.SOPInstanceUID = [header(n).SOPInstanceUID for n in (JPEG, EMRI)]
        statuses = c_move(loaded.port, identifier, "DEST")
    finally:
        server.shutdown()
        dest.shutdown()
    assert statuses[-1] == 0x0000
    sop = header(JPEG).SOPInstanceUID  # EMRI is in another series: not moved
    assert list(seen) == [sop]
    assert seen[sop] == dataset_bytes(loaded.stored(sop))


def c_move(port: int, identifier: Dataset, destination: str) -> list[int]:
    """The statuses of a pynetdicom C-MOVE (study root) to the SCP on ``port``."""
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", port, ae_title="WEBPACS")
    assert assoc.is_established
    try:
        return [
            int(st.Status)
            for st, _ in assoc.send_c_move(
                identifier, destination, StudyRootQueryRetrieveInformationModelMove
            )
        ]
    finally:
        assoc.release()


def test_move_unknown_destination(loaded: Running) -> None:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = header(CT).StudyInstanceUID
    statuses = c_move(loaded.port, identifier, "NOWHERE")
    assert statuses == [0xA801]  # Move Destination unknown (PS3.4 C.4.2.1.5)


def test_getscu_series(loaded: Running, tmp_path: Path) -> None:
    getscu = require_binary("getscu")
    ds = header(EMRI)
    r = run(
        [
            getscu, "-S", "-xe", "-aec", "WEBPACS", "-od", str(tmp_path),
            "-k", "QueryRetrieveLevel=SERIES",
            "-k", f"StudyInstanceUID={ds.StudyInstanceUID}",
            "-k", f"SeriesInstanceUID={ds.SeriesInstanceUID}",
            "127.0.0.1", str(loaded.port),
        ]
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = received(tmp_path)
    assert list(got) == [ds.SOPInstanceUID]
    stored = pydicom.dcmread(io.BytesIO(loaded.stored(ds.SOPInstanceUID)))
    assert differences(pydicom.dcmread(io.BytesIO(got[ds.SOPInstanceUID])), stored) == []


def test_echo_and_storage_contexts_with_pynetdicom(make_scp: Callable[..., Running]) -> None:
    scp = make_scp()
    ae = AE()
    ae.add_requested_context(Verification)
    for cx in StoragePresentationContexts[:100]:
        ae.add_requested_context(cx.abstract_syntax)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="WEBPACS")
    try:
        assert assoc.is_established
        assert len(assoc.accepted_contexts) == 101  # current and retired storage classes
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()


#: Files whose data set dcmtk sends exactly as the file holds it. For most others dcmtk
#: re-encodes before sending (it drops trailing padding, rewrites group and item lengths),
#: so no receiver can store the file's bytes; test_storescu checks those element by
#: element, and test_stored_bytes_are_the_sent_bytes shows with a byte-faithful SCU
#: (pynetdicom) that C-STORE stores exactly the bytes sent.
BYTE_FAITHFUL = [
    (EMRI, []),
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", ["-xs"]),
]


@pytest.mark.parametrize(("name", "option"), BYTE_FAITHFUL, ids=[c[0] for c in BYTE_FAITHFUL])
def test_storescu_stores_what_stow_stores(
    make_scp: Callable[..., Running], name: str, option: list[str]
) -> None:
    """The same file by storescu (C-STORE) and by STOW's ingest: byte-identical data sets.

    After storescu, ingesting the file again is a *duplicate* (equal data set digest),
    not a conflict, and the stored data set bytes are the file's.
    """
    from webpacs.storage.base import Outcome

    storescu = require_binary("storescu")
    scp = make_scp()
    path = sample(name)
    r = run([storescu, *option, "-aec", "WEBPACS", "127.0.0.1", str(scp.port), str(path)])
    assert r.returncode == 0, r.stderr
    sop = header(name).SOPInstanceUID
    assert dataset_bytes(scp.stored(sop)) == dataset_bytes(path.read_bytes())
    again = ingest(scp.store.index, scp.store.blobs, path.read_bytes())
    assert again.outcome is Outcome.DUPLICATE
