"""Several nodes over one CouchDB (or one PostgreSQL) + one bucket, and two replicating
CouchDB databases.

Servers are real (``start_server``), the CouchDB is pouchdb-server, S3 is moto. The
replicated databases live on one pouchdb-server; CouchDB replication between two
servers works the same way (``_replicate`` with full URLs).
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, drop_couchdb, new_couchdb_section, start_server
from tests.contract import make_instance


def dataset(study: str, series: str, number: int) -> pydicom.Dataset:
    data = make_instance(
        {"Modality": "CT", "SeriesNumber": 1, "InstanceNumber": number},
        StudyInstanceUID=study,
        SeriesInstanceUID=series,
        SOPInstanceUID=generate_uid(),
    )
    return pydicom.dcmread(io.BytesIO(data))


def node(tmp_path: Path, name: str, couchdb: dict[str, Any], s3: dict[str, Any]) -> RunningServer:
    return start_server(tmp_path / name, index="couchdb", couchdb=couchdb, blobs="s3", s3=s3)


def metadata(srv: RunningServer, study: str, series: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{srv.url}/studies/{study}/series/{series}/metadata", timeout=30)
    r.raise_for_status()
    body: list[dict[str, Any]] = r.json()
    return sorted(body, key=lambda m: m["00080018"]["Value"][0])


def instance_count(srv: RunningServer, study: str) -> int:
    r = httpx.get(f"{srv.url}/studies", params={"StudyInstanceUID": study}, timeout=30)
    r.raise_for_status()
    rows = r.json() if r.content else []
    return int(rows[0]["00201208"]["Value"][0]) if rows else 0


def eventually(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("did not converge in time")
        time.sleep(0.2)


@pytest.fixture
def two_nodes(
    tmp_path: Path, couchdb_section: dict[str, Any], s3_section: dict[str, Any]
) -> Iterator[tuple[RunningServer, RunningServer]]:
    a = node(tmp_path, "a", couchdb_section, s3_section)
    b = node(tmp_path, "b", couchdb_section, s3_section)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


@pytest.fixture
def two_pg_nodes(
    tmp_path: Path, postgresql_url: str, s3_section: dict[str, Any]
) -> Iterator[tuple[RunningServer, RunningServer]]:
    pg = {"url": postgresql_url, "poolSize": 4}
    a = start_server(tmp_path / "a", index="postgresql", postgresql=pg, blobs="s3", s3=s3_section)
    b = start_server(tmp_path / "b", index="postgresql", postgresql=pg, blobs="s3", s3=s3_section)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_two_nodes_share_one_database_and_bucket(
    two_nodes: tuple[RunningServer, RunningServer],
) -> None:
    share_one_index_and_bucket(*two_nodes)


def test_two_postgresql_nodes_share_one_database_and_bucket(
    two_pg_nodes: tuple[RunningServer, RunningServer],
) -> None:
    share_one_index_and_bucket(*two_pg_nodes)


def share_one_index_and_bucket(a: RunningServer, b: RunningServer) -> None:
    study, series = generate_uid(), generate_uid()
    first = dataset(study, series, 1)
    DICOMwebClient(a.url).store_instances([first])
    # at once, through the other node: the instance, its metadata and its query row
    got = DICOMwebClient(b.url).retrieve_instance(study, series, first.SOPInstanceUID)
    assert got.SOPInstanceUID == first.SOPInstanceUID
    assert got.PixelData == first.PixelData if "PixelData" in first else True
    assert instance_count(b, study) == 1

    # concurrent STOW to the same series from both nodes
    errors: list[BaseException] = []

    def stow(srv: RunningServer, start: int) -> None:
        try:
            client = DICOMwebClient(srv.url)
            for n in range(start, start + 10):
                client.store_instances([dataset(study, series, n)])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=stow, args=(s, n)) for s, n in ((a, 100), (b, 200))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert instance_count(a, study) == instance_count(b, study) == 21
    meta_a, meta_b = metadata(a, study, series), metadata(b, study, series)
    assert len(meta_a) == 21 and meta_a == meta_b


def _replicate(url: str, source: str, target: str, *, continuous: bool) -> None:
    body = {"source": source, "target": target, "continuous": continuous}
    r = httpx.post(f"{url}/_replicate", json=body, timeout=60)
    assert r.status_code in (200, 201, 202), r.text


@pytest.fixture
def two_sites(
    tmp_path: Path, couchdb_url: str, s3_section: dict[str, Any]
) -> Iterator[tuple[RunningServer, RunningServer, tuple[str, str]]]:
    """Two nodes, each on its own database (which it creates); the bucket is shared."""
    left, right = new_couchdb_section(couchdb_url), new_couchdb_section(couchdb_url)
    a = node(tmp_path, "a", left, s3_section)
    b = node(tmp_path, "b", right, s3_section)
    try:
        yield a, b, (f"{couchdb_url}/{left['database']}", f"{couchdb_url}/{right['database']}")
    finally:
        a.stop()
        b.stop()
        drop_couchdb(left)
        drop_couchdb(right)


def test_continuous_replication_both_ways(
    couchdb_url: str, two_sites: tuple[RunningServer, RunningServer, tuple[str, str]]
) -> None:
    a, b, (da, db) = two_sites
    _replicate(couchdb_url, da, db, continuous=True)
    _replicate(couchdb_url, db, da, continuous=True)
    study, series = generate_uid(), generate_uid()
    DICOMwebClient(a.url).store_instances([dataset(study, series, 1)])
    DICOMwebClient(b.url).store_instances([dataset(study, series, 2)])
    eventually(lambda: instance_count(a, study) == instance_count(b, study) == 2)
    eventually(lambda: len(metadata(a, study, series)) == len(metadata(b, study, series)) == 2)
    assert metadata(a, study, series) == metadata(b, study, series)


def test_partitioned_sites_converge_when_replication_resumes(
    couchdb_url: str, two_sites: tuple[RunningServer, RunningServer, tuple[str, str]]
) -> None:
    """Replication here is one-shot ``_replicate`` runs: not running one is the partition.

    (pouchdb-server ignores ``cancel`` of a continuous replication and crashes when a
    ``_replicator`` document is deleted, so a continuous one cannot be interrupted.)
    """
    a, b, (da, db) = two_sites

    def sync() -> None:
        _replicate(couchdb_url, da, db, continuous=False)
        _replicate(couchdb_url, db, da, continuous=False)

    study, series = generate_uid(), generate_uid()
    DICOMwebClient(a.url).store_instances([dataset(study, series, 1)])
    DICOMwebClient(b.url).store_instances([dataset(study, series, 2)])
    sync()
    assert instance_count(a, study) == instance_count(b, study) == 2
    before = metadata(a, study, series)
    assert before == metadata(b, study, series)

    # partition: both sides keep storing into the same series
    DICOMwebClient(a.url).store_instances([dataset(study, series, n) for n in range(10, 15)])
    DICOMwebClient(b.url).store_instances([dataset(study, series, n) for n in range(20, 23)])
    assert instance_count(a, study) == 7
    assert instance_count(b, study) == 5
    assert len(metadata(a, study, series)) == 7  # each side's derived documents are rebuilt

    # healed: both sides converge, nothing stored during the partition is lost
    sync()
    assert instance_count(a, study) == instance_count(b, study) == 10
    meta_a, meta_b = metadata(a, study, series), metadata(b, study, series)
    assert len(meta_a) == 10 and meta_a == meta_b
    numbers = sorted(m["00200013"]["Value"][0] for m in meta_a)
    assert numbers == [1, 2, 10, 11, 12, 13, 14, 20, 21, 22]
    # the summaries both sides wrote during the partition were merged, not duplicated
    series_rows = httpx.get(f"{b.url}/studies/{study}/series", timeout=30).json()
    assert [r["00201209"]["Value"][0] for r in series_rows] == [10]
    # a write after the merge still lands on both sides
    DICOMwebClient(b.url).store_instances([dataset(study, series, 30)])
    sync()
    assert instance_count(a, study) == instance_count(b, study) == 11
