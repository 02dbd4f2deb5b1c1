"""A store written before the reference graph existed opens with the edges of what it holds
(or, when a newer release wrote it, is refused naming `webpacs migrate`), on every index."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.contract_refs import store_all, uids
from tests.derived_objects import derived
from webpacs.cli.main import main
from webpacs.core.attributes import Level
from webpacs.errors import ConfigError
from webpacs.storage import sqlschema
from webpacs.storage.base import Index
from webpacs.storage.fs import FileBlobs
from webpacs.storage.sqlite import SqliteIndex


def _check_graph(index: Index, d: Any) -> None:
    seg, sr, ko, pr = (str(o.SOPInstanceUID) for o in d.objects())
    assert sorted(uids(index, Level.INSTANCE, ("webpacsReferences", d.series))) == sorted(
        [seg, sr, ko, pr]
    )
    assert uids(index, Level.SERIES, ("webpacsHas", "SEG"), study_uid=d.study) == [d.series]
    assert len(index.references(seg)) > 0


def _as_before_versioning(path: Path) -> None:
    """What the release before the reference graph left: its tables, no version."""
    with sqlite3.connect(path) as db:
        db.executescript(
            "DROP TABLE refs; DROP TABLE labels; DROP INDEX instances_sopclass;"
            " DROP TABLE attr_values; DROP TABLE attr_paths; DROP TABLE attr_owners;"
            " PRAGMA user_version = 0;"
        )
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "refs" not in tables and "instances" in tables


def test_sqlite_index_of_an_earlier_release_is_migrated_with_its_edges(tmp_path: Path) -> None:
    path = tmp_path / "data" / "index.sqlite3"
    blobs = FileBlobs(tmp_path / "data" / "blobs")
    d = derived()
    idx = SqliteIndex(path)
    store_all(idx, blobs, d.images + d.objects())
    idx.close()
    _as_before_versioning(path)

    idx = SqliteIndex(path)  # opening migrates
    try:
        _check_graph(idx, d)
        assert idx.add_label(d.study, None, "migrated") is True
    finally:
        idx.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == sqlschema.SCHEMA_VERSION


def test_webpacs_migrate_migrates_a_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    d = derived()
    idx = SqliteIndex(data / "index.sqlite3")
    store_all(idx, FileBlobs(data / "blobs"), d.images + [d.seg])
    idx.close()
    _as_before_versioning(data / "index.sqlite3")
    result = CliRunner().invoke(main, ["migrate", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "schema version" in result.output
    with sqlite3.connect(data / "index.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == sqlschema.SCHEMA_VERSION
        assert db.execute("SELECT count(*) FROM refs").fetchone()[0] > 0


def test_sqlite_index_of_a_newer_release_is_refused_naming_the_command(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    SqliteIndex(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {sqlschema.SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigError, match="webpacs migrate"):
        SqliteIndex(path)


def test_postgresql_schema_1_is_migrated_with_its_edges(
    postgresql_url: str, tmp_path: Path
) -> None:
    pytest.importorskip("psycopg")
    from webpacs.storage.postgresql import PgIndex, schema

    d = derived()
    idx = PgIndex(postgresql_url)
    store_all(idx, FileBlobs(tmp_path / "blobs"), d.images + d.objects())
    with idx.pool.connection() as conn:  # the schema as version 1 left it
        conn.execute("DROP TABLE refs; DROP TABLE labels; DROP INDEX instances_sopclass")
        conn.execute("DROP TABLE attr_values, attr_paths, attr_owners")
        conn.execute("UPDATE webpacs_schema SET version = 1")
    idx.close()
    idx = PgIndex(postgresql_url)
    try:
        _check_graph(idx, d)
        with idx.pool.connection() as conn:
            version = conn.execute("SELECT version FROM webpacs_schema").fetchone()[0]
        assert version == schema.SCHEMA_VERSION
    finally:
        idx.close()


def test_couchdb_documents_without_edges_get_them(
    couchdb_section: dict[str, Any], tmp_path: Path
) -> None:
    from webpacs.storage.couchdb import CouchIndex, design

    def open_index() -> CouchIndex:
        return CouchIndex(couchdb_section["url"], couchdb_section["database"])

    d = derived()
    idx = open_index()
    store_all(idx, FileBlobs(tmp_path / "blobs"), d.images + d.objects())
    c = idx.client
    _, found = c.call("POST", "_find", body={"selector": {"type": "instance"}, "limit": 100})
    docs = found["docs"]
    for doc in docs:  # documents as design version 5 wrote them: no edges
        del doc["r"]
    c.call("POST", "_bulk_docs", body={"docs": docs}, ok=(201,))
    _, ddoc = c.call("GET", c.doc_path(design.DESIGN_ID))
    ddoc["version"] = 5
    c.call("PUT", c.doc_path(design.DESIGN_ID), body=ddoc)
    idx.close()
    idx = open_index()
    try:
        _check_graph(idx, d)
    finally:
        idx.close()
