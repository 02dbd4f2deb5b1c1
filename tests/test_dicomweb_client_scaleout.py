"""The dicomweb-client end-to-end tests, unchanged, against a couchdb+s3 deployment.

The test functions are those of ``test_dicomweb_client``; only the ``module_server``
and ``server`` fixtures differ: their servers use a CouchDB index (pouchdb-server) and
S3 blobs (moto) instead of the embedded store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    RunningServer,
    drop_couchdb,
    new_couchdb_section,
    new_s3_section,
    start_server,
)
from tests.test_dicomweb_client import *  # noqa: F403 (the tests re-run here)
from tests.test_dicomweb_client import pytestmark  # noqa: F401


def _scaleout_server(data_dir: Path, couchdb_url: str, s3_endpoint: str) -> RunningServer:
    return start_server(
        data_dir,
        index="couchdb",
        couchdb=new_couchdb_section(couchdb_url),
        blobs="s3",
        s3=new_s3_section(s3_endpoint),
    )


@pytest.fixture(scope="module")
def module_server(
    tmp_path_factory: pytest.TempPathFactory, couchdb_url: str, s3_endpoint: str
) -> Iterator[RunningServer]:
    srv = _scaleout_server(tmp_path_factory.mktemp("data"), couchdb_url, s3_endpoint)
    try:
        yield srv
    finally:
        srv.stop()
        drop_couchdb(srv.settings.section("couchdb"))


@pytest.fixture
def server(tmp_path: Path, couchdb_url: str, s3_endpoint: str) -> Iterator[RunningServer]:
    srv = _scaleout_server(tmp_path / "data", couchdb_url, s3_endpoint)
    try:
        yield srv
    finally:
        srv.stop()
        drop_couchdb(srv.settings.section("couchdb"))
