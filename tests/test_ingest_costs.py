"""What keeps ingest cheap: the deriver yields to it (a series still changing waits for its
rebuild, one process per data directory rebuilds), and the research value entries are
computed by prepare, outside the index's write lock."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from webpacs.documents import deriver as deriver_module
from webpacs.documents.deriver import Deriver
from webpacs.ingest import IngestResult, ingest
from webpacs.storage.fs import FileBlobs
from webpacs.storage.sqlite import SqliteIndex


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[SqliteIndex, FileBlobs]]:
    index = SqliteIndex(tmp_path / "index.sqlite3")
    try:
        yield index, FileBlobs(tmp_path / "blobs")
    finally:
        index.close()


def _store_one(index: SqliteIndex, blobs: FileBlobs) -> IngestResult:
    path = get_testdata_file("MR_small.dcm")
    assert path is not None
    return ingest(index, blobs, Path(path).read_bytes())


def _thumbnails(blobs: FileBlobs, r: IngestResult) -> list[str]:
    keys = blobs.keys(f"derived/{r.study_uid}/{r.series_uid}/")
    return [k for k in keys if k.endswith("-thumbnail.jpg")]


def test_a_series_that_just_changed_waits_until_it_is_quiet(
    store: tuple[SqliteIndex, FileBlobs],
) -> None:
    index, blobs = store
    d = Deriver(index, blobs, interval=3600)
    r = _store_one(index, blobs)
    assert d.run_once(quiet=60) == 1  # the change is read...
    assert _thumbnails(blobs, r) == []  # ...but its series changed just now: not rebuilt
    assert d.run_once(quiet=60) == 0
    assert _thumbnails(blobs, r) == []
    d.run_once(quiet=0)  # quiet long enough: rebuilt, with no new change to read
    assert len(_thumbnails(blobs, r)) == 1


def test_a_series_that_keeps_changing_is_rebuilt_after_max_delay(
    store: tuple[SqliteIndex, FileBlobs], monkeypatch: pytest.MonkeyPatch
) -> None:
    index, blobs = store
    monkeypatch.setattr(deriver_module, "MAX_DELAY", 0.0)
    d = Deriver(index, blobs, interval=3600)
    r = _store_one(index, blobs)
    d.run_once(quiet=60)
    assert len(_thumbnails(blobs, r)) == 1


def test_one_deriver_per_lock_rebuilds_and_another_takes_over(
    store: tuple[SqliteIndex, FileBlobs], tmp_path: Path
) -> None:
    index, blobs = store
    lock = tmp_path / "deriver.lock"
    first = Deriver(index, blobs, interval=3600, lock_path=lock)
    second = Deriver(index, blobs, interval=3600, lock_path=lock)
    try:
        assert first._leading()
        assert not second._leading()
        assert first._leading()  # held, not taken again
        first.stop()  # releases the lock
        assert second._leading()
    finally:
        first.stop()
        second.stop()


def test_a_follower_reads_the_feed_without_rebuilding(
    store: tuple[SqliteIndex, FileBlobs], tmp_path: Path
) -> None:
    index, blobs = store
    lock = tmp_path / "deriver.lock"
    leader = Deriver(index, blobs, interval=0.05, lock_path=lock)
    assert leader._leading()
    follower = Deriver(index, blobs, interval=0.05, lock_path=lock)
    follower.start()
    try:
        r = _store_one(index, blobs)
        for _ in range(200):
            if follower.seq > 0:
                break
            follower._stop.wait(0.05)
        assert follower.seq > 0  # it followed the change feed
        assert _thumbnails(blobs, r) == []  # and left the rebuild to the leader
    finally:
        follower.stop()
        leader.stop()


def test_value_rows_come_from_the_entries_prepare_computed(
    store: tuple[SqliteIndex, FileBlobs],
) -> None:
    """``prepare`` computes the research value entries (outside the index's write lock) and
    the commit writes exactly those."""
    import dataclasses

    import orjson

    from webpacs.core import anyattr
    from webpacs.ingest import commit_many, prepare

    index, blobs = store
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    p = prepare(Path(path).read_bytes(), blobs)
    values = p.record.values
    assert values is not None and len(values) > 10
    assert list(values) == anyattr.entries(orjson.loads(p.record.metadata))
    p.record = dataclasses.replace(p.record, values=values[:3])
    [r] = commit_many(index, blobs, [p], overwrite=False)
    assert isinstance(r, IngestResult)
    db = index._conn()
    assert db.execute("SELECT count(*) FROM attr_values").fetchone()[0] == 3


def test_a_batch_counts_each_series_once_at_its_end(
    store: tuple[SqliteIndex, FileBlobs],
) -> None:
    """Series and study counts are recomputed once per series of a batch (not per
    instance), before the commit, and come out right."""
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    from webpacs.ingest import ingest_many

    index, blobs = store
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    ds = dcmread(path)
    datas = []
    for _ in range(3):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        buf = io.BytesIO()
        ds.save_as(buf)
        datas.append(buf.getvalue())
    counted: list[str] = []
    db = index._conn()  # this thread's connection: the one ingest_many writes on
    db.set_trace_callback(counted.append)
    try:
        results = ingest_many(index, blobs, datas)
    finally:
        db.set_trace_callback(None)
    assert all(isinstance(r, IngestResult) for r in results)
    recounts = [s for s in counted if s.startswith("SELECT count(*) FROM instances")]
    assert len(recounts) == 1, recounts
    row = db.execute(
        "SELECT num_instances FROM series WHERE series_uid = ?", (ds.SeriesInstanceUID,)
    ).fetchone()
    assert row[0] == 3
    row = db.execute(
        "SELECT num_series, num_instances FROM studies WHERE study_uid = ?",
        (ds.StudyInstanceUID,),
    ).fetchone()
    assert tuple(row) == (1, 3)
