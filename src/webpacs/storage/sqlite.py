"""The embedded index: SQLite in WAL mode, reads on any thread, writes serialized.

Tables: ``studies``, ``series``, ``instances`` (one column per attribute of
``core.attributes.STORED``, plus the level's DICOM JSON projection and aggregates kept
on write), ``changes`` (the change feed) and ``conflicts`` (study attributes that
disagreed between instances of one study).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import orjson

from webpacs.core.attributes import STORED, Attribute, Level
from webpacs.core.dicomjson import project
from webpacs.core.query import Condition, Query
from webpacs.errors import StorageError
from webpacs.storage import rows
from webpacs.storage.base import Change, InstanceRecord, Outcome, SearchResult

log = logging.getLogger("webpacs.index")

_TABLE = {Level.STUDY: "studies", Level.SERIES: "series", Level.INSTANCE: "instances"}
_ALIAS = {Level.PATIENT: "st", Level.STUDY: "st", Level.SERIES: "se", Level.INSTANCE: "i"}
_UID_COL = {Level.STUDY: "study_uid", Level.SERIES: "series_uid", Level.INSTANCE: "sop_uid"}


_OWN_UIDS = {"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"}


def _cols(level: Level) -> list[Attribute]:
    """Columns of a level's table besides its UID (the primary key)."""
    return [a for a in STORED[level] if a.keyword not in _OWN_UIDS]


def _schema() -> str:
    def cols(level: Level) -> str:
        return "".join(f", {a.column} TEXT" for a in _cols(level))

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


def _summary(level: Level, attrs: dict[str, str], meta: dict[str, Any]) -> dict[str, Any]:
    """A level's columns for one instance: its match values and its DICOM JSON projection."""
    row: dict[str, Any] = {a.column: attrs.get(a.keyword) for a in _cols(level)}
    row["json"] = orjson.dumps(project(meta, STORED[level]))
    return row


def _row(summary: rows.Summary) -> dict[str, Any]:
    """A study or series table's columns for a summary."""
    row: dict[str, Any] = {a.column: summary.values.get(a.keyword) for a in _cols(summary.level)}
    row["json"] = orjson.dumps(summary.projection)
    return row | {"rep_sop": summary.rep, "latest": summary.latest}


def _insert_row(db: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
    marks = ",".join("?" * len(row))
    db.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", list(row.values()))


def _update_row(db: sqlite3.Connection, level: Level, uid: str, row: dict[str, Any]) -> None:
    sets = ", ".join(f"{k} = ?" for k in row)
    db.execute(
        f"UPDATE {_TABLE[level]} SET {sets} WHERE {_UID_COL[level]} = ?", [*row.values(), uid]
    )


def _glob_escape(pattern: str) -> str:
    out = []
    for ch in pattern:
        if ch == "[":
            out.append("[[]")
        elif ch == "]":
            out.append("[]]")
        else:
            out.append(ch)
    return "".join(out)


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def condition_sql(cond: Condition, column: str) -> tuple[str, list[Any]]:
    """SQL for one QIDO condition on ``column`` (PS3.4 C.2.2.2 matching)."""
    v = cond.values
    if cond.attribute.keyword == "ModalitiesInStudy":
        marks = ",".join("?" * len(v))
        if cond.kind == "wildcard":
            return (
                "EXISTS (SELECT 1 FROM series m WHERE m.study_uid = st.study_uid"
                " AND m.modality GLOB ?)",
                [_glob_escape(v[0])],
            )
        return (
            "EXISTS (SELECT 1 FROM series m WHERE m.study_uid = st.study_uid"
            f" AND m.modality IN ({marks}))",
            list(v),
        )
    if cond.kind == "range":
        lo, hi = v
        parts, args = [], []
        if lo:
            parts.append(f"{column} >= ?")
            args.append(lo)
        if hi:
            parts.append(f"{column} <= ?")
            args.append(hi)
        if not parts:
            return "1", []
        return "(" + " AND ".join(parts) + f" AND {column} IS NOT NULL)", args
    if cond.kind == "list":
        return f"{column} IN ({','.join('?' * len(v))})", list(v)
    if cond.kind == "wildcard":
        if cond.fuzzy:
            return f"lower({column}) GLOB ?", [_glob_escape(v[0].lower())]
        return f"{column} GLOB ?", [_glob_escape(v[0])]
    # single
    if cond.fuzzy:
        words = f"(' ' || replace(replace(replace(lower({column}), '^', ' '), '=', ' '), ',', ' '))"
        return (
            f"(lower({column}) = ? OR {words} LIKE ? ESCAPE '\\')",
            [v[0].lower(), "% " + _like_escape(v[0].lower()) + "%"],
        )
    return f"{column} = ?", [v[0]]


class SqliteIndex:
    """``Index`` on one SQLite file (WAL): concurrent readers, one writer at a time."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        with self._write_lock:
            self._conn().executescript(_schema())

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
        with self._write():
            self._local.batch = True
            try:
                yield
            finally:
                self._local.batch = False

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

    def _read(self, sql: str, args: list[Any] | tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        try:
            cur = self._conn().execute(sql, args)
            return cur.fetchall()
        except sqlite3.Error as e:
            raise StorageError(f"index read failed: {e}") from e

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
        meta = orjson.loads(record.metadata)
        with self._write() as db:
            row = db.execute(
                "SELECT digest FROM instances WHERE sop_uid = ?", (record.sop_uid,)
            ).fetchone()
            old = None
            outcome = Outcome.STORED
            if row is not None:
                old = self._get(db, record.sop_uid)
                if row[0] == record.digest:
                    return Outcome.DUPLICATE, old
                if not overwrite:
                    return Outcome.CONFLICT, old
                outcome = Outcome.REPLACED
                assert old is not None
                self._remove(db, old, log_change=False)
            self._insert(db, record, meta)
            return outcome, old

    def _insert(self, db: sqlite3.Connection, rec: InstanceRecord, meta: dict[str, Any]) -> None:
        now = rec.received or time.time()
        row = {
            "sop_uid": rec.sop_uid,
            "series_uid": rec.series_uid,
            "study_uid": rec.study_uid,
            "sop_class_uid": rec.sop_class_uid,
            "transfer_syntax": rec.transfer_syntax,
            "blob_key": rec.blob_key,
            "size": rec.size,
            "digest": rec.digest,
            "received": now,
            **_summary(Level.INSTANCE, rec.attributes, meta),
            "metadata": rec.metadata,
            "framemap": orjson.dumps(rec.framemap),
            "attributes": orjson.dumps(rec.attributes),
        }
        _insert_row(db, "instances", row)
        for level in (Level.SERIES, Level.STUDY):
            uid = rec.series_uid if level is Level.SERIES else rec.study_uid
            fresh = rows.summary_of(level, rec.sop_uid, now, rec.attributes, meta)
            cols = _cols(level)
            found = db.execute(
                f"SELECT latest{''.join(', ' + a.column for a in cols)} FROM {_TABLE[level]}"
                f" WHERE {_UID_COL[level]} = ?",
                (uid,),
            ).fetchone()
            current = None
            if found is not None:
                current = {a.keyword: v for a, v in zip(cols, found[1:], strict=True)}
            replace, disagreements = rows.follow(
                rec.study_uid, current, None if found is None else found[0], fresh
            )
            for d in disagreements:
                _insert_row(db, "conflicts", {"study_uid": d.study_uid, "sop_uid": d.sop_uid,
                    "keyword": d.keyword, "previous": d.previous, "value": d.value,
                    "time": d.time})  # fmt: skip
            if found is None:
                extra = {"study_uid": rec.study_uid} if level is Level.SERIES else {}
                _insert_row(db, _TABLE[level], {_UID_COL[level]: uid, **extra, **_row(fresh)})
            elif replace:
                _update_row(db, level, uid, _row(fresh))
        self._log(db, "put", rec)
        self._aggregates(db, rec.study_uid, rec.series_uid)

    def _log(self, db: sqlite3.Connection, op: str, rec: InstanceRecord) -> None:
        cur = db.execute(
            "INSERT INTO changes (op, study_uid, series_uid, sop_uid, time) VALUES (?,?,?,?,?)",
            (op, rec.study_uid, rec.series_uid, rec.sop_uid, time.time()),
        )
        db.execute(
            "UPDATE series SET version = ? WHERE series_uid = ?", (cur.lastrowid, rec.series_uid)
        )

    def _aggregates(self, db: sqlite3.Connection, study: str, series: str) -> None:
        n = db.execute("SELECT count(*) FROM instances WHERE series_uid = ?", (series,)).fetchone()
        if n[0] == 0:
            db.execute("DELETE FROM series WHERE series_uid = ?", (series,))
        else:
            db.execute("UPDATE series SET num_instances = ? WHERE series_uid = ?", (n[0], series))
        row = db.execute(
            "SELECT count(*), coalesce(sum(num_instances), 0),"
            " group_concat(DISTINCT modality) FROM series WHERE study_uid = ?",
            (study,),
        ).fetchone()
        if row[0] == 0:
            db.execute("DELETE FROM studies WHERE study_uid = ?", (study,))
            return
        mods = ",".join(sorted(m for m in (row[2] or "").split(",") if m))
        db.execute(
            "UPDATE studies SET num_series = ?, num_instances = ?, modalities = ?"
            " WHERE study_uid = ?",
            (row[0], row[1], mods, study),
        )

    def _remove(self, db: sqlite3.Connection, rec: InstanceRecord, *, log_change: bool) -> None:
        db.execute("DELETE FROM instances WHERE sop_uid = ?", (rec.sop_uid,))
        for level, uid in ((Level.SERIES, rec.series_uid), (Level.STUDY, rec.study_uid)):
            table = _TABLE[level]
            row = db.execute(
                f"SELECT rep_sop FROM {table} WHERE {_UID_COL[level]} = ?", (uid,)
            ).fetchone()
            if row is None or not rows.orphaned(row[0], [rec.sop_uid]):
                continue
            col = "series_uid" if level is Level.SERIES else "study_uid"
            nxt = db.execute(
                f"SELECT sop_uid, metadata, attributes, received FROM instances WHERE {col} = ?"
                " ORDER BY received DESC LIMIT 1",
                (uid,),
            ).fetchone()
            if nxt is None:
                continue
            fresh = rows.summary_of(
                level, nxt[0], nxt[3], orjson.loads(nxt[2]), orjson.loads(nxt[1])
            )
            _update_row(db, level, uid, _row(fresh))
        if log_change:
            self._log(db, "delete", rec)
        self._aggregates(db, rec.study_uid, rec.series_uid)

    def delete(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[InstanceRecord]:
        with self._write() as db:
            recs = self._select(db, study_uid, series_uid, sop_uid)
            for rec in recs:
                self._remove(db, rec, log_change=True)
            if recs and series_uid is None and sop_uid is None:
                db.execute("DELETE FROM conflicts WHERE study_uid = ?", (study_uid,))
            return recs

    # -- reads -------------------------------------------------------------------
    _REC_COLS = (
        "study_uid, series_uid, sop_uid, sop_class_uid, transfer_syntax, blob_key, size, digest,"
        " attributes, metadata, framemap, received"
    )

    @staticmethod
    def _record(row: sqlite3.Row | tuple[Any, ...]) -> InstanceRecord:
        return InstanceRecord(
            study_uid=row[0],
            series_uid=row[1],
            sop_uid=row[2],
            sop_class_uid=row[3],
            transfer_syntax=row[4],
            blob_key=row[5],
            size=row[6],
            digest=row[7],
            attributes=orjson.loads(row[8]),
            metadata=row[9],
            framemap=orjson.loads(row[10]),
            received=row[11],
        )

    def _get(self, db: sqlite3.Connection, sop_uid: str) -> InstanceRecord | None:
        row = db.execute(
            f"SELECT {self._REC_COLS} FROM instances WHERE sop_uid = ?", (sop_uid,)
        ).fetchone()
        return None if row is None else self._record(row)

    def get(self, sop_uid: str) -> InstanceRecord | None:
        rows = self._read(f"SELECT {self._REC_COLS} FROM instances WHERE sop_uid = ?", (sop_uid,))
        return self._record(rows[0]) if rows else None

    def _select(
        self,
        db: sqlite3.Connection | None,
        study_uid: str,
        series_uid: str | None,
        sop_uid: str | None,
    ) -> list[InstanceRecord]:
        where, args = ["i.study_uid = ?"], [study_uid]
        if series_uid is not None:
            where.append("i.series_uid = ?")
            args.append(series_uid)
        if sop_uid is not None:
            where.append("i.sop_uid = ?")
            args.append(sop_uid)
        sql = (
            f"SELECT {', '.join('i.' + c.strip() for c in self._REC_COLS.split(','))}"
            " FROM instances i JOIN series se ON se.series_uid = i.series_uid"
            f" WHERE {' AND '.join(where)}"
            " ORDER BY CAST(se.seriesnumber AS INTEGER), se.series_uid,"
            " CAST(i.instancenumber AS INTEGER), i.sop_uid"
        )
        rows = db.execute(sql, args).fetchall() if db is not None else self._read(sql, args)
        return [self._record(r) for r in rows]

    def instances(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[InstanceRecord]:
        return self._select(None, study_uid, series_uid, sop_uid)

    def series_version(self, study_uid: str, series_uid: str) -> str | None:
        rows = self._read(
            "SELECT version FROM series WHERE series_uid = ? AND study_uid = ?",
            (series_uid, study_uid),
        )
        return str(rows[0][0]) if rows else None

    def study_series(self, study_uid: str) -> list[str]:
        rows = self._read(
            "SELECT series_uid FROM series WHERE study_uid = ?"
            " ORDER BY CAST(seriesnumber AS INTEGER), series_uid",
            (study_uid,),
        )
        return [r[0] for r in rows]

    def study_conflicts(self, study_uid: str) -> list[dict[str, Any]]:
        rows = self._read(
            "SELECT sop_uid, keyword, previous, value, time FROM conflicts WHERE study_uid = ?"
            " ORDER BY id",
            (study_uid,),
        )
        return [
            {"SOPInstanceUID": r[0], "keyword": r[1], "previous": r[2], "value": r[3], "time": r[4]}
            for r in rows
        ]

    def changes(self, since: int = 0, limit: int = 1000) -> list[Change]:
        rows = self._read(
            "SELECT seq, op, study_uid, series_uid, sop_uid, time FROM changes WHERE seq > ?"
            " ORDER BY seq LIMIT ?",
            (since, limit),
        )
        return [Change(*r) for r in rows]

    # -- QIDO ----------------------------------------------------------------------
    def search(self, query: Query) -> SearchResult:
        level = query.level
        if level is Level.STUDY:
            sql = "SELECT st.json, st.rep_sop, st.num_series, st.num_instances, st.modalities,"
            sql += " st.study_uid"
            sql += " FROM studies st"
            order = " ORDER BY st.studydate DESC, st.studytime DESC, st.study_uid"
        elif level is Level.SERIES:
            sql = "SELECT st.json, se.rep_sop, se.json, se.num_instances, se.study_uid,"
            sql += " se.series_uid FROM series se"
            sql += " JOIN studies st ON st.study_uid = se.study_uid"
            order = " ORDER BY st.study_uid, CAST(se.seriesnumber AS INTEGER), se.series_uid"
        else:
            sql = "SELECT st.json, i.sop_uid, se.json, i.json, i.study_uid, i.series_uid"
            sql += " FROM instances i"
            sql += " JOIN series se ON se.series_uid = i.series_uid"
            sql += " JOIN studies st ON st.study_uid = i.study_uid"
            order = (
                " ORDER BY i.study_uid, CAST(se.seriesnumber AS INTEGER), i.series_uid,"
                " CAST(i.instancenumber AS INTEGER), i.sop_uid"
            )
        where: list[str] = []
        args: list[Any] = []
        # scope on the queried table's own columns, so SQLite uses that table's index
        own = "i" if level is Level.INSTANCE else "se" if level is Level.SERIES else "st"
        if query.study_uid is not None:
            where.append(f"{own}.study_uid = ?")
            args.append(query.study_uid)
        if query.series_uid is not None:
            where.append(f"{'i' if level is Level.INSTANCE else 'se'}.series_uid = ?")
            args.append(query.series_uid)
        for cond in query.conditions:
            a = cond.attribute
            column = f"{_ALIAS[a.level]}.{a.column}"
            if a.keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
                column = f"{_ALIAS[a.level]}.{_UID_COL[a.level]}"
            clause, cargs = condition_sql(cond, column)
            where.append(clause)
            args += cargs
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += order
        if query.limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [query.limit + 1, query.offset]
        elif query.offset:
            sql += " LIMIT -1 OFFSET ?"
            args.append(query.offset)
        found = self._read(sql, args)
        truncated = query.limit is not None and len(found) > query.limit
        if truncated:
            found = found[: query.limit]
        if level is Level.STUDY:
            candidates = [rows.Candidate(r[5], None, r[1], r[0]) for r in found]
            counts = {r[5]: rows.StudyCounts(r[2], r[3], r[4].split(",")) for r in found}
        elif level is Level.SERIES:
            candidates = [rows.Candidate(r[4], r[5], r[1], r[0], r[2]) for r in found]
            counts = {r[5]: r[3] for r in found}
        else:
            candidates = [rows.Candidate(r[4], r[5], r[1], r[0], r[2], r[3]) for r in found]
            counts = {}
        return SearchResult(rows.build_rows(query, candidates, _Rows(self, counts)), truncated)

    def metadata(self, sop_uids: list[str]) -> dict[str, rows.Json]:
        """DICOM JSON of instances by SOP Instance UID (the representative ones of a page)."""
        out: dict[str, rows.Json] = {}
        for i in range(0, len(sop_uids), 500):
            chunk = sop_uids[i : i + 500]
            found = self._read(
                "SELECT sop_uid, metadata FROM instances WHERE sop_uid IN"
                f" ({','.join('?' * len(chunk))})",
                chunk,
            )
            out.update((sop, metadata) for sop, metadata in found)
        return out


class _Rows:
    """``rows.RowSource`` over a page of SQLite rows: aggregates are kept on write."""

    def __init__(self, index: SqliteIndex, counts: dict[str, Any]) -> None:
        self.index = index
        self.counts = counts

    def study_counts(self, study_uids: list[str]) -> dict[str, rows.StudyCounts]:
        return {u: self.counts[u] for u in study_uids if u in self.counts}

    def series_counts(self, series: list[tuple[str, str]]) -> dict[str, int]:
        return {u: self.counts[u] for _, u in series if u in self.counts}

    def metadata(self, sop_uids: list[str]) -> dict[str, rows.Json]:
        return self.index.metadata(sop_uids)
