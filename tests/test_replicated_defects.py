"""Two replicated CouchDB sites that both stored the same SOP Instance UID before a
replication: the conflicting revision replication leaves must not outlive a DELETE, and
no WADO response may start before its object is known to exist."""

from __future__ import annotations

import io

import httpx
import pydicom
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid

from tests.conftest import RunningServer
from tests.contract import make_instance
from tests.test_scaleout import _replicate, two_sites  # noqa: F401 (a fixture)

Sites = tuple[RunningServer, RunningServer, tuple[str, str]]


def _same_sop_on_both(couchdb_url: str, sites: Sites) -> tuple[str, str, str]:
    """One SOP Instance UID stored on each site with other content, then replicated."""
    a, b, (da, db) = sites
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    for srv, number in ((a, 1), (b, 2)):
        data = make_instance(
            {"Modality": "CT", "SeriesNumber": 1, "InstanceNumber": number},
            StudyInstanceUID=study, SeriesInstanceUID=series, SOPInstanceUID=sop,
        )  # fmt: skip
        DICOMwebClient(srv.url).store_instances([pydicom.dcmread(io.BytesIO(data))])
    _replicate(couchdb_url, da, db, continuous=False)
    _replicate(couchdb_url, db, da, continuous=False)
    return study, series, sop


def test_delete_removes_every_revision(couchdb_url: str, two_sites: Sites) -> None:  # noqa: F811
    a, b, (da, db) = two_sites
    study, series, sop = _same_sop_on_both(couchdb_url, two_sites)
    conflicts = httpx.get(f"{da}/{sop}", params={"conflicts": "true"}, timeout=30).json()
    assert conflicts.get("_conflicts"), "the test needs a conflicting revision"
    url = f"{a.url}/studies/{study}/series/{series}/instances/{sop}"
    assert httpx.delete(url, timeout=30).status_code == 204
    assert httpx.get(f"{url}/metadata", timeout=30).status_code == 404
    assert httpx.get(f"{a.url}/studies", params={"StudyInstanceUID": study}).json() == []
    _replicate(couchdb_url, da, db, continuous=False)
    assert httpx.get(f"{b.url}/studies/{study}/series/{series}/instances/{sop}/metadata",
                     timeout=30).status_code == 404  # fmt: skip
    assert httpx.get(f"{db}/{sop}", timeout=30).status_code == 404


def test_index_ahead_of_its_bucket_is_a_clean_503(
    couchdb_url: str,
    two_sites: Sites,  # noqa: F811
) -> None:
    """The index replicated to site b before the object did: b answers 503 with the
    reason (the connection stays usable), and 200 once the object arrives."""
    a, b, (da, db) = two_sites
    study, series = generate_uid(), generate_uid()
    datasets = []
    for number in range(1, 6):  # more than are checked one by one: a listing
        data = make_instance(
            {"Modality": "CT", "SeriesNumber": 1, "InstanceNumber": number},
            StudyInstanceUID=study, SeriesInstanceUID=series, SOPInstanceUID=generate_uid(),
        )  # fmt: skip
        datasets.append(pydicom.dcmread(io.BytesIO(data)))
    DICOMwebClient(a.url).store_instances(datasets)
    sop = str(datasets[3].SOPInstanceUID)
    rec = a.store.index.get(sop)
    assert rec is not None
    body = a.store.blobs.get(rec.blob_key)
    a.store.blobs.delete(rec.blob_key)  # the bucket has not caught up yet
    _replicate(couchdb_url, da, db, continuous=False)
    accept = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    url = f"{b.url}/studies/{study}/series/{series}"
    with httpx.Client(timeout=30) as c:
        for target in (url, f"{url}/instances/{sop}"):
            r = c.get(target, headers=accept)
            assert r.status_code == 503 and sop in r.json()["error"], r.text
        a.store.blobs.put(rec.blob_key, body)  # it arrives
        r = c.get(url, headers=accept)
        assert r.status_code == 200 and r.content.count(b"application/dicom") >= 5
