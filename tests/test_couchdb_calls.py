"""CouchDB calls are counted, not timed, on the wire (a counting proxy in front of
pouchdb-server): what each ingest path asks the database per request and per instance,
and a ``/studies`` page a bound whatever its size.

Floors (README, "Scale-out"): a STOW-RS request or an import batch is one read (the
instances and the series and study summaries they touch) and one ``_bulk_docs`` (the new
instance documents and the summaries), whatever the number of instances; a request of
duplicates is the read alone. A C-STORE, one instance per message, is the same two calls
for a new instance and the read alone for one already stored.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from tests.conftest import RunningServer, start_server
from tests.contract import make_instance
from tests.counting_proxy import CountingProxy, counting
from webpacs.cli.importer import run_import
from webpacs.dimse import start_scp

#: What opening the index asks (the database, its design document, its Mango indexes).
SETUP = {("PUT", ""), ("GET", "_design/webpacs"), ("GET", "_index")}
READ = ("POST", "_all_docs")
WRITE = ("POST", "_bulk_docs")


@pytest.fixture
def counted(
    tmp_path: Path, couchdb_url: str, couchdb_section: dict[str, Any]
) -> Iterator[tuple[RunningServer, CountingProxy]]:
    """A server (and its DIMSE SCP) whose CouchDB calls pass through a counting proxy;
    no deriver (it follows the change feed on its own clock)."""
    with counting(couchdb_url) as proxy:
        section = {**couchdb_section, "url": proxy.url}
        srv = start_server(
            tmp_path / "c", index="couchdb", couchdb=section,
            server={"deriveInterval": 0}, dimse={"port": 0},
        )  # fmt: skip
        try:
            yield srv, proxy
        finally:
            srv.stop()


def _datasets(study: str, series: list[str], n: int) -> list[pydicom.Dataset]:
    out = []
    for i in range(n):
        data = make_instance(
            {"Modality": "CT", "SeriesNumber": 1 + i % len(series), "InstanceNumber": i + 1},
            StudyInstanceUID=study, SeriesInstanceUID=series[i % len(series)],
            SOPInstanceUID=generate_uid(),
        )  # fmt: skip
        out.append(pydicom.dcmread(io.BytesIO(data)))
    return out


def _series_counts(client: DICOMwebClient, study: str) -> list[int]:
    return sorted(int(r["00201209"]["Value"][0]) for r in client.search_for_series(study))


@pytest.mark.parametrize("n", [1, 20])
def test_a_stow_request_is_one_read_and_one_bulk_write(
    counted: tuple[RunningServer, CountingProxy], n: int
) -> None:
    srv, proxy = counted
    client = DICOMwebClient(srv.url)
    study = generate_uid()
    datasets = _datasets(study, [generate_uid(), generate_uid()], n)
    proxy.take()
    client.store_instances(datasets)
    assert proxy.take() == [READ, WRITE]  # whatever n
    assert _series_counts(client, study) == [c for c in sorted([n // 2, n - n // 2]) if c]
    found = client.search_for_studies(search_filters={"StudyInstanceUID": study})
    assert found[0]["00201208"]["Value"] == [n]
    # the same request again: every instance already stored, nothing written
    proxy.take()
    client.store_instances(datasets)
    assert proxy.take() == [READ]


def test_a_stow_request_with_a_conflict_fails_only_that_instance(
    counted: tuple[RunningServer, CountingProxy],
) -> None:
    srv, proxy = counted
    client = DICOMwebClient(srv.url)
    study, series = generate_uid(), generate_uid()
    first = _datasets(study, [series], 3)
    client.store_instances(first[:1])
    changed = pydicom.dcmread(io.BytesIO(make_instance(
        {"Modality": "CT", "SeriesNumber": 1, "InstanceNumber": 9, "PatientName": "Other"},
        StudyInstanceUID=study, SeriesInstanceUID=series,
        SOPInstanceUID=first[0].SOPInstanceUID,
    )))  # fmt: skip
    proxy.take()
    answer = client.store_instances([changed, *first[1:]])
    calls = proxy.take()
    failed = {str(f.ReferencedSOPInstanceUID): f.FailureReason for f in answer.FailedSOPSequence}
    assert failed == {str(first[0].SOPInstanceUID): 0x0111}  # Duplicate SOP Instance, alone
    stored = {str(r.ReferencedSOPInstanceUID) for r in answer.ReferencedSOPSequence}
    assert stored == {str(d.SOPInstanceUID) for d in first[1:]}
    # one read, one write, and the refused copy's object checked unreferenced before it goes
    assert calls == [READ, WRITE, ("GET", str(first[0].SOPInstanceUID))]
    assert _series_counts(client, study) == [3]
    kept = client.retrieve_instance_metadata(study, series, str(first[0].SOPInstanceUID))
    assert kept["00200013"]["Value"] == [1]  # the stored one, not the refused one


def test_c_store_is_two_calls_per_new_instance_and_one_per_duplicate(
    counted: tuple[RunningServer, CountingProxy],
) -> None:
    srv, proxy = counted
    scp = start_scp(srv.settings, srv.store)
    study, series = generate_uid(), generate_uid()
    datasets = _datasets(study, [series], 3)
    try:
        ae = AE()
        ae.add_requested_context(CTImageStorage)
        for expected in ([READ, WRITE], [READ]):  # new, then the same again
            assoc = ae.associate("127.0.0.1", scp.port, ae_title="WEBPACS")
            assert assoc.is_established
            try:
                for ds in datasets:
                    proxy.take()
                    assert assoc.send_c_store(ds).Status == 0x0000
                    assert proxy.take() == expected
            finally:
                assoc.release()
    finally:
        scp.shutdown()
    assert _series_counts(DICOMwebClient(srv.url), study) == [3]


def test_import_is_one_read_and_one_bulk_write_per_batch(
    counted: tuple[RunningServer, CountingProxy], tmp_path: Path
) -> None:
    srv, proxy = counted
    study = generate_uid()
    files = []
    for i, ds in enumerate(_datasets(study, [generate_uid()], 10)):
        files.append(tmp_path / f"{i}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    for expected in ([READ, WRITE], [READ]):  # new, then the same files again
        proxy.take()
        counts = run_import(srv.settings, files, jobs=1, show=False)
        assert sum(counts.values()) == 10
        assert [c for c in proxy.take() if c not in SETUP] == expected
    assert _series_counts(DICOMwebClient(srv.url), study) == [10]


def test_a_studies_page_is_a_bounded_number_of_calls(
    counted: tuple[RunningServer, CountingProxy],
) -> None:
    srv, proxy = counted
    client = DICOMwebClient(srv.url)
    studies = [generate_uid() for _ in range(50)]
    datasets = [d for st in studies for d in _datasets(st, [generate_uid(), generate_uid()], 3)]
    client.store_instances(datasets)
    used = {}
    for size in (5, 50):
        proxy.take()
        found = client.search_for_studies(limit=size, fields=["ModalitiesInStudy"])
        used[size] = proxy.take()
        assert len(found) == size
        assert {r["0020000D"]["Value"][0] for r in found} <= set(studies)
        assert all(r["00201208"]["Value"] == [3] for r in found)  # instances
        assert all(r["00201206"]["Value"] == [2] for r in found)  # series
        assert all(r["00080061"]["Value"] == ["CT"] for r in found)
    assert len(used[50]) == len(used[5]) <= 6, used
    proxy.take()
    series = client.search_for_series(studies[0])
    assert len(proxy.take()) <= 4 and sorted(r["00201209"]["Value"][0] for r in series) == [1, 2]
