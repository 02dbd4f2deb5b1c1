"""The backend contract on the embedded store: SQLite index + file blobs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract import BlobsContract, IndexContract
from webpacs.storage.fs import FileBlobs
from webpacs.storage.sqlite import SqliteIndex


@pytest.fixture
def blobs(tmp_path: Path) -> FileBlobs:
    return FileBlobs(tmp_path / "blobs")


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SqliteIndex]:
    idx = SqliteIndex(tmp_path / "index.sqlite3")
    yield idx
    idx.close()


class TestFileBlobs(BlobsContract):
    pass


class TestSqliteIndex(IndexContract):
    pass
