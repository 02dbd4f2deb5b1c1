"""``PgIndex``: the ``Index`` Protocol on PostgreSQL (psycopg 3, a ``psycopg_pool`` pool).

Every write is one transaction that first takes an advisory lock on its study, so that
several nodes writing instances of one study keep its summaries and aggregates right
(the rules are ``storage.rows``', the statements ``storage.sqltables``'). Changes are
logged under one more lock taken last, so the change feed's ``seq`` is in commit order;
each committed change is announced with ``NOTIFY webpacs_changes`` (``wait_for_change``
listens). Driver errors become ``StorageError`` here; the connection URL (which may hold
a password) is never put in a message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from webpacs.config import Settings
from webpacs.errors import StorageError
from webpacs.storage.base import InstanceRecord, Outcome, PutResult, SameCheck, put_each
from webpacs.storage.postgresql import schema
from webpacs.storage.sqltables import Dialect, Tables, TablesReads

log = logging.getLogger("webpacs.index")
T = TypeVar("T")
_RETRIES = 5


TABLES = Tables(
    Dialect(
        placeholder="%s",
        match_op="LIKE",
        wildcards={"\\": "\\\\", "%": "\\%", "_": "\\_", "*": "%", "?": "_"},  # LIKE, \\ escapes
        integer="webpacs_int({})",
        modalities="string_agg(DISTINCT modality, ',')",
        no_limit="LIMIT ALL",
        before_change=f"SELECT pg_advisory_xact_lock({schema.CHANGES_LOCK})",
        after_change=f"SELECT pg_notify('{schema.CHANNEL}', ?)",
    )
)


class PgIndex(TablesReads):
    """``Index`` on one PostgreSQL database (the tables in its ``search_path``)."""

    def __init__(self, url: str, *, pool_size: int = 8, timeout: float = 30.0) -> None:
        self.tables = TABLES
        try:
            self.pool = ConnectionPool(
                url, min_size=1, max_size=max(1, pool_size), timeout=timeout, open=False,
                name="webpacs-index",
            )  # fmt: skip
            self.pool.open(wait=True, timeout=timeout)
        except Exception as e:  # psycopg.Error, or the pool's timeout
            with suppress(Exception):
                self.pool.close()
            raise StorageError(f"cannot connect to PostgreSQL: {_reason(e)}") from None
        try:
            with self.pool.connection() as conn:
                found = schema.ensure(conn)
        except psycopg.Error as e:
            self.pool.close()
            raise StorageError(f"cannot set up the PostgreSQL schema: {_reason(e)}") from None
        except BaseException:
            self.pool.close()
            raise
        self.schema_version = schema.SCHEMA_VERSION
        if found == 0:
            log.info("PostgreSQL schema created at version %s", schema.SCHEMA_VERSION)
        elif found < schema.SCHEMA_VERSION:
            log.info("PostgreSQL schema migrated %s -> %s", found, schema.SCHEMA_VERSION)

    @classmethod
    def from_settings(cls, settings: Settings) -> PgIndex:
        """Open the database the ``postgresql`` configuration section names."""
        c = settings.postgresql
        return cls(c.url, pool_size=c.pool_size)

    def close(self) -> None:
        self.pool.close()

    # -- transactions ----------------------------------------------------------------------
    def _run(self, fn: Callable[..., T], *args: Any, lock: str | None = None) -> T:
        """``fn(conn, *args)`` in one transaction (retried on a deadlock or serialization
        failure), after an advisory lock on ``lock`` when given."""
        for attempt in range(_RETRIES):
            try:
                with self.pool.connection() as conn, conn.transaction():
                    if lock is not None:
                        conn.execute(
                            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock,)
                        )
                    return fn(conn, *args)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                if attempt == _RETRIES - 1:
                    raise StorageError("index write failed: too many concurrent writers") from None
            except psycopg.Error as e:
                raise StorageError(f"index call failed: {_reason(e)}") from None
        raise AssertionError("unreachable")

    # -- writes ----------------------------------------------------------------------------
    def batch(self) -> AbstractContextManager[None]:
        """Each ``put`` is its own transaction here (a study lock each): nothing to group."""
        return nullcontext()

    def put(
        self, record: InstanceRecord, *, overwrite: bool
    ) -> tuple[Outcome, InstanceRecord | None]:
        return self._run(_put, record, overwrite, lock=record.study_uid)

    def put_many(
        self, records: list[InstanceRecord], *, overwrite: bool, same: SameCheck
    ) -> list[PutResult]:
        return put_each(self, records, overwrite=overwrite, same=same)

    def delete(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[InstanceRecord]:
        return self._run(TABLES.delete, study_uid, series_uid, sop_uid, lock=study_uid)

    def add_label(self, study_uid: str, series_uid: str | None, label: str) -> bool:
        return self._run(TABLES.refs.add_label, study_uid, series_uid, label, lock=study_uid)

    def remove_label(self, study_uid: str, series_uid: str | None, label: str) -> bool:
        return self._run(TABLES.refs.remove_label, study_uid, series_uid, label, lock=study_uid)

    # -- reads (TablesReads) ----------------------------------------------------------------
    def _reading(self, fn: Callable[..., T], *args: Any) -> T:
        return self._run(fn, *args)

    # -- change notifications --------------------------------------------------------------
    def wait_for_change(self, timeout: float) -> bool:
        """Block until a change is committed (``NOTIFY``) or ``timeout`` seconds pass;
        whether one was. A follower of the feed calls it between reads of ``changes``."""
        try:
            with self._listening() as conn:
                return any(True for _ in conn.notifies(timeout=timeout, stop_after=1))
        except psycopg.Error as e:
            raise StorageError(f"LISTEN failed: {_reason(e)}") from None

    @contextmanager
    def _listening(self) -> Iterator[psycopg.Connection[Any]]:
        with self.pool.connection() as conn:
            conn.autocommit = True
            try:
                conn.execute(f"LISTEN {schema.CHANNEL}")
                yield conn
            finally:
                conn.execute(f"UNLISTEN {schema.CHANNEL}")
                conn.autocommit = False


def _put(
    conn: Any, record: InstanceRecord, overwrite: bool
) -> tuple[Outcome, InstanceRecord | None]:
    old = TABLES.get(conn, record.sop_uid)
    if old is not None and old.study_uid != record.study_uid and overwrite:
        # the instance moves between studies: the old study's summaries change too
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (old.study_uid,))
    return TABLES.put(conn, record, overwrite=overwrite)


def _reason(e: BaseException) -> str:
    """A driver error without the connection string: its SQLSTATE and primary message."""
    diag = getattr(e, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    state = getattr(e, "sqlstate", None)
    text = primary or type(e).__name__
    return f"{text} ({state})" if state else text
