"""Duplicates by meaning: the same data set again is "already stored", whatever its bytes.

A SOP Instance stored by STOW-RS and sent again by dcmtk's storescu, or sent again in
another transfer syntax (pydicom ships the same image in several), succeeds and writes
nothing; a real difference (one attribute value, one pixel) is still a conflict.
"""

from __future__ import annotations

import hashlib
import io
import logging
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.uid import RLELossless

from tests.conftest import RunningServer, data_file, require_binary, start_server
from webpacs.core import part10
from webpacs.core.multipart import iter_multipart
from webpacs.dimse import ScpHandle, start_scp
from webpacs.ingest import ingest
from webpacs.storage.base import Outcome

#: The same instance in several transfer syntaxes (pydicom's test files): the first is
#: stored, each other one is then "already stored".
FAMILIES = {
    "MR_small.dcm": [
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_implicit.dcm",
        "MR_small_padded.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
    ],
    "MR_small_jpeg_ls_lossless.dcm": ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm"],
    "emri_small.dcm": [
        "emri_small_big_endian.dcm",
        "emri_small_jpeg_ls_lossless.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
        "emri_small_RLE.dcm",
    ],
    "SC_rgb.dcm": ["SC_rgb_expb.dcm", "SC_rgb_rle.dcm", "SC_rgb_jpeg_gdcm.dcm"],
    "color-px.dcm": ["color-pl.dcm"],  # planar configuration 0 and 1
    "rtdose.dcm": ["rtdose_expb.dcm", "rtdose_rle.dcm"],
}

DICOM_TYPE = 'multipart/related; type="application/dicom"; boundary=XyZ'


def stow(srv: RunningServer, data: bytes) -> requests.Response:
    body = b"".join(iter_multipart([({"Content-Type": "application/dicom"}, [data])], "XyZ"))
    return requests.post(
        f"{srv.url}/studies", data=body, headers={"Content-Type": DICOM_TYPE}, timeout=60
    )


def referenced(r: requests.Response) -> list[str]:
    body = r.json()
    return [i["00081155"]["Value"][0] for i in body.get("00081199", {}).get("Value", [])]


def failed(r: requests.Response) -> list[int]:
    body = r.json()
    return [i["00081197"]["Value"][0] for i in body.get("00081198", {}).get("Value", [])]


def objects(srv: RunningServer) -> list[str]:
    return sorted(srv.store.blobs.keys("objects/"))


def feed(srv: RunningServer) -> int:
    return len(srv.store.index.changes(0, 100_000))


def save(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[RunningServer]:
    s = start_server(tmp_path / "data", dimse={"port": 0})  # the SCP is started by a test
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize("first", list(FAMILIES))
def test_same_instance_in_other_transfer_syntaxes(
    srv: RunningServer, first: str, caplog: pytest.LogCaptureFixture
) -> None:
    original = pydicom.dcmread(data_file(first))
    sop = original.SOPInstanceUID
    r = stow(srv, data_file(first).read_bytes())
    assert r.status_code == 200 and referenced(r) == [sop], r.text
    stored = srv.store.index.get(sop)
    assert stored is not None
    before, changes = objects(srv), feed(srv)
    for other in FAMILIES[first]:
        copy = data_file(other)
        assert pydicom.dcmread(copy).SOPInstanceUID == sop
        with caplog.at_level(logging.INFO, "webpacs.ingest"):
            r = stow(srv, copy.read_bytes())
        # "already stored": 200, the instance in ReferencedSOPSequence, no failure
        assert (r.status_code, referenced(r), failed(r)) == (200, [sop], []), (other, r.text)
        assert objects(srv) == before, other  # nothing written (nor left behind)
        assert feed(srv) == changes, other
        now = srv.store.index.get(sop)
        assert now is not None and now.blob_key == stored.blob_key
        assert now.transfer_syntax == stored.transfer_syntax
        assert f"instance {sop} is already stored" in caplog.text
        caplog.clear()


def test_real_differences_are_conflicts(srv: RunningServer) -> None:
    path = data_file("MR_small.dcm")
    assert stow(srv, path.read_bytes()).status_code == 200
    before = objects(srv)
    # one attribute value
    ds = pydicom.dcmread(path)
    ds.SeriesDescription = "another description"
    r = stow(srv, save(ds))
    assert (r.status_code, failed(r)) == (409, [0x0111]), r.text
    assert "different content" in r.headers["Warning"]
    # one pixel, in a lossless copy: different once decoded
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array.copy()
    arr[10, 10] += 1
    ds.compress(RLELossless, arr, generate_instance_uid=False)
    r = stow(srv, save(ds))
    assert (r.status_code, failed(r)) == (409, [0x0111]), r.text
    # the same pixels, one attribute changed, in another syntax
    ds = pydicom.dcmread(data_file("MR_small_RLE.dcm"))
    ds.InstanceNumber = 99
    r = stow(srv, save(ds))
    assert (r.status_code, failed(r)) == (409, [0x0111]), r.text
    assert objects(srv) == before  # the refused copies were not kept


def test_overwrite_policy_keeps_an_equivalent_copy(tmp_path: Path) -> None:
    s = start_server(tmp_path / "data", ingest={"conflict": "overwrite"})
    try:
        sop = pydicom.dcmread(data_file("MR_small.dcm")).SOPInstanceUID
        assert stow(s, data_file("MR_small.dcm").read_bytes()).status_code == 200
        before, changes = objects(s), feed(s)
        r = stow(s, data_file("MR_small_RLE.dcm").read_bytes())
        assert (r.status_code, referenced(r)) == (200, [sop])
        assert (objects(s), feed(s)) == (before, changes)  # not replaced by its twin
        ds = pydicom.dcmread(data_file("MR_small_RLE.dcm"))
        ds.SeriesDescription = "corrected"
        assert stow(s, save(ds)).status_code == 200
        rec = s.store.index.get(sop)
        assert rec is not None and rec.transfer_syntax == RLELossless  # a real change: replaced
        assert objects(s) != before and feed(s) > changes
    finally:
        s.stop()


# --------------------------------------------------------------------------- storescu
#: Files STOW'd by dicomweb-client, then sent again by storescu (options: what to propose).
RESENT = [
    ("CT_small.dcm", []),  # ends in Data Set Trailing Padding, which storescu drops
    ("MR_small.dcm", []),
    ("emri_small.dcm", []),
    ("rtplan.dcm", []),
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", ["-xs"]),
]


@pytest.fixture
def with_scp(srv: RunningServer) -> Iterator[tuple[RunningServer, ScpHandle]]:
    handle = start_scp(srv.settings, srv.store)
    try:
        yield srv, handle
    finally:
        handle.shutdown()


def test_storescu_resends_what_stow_stored(
    with_scp: tuple[RunningServer, ScpHandle], caplog: pytest.LogCaptureFixture
) -> None:
    storescu = require_binary("storescu")
    srv, scp = with_scp
    datasets = [pydicom.dcmread(data_file(name)) for name, _ in RESENT]
    DICOMwebClient(srv.url).store_instances(datasets)
    before, changes = objects(srv), feed(srv)
    assert len(before) == len(RESENT)
    for (name, option), ds in zip(RESENT, datasets, strict=True):
        with caplog.at_level(logging.INFO, "webpacs.ingest"):
            r = subprocess.run(
                [storescu, "-v", *option, "-aec", "WEBPACS", "127.0.0.1", str(scp.port)]
                + [str(data_file(name))],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        out = r.stdout + r.stderr
        assert r.returncode == 0, out
        assert "Received Store Response (Success)" in out, (name, out)
        assert f"instance {ds.SOPInstanceUID} is already stored" in caplog.text, name
        caplog.clear()
    assert objects(srv) == before  # nothing new written
    assert feed(srv) == changes


# --------------------------------------------------------------------------- old records
def test_records_written_before_meaning_digests(srv: RunningServer) -> None:
    """A record from before (its digest the sha256 of the stored bytes, no sha256 in its
    frame map) meets copies of its instance: compared by meaning all the same."""
    path = data_file("CT_small.dcm")
    first = ingest(srv.store.index, srv.store.blobs, path.read_bytes())
    rec = srv.store.index.get(first.sop_uid)
    assert rec is not None and rec.digest.startswith("m1:")
    data = srv.store.blobs.get(rec.blob_key)
    byte_digest = hashlib.sha256(data[part10.skip_meta(data, 132) :]).hexdigest()
    assert rec.object_digest == byte_digest  # what an integrity check verifies
    old_map: dict[str, Any] = {k: v for k, v in rec.framemap.items() if k != "sha256"}
    with sqlite3.connect(srv.store.index.path) as db:  # type: ignore[attr-defined]
        db.execute(
            "UPDATE instances SET digest = ?, framemap = ? WHERE sop_uid = ?",
            (byte_digest, orjson.dumps(old_map), rec.sop_uid),
        )
    old = srv.store.index.get(rec.sop_uid)
    assert old is not None and old.digest == byte_digest and old.object_digest == byte_digest
    before = objects(srv)
    # the same bytes, then the data set without its trailing padding
    assert ingest(srv.store.index, srv.store.blobs, path.read_bytes()).outcome is Outcome.DUPLICATE
    ds = pydicom.dcmread(path)
    del ds[0xFFFCFFFC]
    again = ingest(srv.store.index, srv.store.blobs, save(ds))
    assert again.outcome is Outcome.DUPLICATE
    assert objects(srv) == before
    ds.PatientName = "Other^Name"
    with pytest.raises(Exception, match="different content"):
        ingest(srv.store.index, srv.store.blobs, save(ds))
