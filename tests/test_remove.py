"""The one delete path (``webpacs.remove``): every caller leaves nothing of what it removed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import data_file
from webpacs.documents import metadata
from webpacs.ingest import ingest
from webpacs.proxy.cache import CachedSeries, ProxyCache
from webpacs.remove import remove
from webpacs.storage.fs import FileBlobs
from webpacs.storage.registry import Store
from webpacs.storage.sqlite import SqliteIndex


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    st = Store(SqliteIndex(tmp_path / "index.sqlite3"), FileBlobs(tmp_path / "blobs"))
    yield st
    st.close()


def _stored_with_documents(store: Store) -> tuple[str, str]:
    result = ingest(
        store.index, store.blobs, data_file("CT_small.dcm").read_bytes(), overwrite=False
    )
    study, series = result.study_uid, result.series_uid
    metadata.study_metadata_gz(store.index, store.blobs, study, "http://x/dicomweb")
    assert list(store.blobs.keys(f"derived/{study}/study-"))
    assert list(store.blobs.keys(f"derived/{study}/{series}/"))
    return study, series


def _left(store: Store, study: str) -> list[str]:
    return [*store.blobs.keys("objects/"), *store.blobs.keys(f"derived/{study}/")]


def test_remove_leaves_no_object_or_document(store: Store) -> None:
    study, _ = _stored_with_documents(store)
    removed = remove(store, study)
    assert len(removed) == 1 and not store.index.instances(study)
    assert _left(store, study) == []
    assert [c.op for c in store.index.changes()] == ["put", "delete"]


def test_proxy_eviction_goes_through_the_same_path(store: Store, tmp_path: Path) -> None:
    study, series = _stored_with_documents(store)
    cache = ProxyCache(tmp_path / "proxy.sqlite3")
    try:
        cache.record(store.index.instances(study))
        assert cache.remove(store, CachedSeries(study, series, 0.0, 0)) == 1
    finally:
        cache.close()
    # the study's derived documents go too (the proxy's own copy of deletion skipped them)
    assert _left(store, study) == []
