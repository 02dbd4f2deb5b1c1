"""No WADO response starts before each object it streams is known to exist: an object
missing behind the index's back (lost, or a bucket that replicates behind its index) is a
clean ``503`` with the reason, logged for ``webpacs check``, never a body broken off."""

from __future__ import annotations

import logging

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, data_file

ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def _store_series(srv: RunningServer, n: int) -> tuple[str, str, list[str]]:
    study, series = generate_uid(), generate_uid()
    datasets = []
    for i in range(n):
        ds = pydicom.dcmread(data_file("CT_small.dcm"))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        datasets.append(ds)
    DICOMwebClient(srv.url).store_instances(datasets)
    return study, series, [str(ds.SOPInstanceUID) for ds in datasets]


def test_missing_object_is_a_clean_503(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    study, series, sops = _store_series(server, 6)
    lost = server.store.index.get(sops[2])
    assert lost is not None
    server.store.blobs.delete(lost.blob_key)  # behind the index's back
    base = f"{server.url}/studies/{study}/series/{series}"
    inst = f"{base}/instances/{sops[2]}"
    asks = [
        (base, ACCEPT_DICOM),  # more objects than are checked one by one: a listing
        (inst, ACCEPT_DICOM),
        (f"{server.url}/studies/{study}", ACCEPT_DICOM),
        (base, "application/zip"),
        (f"{inst}/frames/1", "multipart/related; type=application/octet-stream"),
        (f"{inst}/bulkdata/7FE00010", "multipart/related; type=application/octet-stream"),
    ]
    with caplog.at_level(logging.WARNING, "webpacs.integrity"), httpx.Client(timeout=30) as c:
        for url, accept in asks:
            r = c.get(url, headers={"Accept": accept})
            assert r.status_code == 503, (url, r.status_code)
            assert sops[2] in r.json()["error"] and "missing" in r.json()["error"]
        # the same connection still serves what is stored, whole
        ok = c.get(f"{base}/instances/{sops[0]}", headers={"Accept": ACCEPT_DICOM})
        assert ok.status_code == 200
        assert len(ok.content) > 0 and ok.content.rstrip().endswith(b"--")
    logged = [r for r in caplog.records if r.name == "webpacs.integrity"]
    assert len(logged) == len(asks) and all(
        lost.blob_key in r.getMessage() and "webpacs check" in r.getMessage() for r in logged
    )
