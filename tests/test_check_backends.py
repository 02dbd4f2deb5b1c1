"""``webpacs check`` / ``--repair`` on the scale-out backends: CouchDB + S3, PostgreSQL + files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.static_support import ct_series
from tests.test_contract_couchdb_files import open_index
from tests.test_contract_sqlite_s3 import open_blobs
from webpacs.documents import metadata
from webpacs.ingest import ingest, prepare
from webpacs.integrity.repair import repair
from webpacs.integrity.walk import check
from webpacs.storage.fs import FileBlobs
from webpacs.storage.registry import Store

BASE = "http://viewer.example/dicomweb"


@pytest.fixture(params=["couchdb+s3", "postgresql+files"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "couchdb+s3":
        couch: dict[str, Any] = request.getfixturevalue("couchdb_section")
        s3: dict[str, Any] = request.getfixturevalue("s3_section")
        st = Store(open_index(couch), open_blobs(s3))
    else:
        from webpacs.storage.postgresql.index import PgIndex

        url: str = request.getfixturevalue("postgresql_url")
        st = Store(PgIndex(url), FileBlobs(tmp_path / "blobs"))
    yield st
    st.close()


def test_check_and_repair(store: Store) -> None:
    index, blobs = store.index, store.blobs
    series = ct_series(4)
    results = [ingest(index, blobs, d) for d in series[:3]]
    study, series_uid = results[0].study_uid, results[0].series_uid
    recs = [index.get(r.sop_uid) for r in results]
    assert all(recs)
    metadata.series_metadata_gz(index, blobs, study, series_uid, BASE)
    old_doc = set(blobs.keys("derived/"))
    ingest(index, blobs, series[3])  # the series moves on: its document is stale
    gone, broken = recs[0], recs[1]
    assert gone is not None and broken is not None
    blobs.delete(gone.blob_key)
    blobs.put(broken.blob_key, blobs.get(broken.blob_key)[:-100])
    leftover = prepare(ct_series(1)[0], blobs).record.blob_key  # written, never committed

    report = check(store, grace_seconds=0)
    by_kind = {k: sorted(f.key for f in report.findings if f.kind == k) for k in report.counts()}
    assert by_kind["missing"] == [gone.blob_key]
    assert by_kind["damaged"] == [broken.blob_key]
    assert by_kind["unreferenced"] == [leftover]
    assert by_kind["stale"] == sorted(old_doc) and by_kind["unindexed"] == []
    assert report.instances == 4 and report.exit_status == 1

    repair(store, report)
    assert not blobs.exists(leftover) and not set(blobs.keys("derived/")) & old_doc
    version = index.series_version(study, series_uid)
    assert f"derived/{study}/{series_uid}/{version}-{metadata.base_tag(BASE)}.json.gz" in set(
        blobs.keys("derived/")
    )
    after = check(store, grace_seconds=0)
    assert sorted(f.kind.value for f in after.findings) == ["damaged", "missing"]
    assert after.exit_status == 1
