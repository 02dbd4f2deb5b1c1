"""The backend contract on the scale-out pair: CouchDB (pouchdb-server) + S3 (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.contract import IndexContract
from tests.test_contract_couchdb_files import open_index
from tests.test_contract_sqlite_s3 import open_blobs
from webpacs.storage.couchdb import CouchIndex
from webpacs.storage.s3 import S3Blobs


@pytest.fixture
def blobs(s3_section: dict[str, Any]) -> S3Blobs:
    return open_blobs(s3_section)


@pytest.fixture
def index(couchdb_section: dict[str, Any]) -> Iterator[CouchIndex]:
    idx = open_index(couchdb_section, allow_scan=True)  # see test_contract_couchdb_files
    yield idx
    idx.close()


class TestCouchIndexS3Blobs(IndexContract):
    pass
