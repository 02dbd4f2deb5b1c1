"""The backend contract on PostgreSQL + file blobs, and PostgreSQL specifics."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract import IndexContract, make_instance
from webpacs.errors import ConfigError
from webpacs.ingest import ingest
from webpacs.storage.fs import FileBlobs

pytest.importorskip("psycopg")

from webpacs.storage.postgresql import PgIndex, schema  # noqa: E402


@pytest.fixture
def blobs(tmp_path: Path) -> FileBlobs:
    return FileBlobs(tmp_path / "blobs")


@pytest.fixture
def index(postgresql_url: str) -> Iterator[PgIndex]:
    idx = PgIndex(postgresql_url, pool_size=6)
    yield idx
    idx.close()


class TestPgIndex(IndexContract):
    pass


def test_schema_version_recorded_and_reopened(postgresql_url: str) -> None:
    PgIndex(postgresql_url).close()
    idx = PgIndex(postgresql_url)  # a second node finds the schema and uses it
    try:
        with idx.pool.connection() as conn:
            row = conn.execute("SELECT version FROM webpacs_schema").fetchall()
        assert row == [(schema.SCHEMA_VERSION,)]
    finally:
        idx.close()


def test_newer_schema_refuses_to_start_naming_the_command(postgresql_url: str) -> None:
    idx = PgIndex(postgresql_url)
    with idx.pool.connection() as conn:
        conn.execute("UPDATE webpacs_schema SET version = %s", (schema.SCHEMA_VERSION + 1,))
    idx.close()
    with pytest.raises(ConfigError, match="webpacs migrate") as e:
        PgIndex(postgresql_url)
    assert "password" not in str(e.value) and postgresql_url not in str(e.value)


def test_a_change_wakes_a_listener(postgresql_url: str, tmp_path: Path) -> None:
    idx = PgIndex(postgresql_url)
    try:
        assert not idx.wait_for_change(0.2)  # nothing committed: the wait times out
        woke: list[bool] = []
        t = threading.Thread(target=lambda: woke.append(idx.wait_for_change(30)))
        t.start()
        blobs = FileBlobs(tmp_path / "blobs")
        n = 0
        while t.is_alive():  # new instances until the listener listens and hears one
            n += 1
            ingest(idx, blobs, make_instance({}, SOPInstanceUID=f"1.2.826.0.1.3680043.8.498.{n}"))
            t.join(0.2)
        assert woke == [True]
    finally:
        idx.close()


def _cli_env(url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "WEBPACS_INDEX": "postgresql",
        "WEBPACS_POSTGRESQL_URL": url,
        "WEBPACS_DATADIR": str(tmp_path / "data"),
        "HOME": str(tmp_path),
    }


def test_migrate_command_and_registry(postgresql_url: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from webpacs.cli.main import main

    runner = CliRunner()
    env = _cli_env(postgresql_url, tmp_path)
    done = runner.invoke(main, ["migrate"], env=env, catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert "postgresql index" in done.output
    idx = PgIndex(postgresql_url)
    with idx.pool.connection() as conn:
        conn.execute("UPDATE webpacs_schema SET version = 999")
    idx.close()
    refused = runner.invoke(main, ["migrate"], env=env)
    assert refused.exit_code != 0
    assert "version 999" in refused.output and "webpacs migrate" in refused.output


def test_deriver_woken_by_notify(postgresql_url: str, tmp_path: Path) -> None:
    from webpacs.documents.deriver import Deriver

    idx = PgIndex(postgresql_url)
    blobs = FileBlobs(tmp_path / "blobs")
    deriver = Deriver(idx, blobs, interval=600)  # polling alone would wait ten minutes
    deriver.remember("http://x/dicomweb")
    deriver.start()
    try:
        r = ingest(idx, blobs, make_instance({}))
        for _ in range(300):
            if list(blobs.keys(f"derived/{r.study_uid}/{r.series_uid}/")):
                break
            threading.Event().wait(0.1)
        assert list(blobs.keys(f"derived/{r.study_uid}/{r.series_uid}/"))
    finally:
        deriver.stop()
        idx.close()


def test_unreachable_server_is_a_storage_error_without_the_password() -> None:
    from tests.conftest import free_port
    from webpacs.errors import StorageError

    url = f"postgresql://webpacs:s3cret-pw@127.0.0.1:{free_port()}/webpacs"
    with pytest.raises(StorageError, match="cannot connect") as e:
        PgIndex(url, timeout=2)
    assert "s3cret-pw" not in str(e.value)


def test_an_older_schema_is_migrated_on_start(
    postgresql_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    idx = PgIndex(postgresql_url)  # written by "the earlier release" (version 1)
    r = ingest(idx, FileBlobs(tmp_path / "blobs"), make_instance({}))
    idx.close()
    step = "ALTER TABLE studies ADD COLUMN note TEXT"
    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    monkeypatch.setitem(schema.MIGRATIONS, schema.SCHEMA_VERSION - 1, step)
    idx = PgIndex(postgresql_url)  # "the next release" migrates, and keeps the data
    try:
        with idx.pool.connection() as conn:
            assert conn.execute("SELECT version FROM webpacs_schema").fetchall() == [
                (schema.SCHEMA_VERSION,)
            ]
            conn.execute("SELECT note FROM studies")  # the migration ran
        assert idx.get(r.sop_uid) is not None
    finally:
        idx.close()


def test_tables_without_a_version_are_refused(postgresql_url: str) -> None:
    PgIndex(postgresql_url).close()
    import psycopg

    with psycopg.connect(postgresql_url, autocommit=True) as conn:
        conn.execute("DROP TABLE webpacs_schema")
    with pytest.raises(ConfigError, match="without a schema version"):
        PgIndex(postgresql_url)
