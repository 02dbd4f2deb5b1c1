"""The backend contract on SQLite + S3 blobs (moto's S3 server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract import BlobsContract, IndexContract
from webpacs.errors import NotFound
from webpacs.storage.s3 import S3Blobs
from webpacs.storage.sqlite import SqliteIndex


def open_blobs(section: dict[str, Any]) -> S3Blobs:
    return S3Blobs(
        section["bucket"],
        section["prefix"],
        endpoint_url=section["endpointUrl"],
        region=section["region"],
        access_key_id=section["accessKeyId"],
        secret_access_key=section["secretAccessKey"],
    )


@pytest.fixture
def blobs(s3_section: dict[str, Any]) -> S3Blobs:
    return open_blobs(s3_section)


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SqliteIndex]:
    idx = SqliteIndex(tmp_path / "index.sqlite3")
    yield idx
    idx.close()


class TestS3Blobs(BlobsContract):
    def test_prefix_and_ranges(self, blobs: S3Blobs) -> None:
        blobs.put("x/y", b"abcdef")
        assert list(blobs.keys("x/")) == ["x/y"]  # without the bucket prefix
        assert blobs.get_range("x/y", 4, 100) == b"ef"
        assert blobs.get_range("x/y", 10, 5) == b""
        assert blobs.local_path("x/y") is None
        with pytest.raises(NotFound):
            blobs.size("nope")
        with pytest.raises(NotFound):
            blobs.open("nope")


class TestSqliteIndexS3Blobs(IndexContract):
    pass
