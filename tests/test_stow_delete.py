"""STOW-RS forms and statuses, DELETE, and crash safety of the write path."""

from __future__ import annotations

import io
import time
from pathlib import Path

import orjson
import pydicom
import pydicom.uid
import pytest
import requests
from pydicom.encaps import generate_frames

from tests.conftest import RunningServer, data_file
from webpacs.core.multipart import iter_multipart
from webpacs.errors import StorageError
from webpacs.ingest import ingest


def post(
    srv: RunningServer,
    parts: list[tuple[dict[str, str], bytes]],
    part_type: str,
    path: str = "/studies",
) -> requests.Response:
    body = b"".join(iter_multipart(((h, [b]) for h, b in parts), "bnd"))
    ctype = f'multipart/related; type="{part_type}"; boundary=bnd'
    return requests.post(srv.url + path, data=body, headers={"Content-Type": ctype}, timeout=30)


def dicom_part(name: str) -> tuple[dict[str, str], bytes]:
    return {"Content-Type": "application/dicom"}, data_file(name).read_bytes()


def test_stow_statuses(server: RunningServer) -> None:
    ok = post(server, [dicom_part("CT_small.dcm"), dicom_part("MR_small.dcm")], "application/dicom")
    assert ok.status_code == 200
    body = ok.json()
    assert len(body["00081199"]["Value"]) == 2
    assert "00081198" not in body
    ref = body["00081199"]["Value"][0]
    assert requests.get(ref["00081190"]["Value"][0], timeout=10).status_code == 200
    mixed = post(
        server,
        [dicom_part("rtdose.dcm"), ({"Content-Type": "application/dicom"}, b"junk")],
        "application/dicom",
    )
    assert mixed.status_code == 202
    assert len(mixed.json()["00081199"]["Value"]) == 1
    assert mixed.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    again = post(server, [dicom_part("CT_small.dcm")], "application/dicom")
    assert again.status_code == 200  # identical duplicate: success, nothing duplicated
    r = requests.get(server.url + "/instances", timeout=10)
    assert len(r.json()) == 3


def test_one_request_with_copies_and_a_conflicting_version(server: RunningServer) -> None:
    """Parts are prepared side by side but decided in request order."""
    original = data_file("MR_small.dcm").read_bytes()
    ds = pydicom.dcmread(io.BytesIO(original))
    ds.PatientID = "CHANGED"
    changed = io.BytesIO()
    ds.save_as(changed)
    parts = [({"Content-Type": "application/dicom"}, b) for b in (original, original)]
    parts.append(({"Content-Type": "application/dicom"}, changed.getvalue()))
    parts.append(dicom_part("CT_small.dcm"))
    r = post(server, parts, "application/dicom")
    assert r.status_code == 202
    stored = r.json()["00081199"]["Value"]
    assert [i["00081155"]["Value"][0] for i in stored] == [
        ds.SOPInstanceUID,
        ds.SOPInstanceUID,
        pydicom.dcmread(data_file("CT_small.dcm")).SOPInstanceUID,
    ]
    (failed,) = r.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0x0111]
    assert failed["00081155"]["Value"] == [ds.SOPInstanceUID]
    kept = requests.get(
        f"{server.url}/instances", params={"SOPInstanceUID": ds.SOPInstanceUID}, timeout=10
    ).json()
    assert kept[0]["00100020"]["Value"] != ["CHANGED"]
    # the refused version left no object behind: one stored object per instance
    assert len(list(server.store.blobs.keys("objects/"))) == 2


def test_stow_to_study_path(server: RunningServer) -> None:
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    r = post(
        server, [dicom_part("CT_small.dcm")], "application/dicom", f"/studies/{ds.StudyInstanceUID}"
    )
    assert r.status_code == 200
    assert r.json()["00081190"]["Value"][0].endswith(ds.StudyInstanceUID)


@pytest.mark.parametrize("name", ["CT_small.dcm", "SC_rgb_rle.dcm", "JPEG2000.dcm"])
def test_stow_metadata_and_bulkdata(server: RunningServer, name: str) -> None:
    """The metadata + bulk data form (PS3.18 10.5.1.2.2)."""
    ds = pydicom.dcmread(data_file(name))
    uri = "http://client.example/bulk/pixels"
    meta = ds.to_json_dict(bulk_data_threshold=1 << 30, bulk_data_element_handler=lambda e: uri)
    meta["7FE00010"] = {
        "vr": "OB" if ds["PixelData"].is_undefined_length else "OW",
        "BulkDataURI": uri,
    }
    ts = ds.file_meta.TransferSyntaxUID
    if ds["PixelData"].is_undefined_length:
        frames = list(generate_frames(ds.PixelData, number_of_frames=1))  # one-frame files
        pixel = (
            {"Content-Type": f"image/x; transfer-syntax={ts}", "Content-Location": uri},
            frames[0],
        )
    else:
        pixel = (
            {"Content-Type": "application/octet-stream", "Content-Location": uri},
            ds.PixelData,
        )
    r = post(
        server,
        [({"Content-Type": "application/dicom+json"}, orjson.dumps([meta])), pixel],
        "application/dicom+json",
    )
    assert r.status_code == 200, r.text
    got = requests.get(
        f"{server.url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/frames/1",
        headers={"Accept": 'multipart/related; type="*/*"; transfer-syntax=*'},
        timeout=10,
    )
    assert got.status_code == 200
    expected = frames[0] if ds["PixelData"].is_undefined_length else ds.PixelData
    assert expected in got.content


def test_stow_metadata_missing_bulk_part(server: RunningServer) -> None:
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    meta = ds.to_json_dict(bulk_data_threshold=1 << 30, bulk_data_element_handler=lambda e: "x")
    meta["7FE00010"] = {"vr": "OW", "BulkDataURI": "http://nowhere/missing"}
    r = post(
        server,
        [({"Content-Type": "application/dicom+json"}, orjson.dumps([meta]))],
        "application/dicom+json",
    )
    assert r.status_code == 409
    assert "missing" in r.headers["Warning"]


def test_delete_levels(server: RunningServer) -> None:
    post(
        server,
        [dicom_part("CT_small.dcm"), dicom_part("MR_small.dcm"), dicom_part("emri_small.dcm")],
        "application/dicom",
    )
    ct = pydicom.dcmread(data_file("CT_small.dcm"))
    mr = pydicom.dcmread(data_file("MR_small.dcm"))
    series_url = f"{server.url}/studies/{mr.StudyInstanceUID}/series/{mr.SeriesInstanceUID}"
    assert requests.get(series_url + "/metadata", timeout=10).status_code == 200
    keys_before = set(server.store.blobs.keys("objects/"))
    inst = f"{series_url}/instances/{mr.SOPInstanceUID}"
    assert requests.delete(inst, timeout=10).status_code == 204
    assert requests.get(inst + "/metadata", timeout=10).status_code == 404
    assert requests.get(series_url + "/metadata", timeout=10).status_code == 404
    assert not list(server.store.blobs.keys(f"derived/{mr.StudyInstanceUID}/"))
    assert len(set(server.store.blobs.keys("objects/"))) == len(keys_before) - 1
    assert requests.delete(inst, timeout=10).status_code == 404
    assert (
        requests.delete(f"{server.url}/studies/{ct.StudyInstanceUID}", timeout=10).status_code
        == 204
    )
    remaining = requests.get(server.url + "/studies", timeout=10).json()
    assert [s["0020000D"]["Value"][0] for s in remaining] == [
        pydicom.dcmread(data_file("emri_small.dcm")).StudyInstanceUID
    ]


def test_crash_between_blob_and_index_leaves_nothing_visible(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = server.store

    def boom(*args: object, **kwargs: object) -> None:
        raise StorageError("disk full (simulated)")

    monkeypatch.setattr(st.index, "put", boom)
    with pytest.raises(StorageError):
        ingest(st.index, st.blobs, data_file("CT_small.dcm").read_bytes())
    monkeypatch.undo()
    assert requests.get(server.url + "/instances", timeout=10).json() == []
    r = post(server, [dicom_part("CT_small.dcm")], "application/dicom")
    assert r.status_code == 200  # a retry stores it normally


def test_partial_blob_write_is_invisible(tmp_path: Path) -> None:
    from webpacs.storage.fs import FileBlobs

    blobs = FileBlobs(tmp_path)

    class Exploding(io.BytesIO):
        def read(self, n: int = -1) -> bytes:
            if self.tell() > 1000:
                raise OSError("connection reset (simulated)")
            return super().read(min(n, 500) if n > 0 else 500)

    with pytest.raises(StorageError):
        blobs.put_file("objects/x.dcm", Exploding(b"x" * 5000))
    assert not blobs.exists("objects/x.dcm")
    assert list(blobs.keys()) == []


def test_study_attribute_disagreements_are_retrievable(server: RunningServer) -> None:
    first = pydicom.dcmread(data_file("CT_small.dcm"))
    second = pydicom.dcmread(data_file("CT_small.dcm"))
    second.SOPInstanceUID = first.SOPInstanceUID + ".2"
    second.PatientName = "Other^Name"
    buf = io.BytesIO()
    second.save_as(buf)
    post(server, [dicom_part("CT_small.dcm")], "application/dicom")
    r = post(server, [({"Content-Type": "application/dicom"}, buf.getvalue())], "application/dicom")
    assert r.status_code == 200
    got = requests.get(
        f"{server.url}/webpacs/studies/{first.StudyInstanceUID}/conflicts", timeout=10
    ).json()
    assert [(c["keyword"], c["value"]) for c in got] == [("PatientName", "Other^Name")]
    study = requests.get(
        f"{server.url}/studies",
        params={"StudyInstanceUID": first.StudyInstanceUID},
        headers={"Accept": "application/json"},
        timeout=10,
    )
    assert study.headers["Content-Type"].startswith("application/json")
    assert study.json()[0]["00100010"]["Value"] == [{"Alphabetic": "Other^Name"}]


def test_change_feed_rebuilds_derived_documents(tmp_path: Path) -> None:
    """An instance that arrives by another door gets its series metadata built off-request."""
    from tests.conftest import start_server

    srv = start_server(tmp_path, server={"deriveInterval": 0.2})
    try:
        post(srv, [dicom_part("emri_small.dcm")], "application/dicom")
        ds = pydicom.dcmread(data_file("emri_small.dcm"))
        url = f"{srv.url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/metadata"
        assert len(requests.get(url, timeout=10).json()) == 1  # the client's host is remembered
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        buf = io.BytesIO()
        ds.save_as(buf)
        ingest(srv.store.index, srv.store.blobs, buf.getvalue())  # like C-STORE or a peer node
        version = srv.store.index.series_version(ds.StudyInstanceUID, ds.SeriesInstanceUID)
        prefix = f"derived/{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{version}-"
        deadline = time.monotonic() + 10
        while not list(srv.store.blobs.keys(prefix)):
            assert time.monotonic() < deadline, "the deriver did not rebuild the series document"
            time.sleep(0.05)
        # the study document is written after the series document: wait for it too
        while not (
            study_docs := list(srv.store.blobs.keys(f"derived/{ds.StudyInstanceUID}/study-"))
        ):
            assert time.monotonic() < deadline, "the deriver did not rebuild the study document"
            time.sleep(0.05)
        assert len(study_docs) == 1
        assert len(requests.get(url, timeout=10).json()) == 2
    finally:
        srv.stop()


def _versions(name: str, n: int) -> list[bytes]:
    """``n`` different versions (PatientID) of one instance."""
    out = []
    for i in range(n):
        ds = pydicom.dcmread(data_file(name))
        ds.PatientID = f"VERSION{i}"
        buf = io.BytesIO()
        ds.save_as(buf)
        out.append(buf.getvalue())
    return out


def test_replaced_and_restored_in_one_batch_keeps_its_object(tmp_path: Path) -> None:
    """Overwrite policy, A then B then A again in one request: A stays stored and readable."""
    from tests.conftest import make_settings
    from webpacs.ingest import ingest_many
    from webpacs.storage.registry import open_store

    st = open_store(make_settings(tmp_path))
    try:
        a, b = _versions("CT_small.dcm", 2)
        results = ingest_many(st.index, st.blobs, [a, b, a], overwrite=True)
        assert [r.outcome.value for r in results] == ["stored", "replaced", "replaced"]  # type: ignore[union-attr]
        rec = st.index.get(pydicom.dcmread(io.BytesIO(a)).SOPInstanceUID)
        assert rec is not None
        assert pydicom.dcmread(io.BytesIO(st.blobs.get(rec.blob_key))).PatientID == "VERSION0"
        assert list(st.blobs.keys("objects/")) == [rec.blob_key]  # B's object is gone
    finally:
        st.close()


def test_a_batch_that_cannot_commit_stores_none_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index commit of a request fails: every instance reports it, none is visible."""
    from contextlib import contextmanager

    from tests.conftest import make_settings
    from webpacs.ingest import ingest_many
    from webpacs.storage.registry import open_store

    st = open_store(make_settings(tmp_path))
    try:
        real_batch = st.index.batch

        @contextmanager
        def failing_batch():  # type: ignore[no-untyped-def]
            with real_batch():
                yield
                # what a full disk does to the commit, after every put succeeded
                st.index._conn().execute("INSERT INTO no_such_table VALUES (1)")

        monkeypatch.setattr(st.index, "batch", failing_batch)
        parts = [data_file(n).read_bytes() for n in ("CT_small.dcm", "MR_small.dcm")]
        results = ingest_many(st.index, st.blobs, [*parts, StorageError("refused earlier")])
        assert all(isinstance(r, StorageError) for r in results)
        assert str(results[2]) == "refused earlier"
        monkeypatch.undo()
        assert st.index.instances(pydicom.dcmread(data_file("CT_small.dcm")).StudyInstanceUID) == []
        assert st.index.changes() == []
    finally:
        st.close()


def test_the_index_syncs_every_commit(tmp_path: Path) -> None:
    """An acknowledged store survives power loss: SQLite synchronous=FULL, not NORMAL."""
    from tests.conftest import make_settings
    from webpacs.storage.registry import open_store

    st = open_store(make_settings(tmp_path))
    try:
        assert st.index._conn().execute("PRAGMA synchronous").fetchone()[0] == 2  # type: ignore[attr-defined]
    finally:
        st.close()
