"""The embedded index: SQLite in WAL mode, reads on any thread, writes serialized.

The tables and their statements are ``storage.sqltables``' (shared with PostgreSQL);
here are the connections, the schema in SQLite's types and the translation of QIDO
wildcards to SQLite (``GLOB``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from webpacs.core.attributes import Level
from webpacs.errors import StorageError
from webpacs.storage import sqlschema, sqltables
from webpacs.storage.base import InstanceRecord, Outcome, PutResult, SameCheck, put_each
from webpacs.storage.sqltables import Dialect, Tables, TablesReads

log = logging.getLogger("webpacs.index")
T = TypeVar("T")


def _schema() -> str:
    def cols(level: Level) -> str:
        return "".join(f", {a.column} TEXT" for a in sqltables.cols(level))

    return f"""
    CREATE TABLE IF NOT EXISTS studies (
        study_uid TEXT PRIMARY KEY{cols(Level.STUDY)},
        json BLOB NOT NULL, rep_sop TEXT NOT NULL, latest REAL NOT NULL,
        num_series INTEGER NOT NULL DEFAULT 0, num_instances INTEGER NOT NULL DEFAULT 0,
        modalities TEXT NOT NULL DEFAULT '');
    CREATE TABLE IF NOT EXISTS series (
        series_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL{cols(Level.SERIES)},
        json BLOB NOT NULL, rep_sop TEXT NOT NULL, latest REAL NOT NULL,
        num_instances INTEGER NOT NULL DEFAULT 0, version INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE IF NOT EXISTS instances (
        sop_uid TEXT PRIMARY KEY, series_uid TEXT NOT NULL, study_uid TEXT NOT NULL,
        sop_class_uid TEXT NOT NULL, transfer_syntax TEXT NOT NULL,
        blob_key TEXT NOT NULL, size INTEGER NOT NULL, digest TEXT NOT NULL,
        received REAL NOT NULL{cols(Level.INSTANCE)},
        json BLOB NOT NULL, metadata BLOB NOT NULL, framemap BLOB NOT NULL,
        attributes BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL, study_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL, sop_uid TEXT NOT NULL, time REAL NOT NULL);
    CREATE TABLE IF NOT EXISTS conflicts (
        id INTEGER PRIMARY KEY AUTOINCREMENT, study_uid TEXT NOT NULL, sop_uid TEXT NOT NULL,
        keyword TEXT NOT NULL, previous TEXT, value TEXT, time REAL NOT NULL);
    CREATE INDEX IF NOT EXISTS series_study ON series(study_uid);
    CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid, instancenumber);
    CREATE INDEX IF NOT EXISTS instances_study_series ON instances(study_uid, series_uid);
    DROP INDEX IF EXISTS instances_study;
    CREATE INDEX IF NOT EXISTS studies_patientid ON studies(patientid);
    CREATE INDEX IF NOT EXISTS studies_date ON studies(studydate, studytime);
    CREATE INDEX IF NOT EXISTS studies_accession ON studies(accessionnumber);
    CREATE INDEX IF NOT EXISTS series_modality ON series(modality);
    CREATE INDEX IF NOT EXISTS conflicts_study ON conflicts(study_uid);
    """


TABLES = Tables(
    Dialect(
        placeholder="?",
        match_op="GLOB",
        wildcards={"[": "[[]", "]": "[]]"},  # GLOB's own * and ? are DICOM's
        integer="CAST({} AS INTEGER)",
        modalities="group_concat(DISTINCT modality)",
        no_limit="LIMIT -1",
    )
)


class SqliteIndex(TablesReads):
    """``Index`` on one SQLite file (WAL): concurrent readers, one writer at a time."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.tables = TABLES
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        with self._write_lock:
            sqlschema.ensure(self._conn(), TABLES, self.path, _schema())
        self.schema_version = sqlschema.SCHEMA_VERSION

    # -- connections -------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL: a commit is on disk before a store is acknowledged (NORMAL may lose
                # the last commits on power loss); batches make that one sync per request
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA busy_timeout=60000")
            except sqlite3.Error as e:
                raise StorageError(f"cannot open index {self.path}: {e}") from e
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run this thread's writes in one transaction (one sync of the log for all).

        Each write stays all-or-nothing (a savepoint); nothing is visible, or durable,
        before the batch ends. Other writers wait until it does.
        """
        if getattr(self._local, "batch", False):
            yield
            return
        with self._write() as db:
            self._local.batch = True
            later: set[tuple[str, str]] = set()  # series whose counts wait for the end
            self._local.later = later
            try:
                yield
                TABLES.aggregates(db, later)
            finally:
                self._local.batch = False
                self._local.later = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        if getattr(self._local, "batch", False):
            try:
                db.execute("SAVEPOINT put")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK TO put")
                    db.execute("RELEASE put")
                    raise
                db.execute("RELEASE put")
            except sqlite3.Error as e:
                raise StorageError(f"index write failed: {e}") from e
            return
        with self._write_lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as e:
                raise StorageError(f"index write failed: {e}") from e

    def close(self) -> None:
        with self._all_lock:
            for c in self._all:
                with suppress(sqlite3.Error):
                    c.close()
            self._all.clear()
        self._local = threading.local()

    # -- writes ------------------------------------------------------------------
    def put(
        self, record: InstanceRecord, *, overwrite: bool
    ) -> tuple[Outcome, InstanceRecord | None]:
        with self._write() as db:
            later = getattr(self._local, "later", None)  # set inside a batch only
            return TABLES.put(db, record, overwrite=overwrite, later=later)

    def put_many(
        self, records: list[InstanceRecord], *, overwrite: bool, same: SameCheck
    ) -> list[PutResult]:
        return put_each(self, records, overwrite=overwrite, same=same)

    def delete(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[InstanceRecord]:
        with self._write() as db:
            return TABLES.delete(db, study_uid, series_uid, sop_uid)

    def add_label(self, study_uid: str, series_uid: str | None, label: str) -> bool:
        with self._write() as db:
            return TABLES.refs.add_label(db, study_uid, series_uid, label)

    def remove_label(self, study_uid: str, series_uid: str | None, label: str) -> bool:
        with self._write() as db:
            return TABLES.refs.remove_label(db, study_uid, series_uid, label)

    # -- reads -------------------------------------------------------------------
    def _reading(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(self._conn(), *args)
        except sqlite3.Error as e:
            raise StorageError(f"index read failed: {e}") from e
