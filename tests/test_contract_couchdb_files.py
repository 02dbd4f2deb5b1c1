"""The backend contract on CouchDB (pouchdb-server) + file blobs, and CouchDB specifics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract import IndexContract
from webpacs.core.attributes import Level
from webpacs.core.query import parse_qido
from webpacs.errors import NotImplementedFeature
from webpacs.storage.couchdb import CouchIndex
from webpacs.storage.fs import FileBlobs


def open_index(section: dict[str, Any], **extra: Any) -> CouchIndex:
    return CouchIndex(
        section["url"], section["database"], max_concurrent=section["maxConcurrent"], **extra
    )


@pytest.fixture
def blobs(tmp_path: Path) -> FileBlobs:
    return FileBlobs(tmp_path / "blobs")


@pytest.fixture
def index(couchdb_section: dict[str, Any]) -> Iterator[CouchIndex]:
    # The matching table deliberately matches attributes no index covers (a description
    # with a leading wildcard, fuzzy names): allowed here, refused by default (see below).
    idx = open_index(couchdb_section, allow_scan=True)
    yield idx
    idx.close()


class TestCouchIndex(IndexContract):
    pass


def test_unindexed_query_is_refused_unless_allowed(couchdb_section: dict[str, Any]) -> None:
    idx = open_index(couchdb_section)
    try:
        with pytest.raises(NotImplementedFeature, match="allowScan"):
            idx.search(parse_qido(Level.STUDY, [("StudyDescription", "*CHEST*")]))
        # indexed keys, UID scopes and plain listings are answered
        idx.search(parse_qido(Level.STUDY, [("PatientID", "X"), ("StudyDescription", "*C*")]))
        idx.search(parse_qido(Level.STUDY, [("PatientName", "Doe*")]))
        idx.search(parse_qido(Level.STUDY, [("PatientName", "do"), ("fuzzymatching", "true")]))
        idx.search(parse_qido(Level.SERIES, [("Modality", "MR")]))
        idx.search(parse_qido(Level.STUDY, [("limit", "10")]))
        idx.search(parse_qido(Level.INSTANCE, [("Rows", "512")], study_uid="1.2.3"))
    finally:
        idx.close()


def test_design_documents_upgraded(couchdb_section: dict[str, Any]) -> None:
    from webpacs.storage.couchdb import design

    idx = open_index(couchdb_section)
    c = idx.client
    _, doc = c.call("GET", c.doc_path(design.DESIGN_ID))
    doc["version"] = design.DESIGN_VERSION - 1
    doc["views"] = {}
    c.call("PUT", c.doc_path(design.DESIGN_ID), body=doc)
    idx.close()
    idx = open_index(couchdb_section)  # a node starting on an older database upgrades it
    try:
        _, doc = idx.client.call("GET", c.doc_path(design.DESIGN_ID))
        assert doc["version"] == design.DESIGN_VERSION and set(doc["views"]) == set(design.VIEWS)
    finally:
        idx.close()
