"""CouchDB calls are counted, not timed: a STOW-RS request costs one call per new
instance plus a bound, and a ``/studies`` page a bound whatever its size."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, start_server
from tests.contract import make_instance
from webpacs.storage.couchdb.http import CouchClient


class Counter:
    """Wraps a ``CouchClient.call`` and counts (method, path) of every call but the
    background deriver's (it rebuilds documents of the series just stored)."""

    def __init__(self, client: CouchClient) -> None:
        self.calls: list[tuple[str, str]] = []
        self._call = client.call

        def call(method: str, path: str, **kw: Any) -> tuple[int, Any]:
            if threading.current_thread().name != "deriver":
                self.calls.append((method, path))
            return self._call(method, path, **kw)

        client.call = call  # type: ignore[method-assign]

    def take(self) -> list[tuple[str, str]]:
        calls, self.calls = self.calls, []
        return calls


@pytest.fixture
def couch(tmp_path: Path, couchdb_section: dict[str, Any]) -> Iterator[RunningServer]:
    srv = start_server(tmp_path / "c", index="couchdb", couchdb=couchdb_section)
    try:
        yield srv
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


def test_stow_is_one_call_per_new_instance(couch: RunningServer) -> None:
    counter = Counter(couch.store.index.client)  # type: ignore[attr-defined]
    client = DICOMwebClient(couch.url)
    for n in (4, 20):
        study = generate_uid()
        datasets = _datasets(study, [generate_uid(), generate_uid()], n)
        counter.take()
        client.store_instances(datasets)
        calls = counter.take()
        puts = [c for c in calls if c[0] == "PUT"]
        assert len(puts) == n, calls  # each new instance: its document, once
        assert len(calls) - n <= 2, calls  # the summaries: one read, one write
        found = client.search_for_series(study)
        assert sorted(int(r["00201209"]["Value"][0]) for r in found) == [n // 2, n // 2]
        # the same request again: duplicates, nothing written, still a bounded cost each
        counter.take()
        client.store_instances(datasets)
        again = counter.take()
        assert not [c for c in again if c[0] == "POST" and c[1] == "_bulk_docs"], again
        assert len(again) <= 2 * n + 2, again


def test_a_studies_page_is_a_bounded_number_of_calls(couch: RunningServer) -> None:
    counter = Counter(couch.store.index.client)  # type: ignore[attr-defined]
    client = DICOMwebClient(couch.url)
    studies = [generate_uid() for _ in range(50)]
    datasets = [d for st in studies for d in _datasets(st, [generate_uid(), generate_uid()], 3)]
    client.store_instances(datasets)
    used = {}
    for size in (5, 50):
        counter.take()
        found = client.search_for_studies(limit=size, fields=["ModalitiesInStudy"])
        used[size] = counter.take()
        assert len(found) == size
        assert {r["0020000D"]["Value"][0] for r in found} <= set(studies)
        assert all(r["00201208"]["Value"] == [3] for r in found)  # instances
        assert all(r["00201206"]["Value"] == [2] for r in found)  # series
        assert all(r["00080061"]["Value"] == ["CT"] for r in found)
    assert len(used[50]) == len(used[5]) <= 6, used
    counter.take()
    series = client.search_for_series(studies[0])
    assert len(counter.take()) <= 4 and sorted(r["00201209"]["Value"][0] for r in series) == [1, 2]
