"""The index as SQL tables, for the SQL backends (SQLite, PostgreSQL): one ``Tables``.

Tables ``studies``, ``series``, ``instances`` (one column per attribute of
``core.attributes.STORED``, the level's DICOM JSON projection, aggregates kept on write),
``changes`` (the change feed) and ``conflicts`` (study attributes that disagreed). What
the summaries hold is ``storage.rows``' decision; this module keeps them in tables.
A backend brings its connections, its schema, its ``Dialect`` and its translation of
QIDO conditions; every statement here runs on the connection (``db``) the backend
passes, inside the transaction it opened.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol, TypeVar

import orjson

from webpacs.core.attributes import STORED, Attribute, Level
from webpacs.core.dicomjson import project
from webpacs.core.query import Condition, Query
from webpacs.core.references import Reference
from webpacs.storage import rows, sqlattrs
from webpacs.storage.base import Change, InstanceRecord, Outcome, SearchResult
from webpacs.storage.labels import attach as attach_labels
from webpacs.storage.sqlrefs import RefTables

T = TypeVar("T")
TABLE = {Level.STUDY: "studies", Level.SERIES: "series", Level.INSTANCE: "instances"}
UID_COL = {Level.STUDY: "study_uid", Level.SERIES: "series_uid", Level.INSTANCE: "sop_uid"}
ALIAS = {Level.PATIENT: "st", Level.STUDY: "st", Level.SERIES: "se", Level.INSTANCE: "i"}
_OWN_UIDS = {"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"}
REC_COLS = (
    "study_uid", "series_uid", "sop_uid", "sop_class_uid", "transfer_syntax", "blob_key",
    "size", "digest", "attributes", "metadata", "framemap", "received",
)  # fmt: skip


class Db(Protocol):
    """A DB-API connection as both drivers offer it: ``execute`` returns a cursor."""

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...


def cols(level: Level) -> list[Attribute]:
    """Columns of a level's table besides its UID (the primary key)."""
    return [a for a in STORED[level] if a.keyword not in _OWN_UIDS]


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL backends' statements."""

    placeholder: str  # "?" (sqlite3) or "%s" (psycopg)
    match_op: str  # the operator matching a pattern: "GLOB" (SQLite) or "LIKE"
    #: how each special character of a DICOM wildcard value (``*``, ``?``) or of the
    #: operator's pattern syntax is written in a pattern; other characters stand for
    #: themselves
    wildcards: dict[str, str]
    integer: str  # an expression turning column {} into an integer for sorting
    modalities: str  # an aggregate joining DISTINCT modality with ","
    no_limit: str  # what stands for LIMIT when only OFFSET is given
    #: run before a change is logged (PostgreSQL: the lock that keeps seq in commit order)
    before_change: str = ""
    #: run after a change is logged, with its seq (PostgreSQL: NOTIFY)
    after_change: str = ""

    def sql(self, text: str) -> str:
        return _translate(text, self.placeholder)

    def pattern(self, value: str) -> str:
        """A DICOM wildcard value as a ``match_op`` pattern."""
        return "".join(self.wildcards.get(ch, ch) for ch in value)


@lru_cache(maxsize=1024)
def _translate(text: str, placeholder: str) -> str:
    return text if placeholder == "?" else text.replace("?", placeholder)


def like_escape(value: str) -> str:
    """``value`` matched literally inside a LIKE pattern (``ESCAPE '\\'``)."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def condition_sql(d: Dialect, cond: Condition, column: str) -> tuple[str, list[Any]]:
    """SQL for one QIDO condition on ``column`` (PS3.4 C.2.2.2 matching)."""
    v = cond.values
    if cond.attribute.keyword == "ModalitiesInStudy":
        inner = "SELECT 1 FROM series m WHERE m.study_uid = st.study_uid AND m.modality"
        if cond.kind == "wildcard":
            return f"EXISTS ({inner} {d.match_op} ?)", [d.pattern(v[0])]
        return f"EXISTS ({inner} IN ({','.join('?' * len(v))}))", list(v)
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
            return "1 = 1", []
        return "(" + " AND ".join(parts) + f" AND {column} IS NOT NULL)", args
    if cond.kind == "list":
        return f"{column} IN ({','.join('?' * len(v))})", list(v)
    if cond.kind == "wildcard":
        if cond.fuzzy:
            return f"lower({column}) {d.match_op} ?", [d.pattern(v[0].lower())]
        return f"{column} {d.match_op} ?", [d.pattern(v[0])]
    if cond.fuzzy:  # any word of a name component starts with the value (PS3.4 C.2.2.2.4)
        words = f"(' ' || replace(replace(replace(lower({column}), '^', ' '), '=', ' '), ',', ' '))"
        return (
            f"(lower({column}) = ? OR {words} LIKE ? ESCAPE '\\')",
            [v[0].lower(), "% " + like_escape(v[0].lower()) + "%"],
        )
    return f"{column} = ?", [v[0]]


def _level_row(summary: rows.Summary) -> dict[str, Any]:
    row: dict[str, Any] = {a.column: summary.values.get(a.keyword) for a in cols(summary.level)}
    row["json"] = orjson.dumps(summary.projection)
    return row | {"rep_sop": summary.rep, "latest": summary.latest}


def record(row: Any) -> InstanceRecord:
    """An ``InstanceRecord`` from a row of ``REC_COLS``."""
    return InstanceRecord(
        study_uid=row[0], series_uid=row[1], sop_uid=row[2], sop_class_uid=row[3],
        transfer_syntax=row[4], blob_key=row[5], size=row[6], digest=row[7],
        attributes=orjson.loads(row[8]), metadata=bytes(row[9]),
        framemap=orjson.loads(row[10]), received=row[11],
    )  # fmt: skip


class Tables:
    """The index's statements in one SQL dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.d = dialect
        self.refs = RefTables(dialect.placeholder, dialect.before_change, dialect.after_change)

    def _x(self, db: Db, sql: str, args: Any = ()) -> Any:
        return db.execute(self.d.sql(sql), args)

    def _insert(self, db: Db, table: str, row: dict[str, Any]) -> None:
        marks = ",".join("?" * len(row))
        self._x(db, f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", list(row.values()))

    def _update(self, db: Db, level: Level, uid: str, row: dict[str, Any]) -> None:
        sets = ", ".join(f"{k} = ?" for k in row)
        self._x(
            db, f"UPDATE {TABLE[level]} SET {sets} WHERE {UID_COL[level]} = ?", [*row.values(), uid]
        )

    # -- writes --------------------------------------------------------------------------
    def put(
        self,
        db: Db,
        rec: InstanceRecord,
        *,
        overwrite: bool,
        later: set[tuple[str, str]] | None = None,
    ) -> tuple[Outcome, InstanceRecord | None]:
        """``Index.put`` inside the caller's transaction. With ``later``, the series' and
        study's counts are left for the caller's :meth:`aggregates` before it commits (once
        per series of a batch, not per instance); the (study, series) is added to it."""
        meta = orjson.loads(rec.metadata)
        old = self.get(db, rec.sop_uid)
        if old is None:
            self._add(db, rec, meta, later)
            return Outcome.STORED, None
        if old.digest == rec.digest:
            return Outcome.DUPLICATE, old
        if not overwrite:
            return Outcome.CONFLICT, old
        self._remove(db, old, log_change=False)
        self._add(db, rec, meta)
        return Outcome.REPLACED, old

    def _add(
        self,
        db: Db,
        rec: InstanceRecord,
        meta: dict[str, Any],
        later: set[tuple[str, str]] | None = None,
    ) -> None:
        now = rec.received or time.time()
        row: dict[str, Any] = {
            "sop_uid": rec.sop_uid, "series_uid": rec.series_uid, "study_uid": rec.study_uid,
            "sop_class_uid": rec.sop_class_uid, "transfer_syntax": rec.transfer_syntax,
            "blob_key": rec.blob_key, "size": rec.size, "digest": rec.digest, "received": now,
        }  # fmt: skip
        row |= {a.column: rec.attributes.get(a.keyword) for a in cols(Level.INSTANCE)}
        row["json"] = orjson.dumps(project(meta, STORED[Level.INSTANCE]))
        row |= {"metadata": rec.metadata, "framemap": orjson.dumps(rec.framemap),
                "attributes": orjson.dumps(rec.attributes)}  # fmt: skip
        self._insert(db, "instances", row)
        # what the side tables still hold for this SOP Instance UID (its instances row was
        # lost: deleted by hand, or an older index restored) is replaced, not added to
        self.refs.forget(db, rec.sop_uid)
        sqlattrs.remove(self.d, db, rec.sop_uid)
        self.refs.record(db, rec)
        sqlattrs.add(self.d, db, rec.sop_uid, rec.series_uid, rec.study_uid, meta, rec.values)
        for level in (Level.SERIES, Level.STUDY):
            uid = rec.series_uid if level is Level.SERIES else rec.study_uid
            fresh = rows.summary_of(level, rec.sop_uid, now, rec.attributes, meta)
            columns = cols(level)
            found = self._x(
                db,
                f"SELECT latest{''.join(', ' + a.column for a in columns)} FROM {TABLE[level]}"
                f" WHERE {UID_COL[level]} = ?",
                (uid,),
            ).fetchone()
            current = None
            if found is not None:
                current = {a.keyword: v for a, v in zip(columns, found[1:], strict=True)}
            replace, disagreements = rows.follow(
                rec.study_uid, current, None if found is None else found[0], fresh
            )
            for d in disagreements:
                self._insert(db, "conflicts", {"study_uid": d.study_uid, "sop_uid": d.sop_uid,
                    "keyword": d.keyword, "previous": d.previous, "value": d.value,
                    "time": d.time})  # fmt: skip
            if found is None:
                extra = {"study_uid": rec.study_uid} if level is Level.SERIES else {}
                self._insert(db, TABLE[level], {UID_COL[level]: uid, **extra, **_level_row(fresh)})
            elif replace:
                self._update(db, level, uid, _level_row(fresh))
        self._log(db, "put", rec)
        if later is None:
            self._aggregates(db, rec.study_uid, rec.series_uid)
        else:
            later.add((rec.study_uid, rec.series_uid))

    def _log(self, db: Db, op: str, rec: InstanceRecord) -> None:
        if self.d.before_change:
            self._x(db, self.d.before_change)
        seq = self._x(
            db,
            "INSERT INTO changes (op, study_uid, series_uid, sop_uid, time) VALUES (?,?,?,?,?)"
            " RETURNING seq",
            (op, rec.study_uid, rec.series_uid, rec.sop_uid, time.time()),
        ).fetchone()[0]
        self._x(db, "UPDATE series SET version = ? WHERE series_uid = ?", (seq, rec.series_uid))
        if self.d.after_change:
            self._x(db, self.d.after_change, (str(seq),))

    def aggregates(self, db: Db, pairs: set[tuple[str, str]]) -> None:
        """The counts of the (study, series) ``pairs`` a batch of ``put(later=...)`` left."""
        for study, series in sorted(pairs):
            self._aggregates(db, study, series)

    def _aggregates(self, db: Db, study: str, series: str) -> None:
        n = self._x(db, "SELECT count(*) FROM instances WHERE series_uid = ?", (series,))
        count = n.fetchone()[0]
        if count == 0:
            self._x(db, "DELETE FROM series WHERE series_uid = ?", (series,))
        else:
            self._x(db, "UPDATE series SET num_instances = ? WHERE series_uid = ?", (count, series))
        row = self._x(
            db,
            f"SELECT count(*), coalesce(sum(num_instances), 0), {self.d.modalities}"
            " FROM series WHERE study_uid = ?",
            (study,),
        ).fetchone()
        if row[0] == 0:
            self._x(db, "DELETE FROM studies WHERE study_uid = ?", (study,))
            return
        mods = ",".join(sorted(m for m in (row[2] or "").split(",") if m))
        self._x(
            db,
            "UPDATE studies SET num_series = ?, num_instances = ?, modalities = ?"
            " WHERE study_uid = ?",
            (row[0], int(row[1]), mods, study),
        )

    def _remove(self, db: Db, rec: InstanceRecord, *, log_change: bool) -> None:
        self._x(db, "DELETE FROM instances WHERE sop_uid = ?", (rec.sop_uid,))
        self.refs.forget(db, rec.sop_uid)
        sqlattrs.remove(self.d, db, rec.sop_uid)
        for level, uid in ((Level.SERIES, rec.series_uid), (Level.STUDY, rec.study_uid)):
            table, col = TABLE[level], UID_COL[level]
            row = self._x(db, f"SELECT rep_sop FROM {table} WHERE {col} = ?", (uid,)).fetchone()
            if row is None or not rows.orphaned(row[0], [rec.sop_uid]):
                continue
            nxt = self._x(
                db,
                f"SELECT sop_uid, metadata, attributes, received FROM instances WHERE {col} = ?"
                " ORDER BY received DESC LIMIT 1",
                (uid,),
            ).fetchone()
            if nxt is None:
                continue
            fresh = rows.summary_of(
                level, nxt[0], nxt[3], orjson.loads(nxt[2]), orjson.loads(nxt[1])
            )
            self._update(db, level, uid, _level_row(fresh))
        if log_change:
            self._log(db, "delete", rec)
        self._aggregates(db, rec.study_uid, rec.series_uid)

    def delete(
        self, db: Db, study: str, series: str | None, sop: str | None
    ) -> list[InstanceRecord]:
        """``Index.delete`` inside the caller's transaction."""
        recs = self.select(db, study, series, sop)
        for rec in recs:
            self._remove(db, rec, log_change=True)
        self.refs.after_delete(db, recs)
        if recs and series is None and sop is None:
            self._x(db, "DELETE FROM conflicts WHERE study_uid = ?", (study,))
        return recs

    # -- reads ---------------------------------------------------------------------------
    def get(self, db: Db, sop: str) -> InstanceRecord | None:
        row = self._x(
            db, f"SELECT {', '.join(REC_COLS)} FROM instances WHERE sop_uid = ?", (sop,)
        ).fetchone()
        return None if row is None else record(row)

    def select(
        self, db: Db, study: str, series: str | None, sop: str | None
    ) -> list[InstanceRecord]:
        """Records of a study, series or instance, in series and instance number order."""
        where, args = ["i.study_uid = ?"], [study]
        if series is not None:
            where.append("i.series_uid = ?")
            args.append(series)
        if sop is not None:
            where.append("i.sop_uid = ?")
            args.append(sop)
        n = self.d.integer
        sql = (
            f"SELECT {', '.join('i.' + c for c in REC_COLS)}"
            " FROM instances i JOIN series se ON se.series_uid = i.series_uid"
            f" WHERE {' AND '.join(where)}"
            f" ORDER BY {n.format('se.seriesnumber')} NULLS FIRST, se.series_uid,"
            f" {n.format('i.instancenumber')} NULLS FIRST, i.sop_uid"
        )
        return [record(r) for r in self._x(db, sql, args).fetchall()]

    def series_version(self, db: Db, study: str, series: str) -> str | None:
        row = self._x(
            db, "SELECT version FROM series WHERE series_uid = ? AND study_uid = ?", (series, study)
        ).fetchone()
        return None if row is None else str(row[0])

    def study_series(self, db: Db, study: str) -> list[str]:
        n = self.d.integer.format("seriesnumber")
        sql = "SELECT series_uid FROM series WHERE study_uid = ?"
        sql += f" ORDER BY {n} NULLS FIRST, series_uid"
        return [r[0] for r in self._x(db, sql, (study,)).fetchall()]

    def study_conflicts(self, db: Db, study: str) -> list[dict[str, Any]]:
        found = self._x(
            db,
            "SELECT sop_uid, keyword, previous, value, time FROM conflicts WHERE study_uid = ?"
            " ORDER BY id",
            (study,),
        ).fetchall()
        return [rows.Disagreement(study, *r).as_record() for r in found]

    def changes(self, db: Db, since: int, limit: int) -> list[Change]:
        found = self._x(
            db,
            "SELECT seq, op, study_uid, series_uid, sop_uid, time FROM changes WHERE seq > ?"
            " ORDER BY seq LIMIT ?",
            (since, limit),
        ).fetchall()
        return [Change(*r) for r in found]

    def totals(self, db: Db) -> dict[str, int | None]:
        row = self._x(
            db,
            "SELECT (SELECT count(*) FROM studies), (SELECT count(*) FROM series),"
            " count(*), coalesce(sum(size), 0) FROM instances",
        ).fetchone()
        return dict(zip(("studies", "series", "instances", "bytes"), map(int, row), strict=True))

    def metadata(self, db: Db, sops: list[str]) -> dict[str, rows.Json]:
        out: dict[str, rows.Json] = {}
        for i in range(0, len(sops), 500):
            chunk = sops[i : i + 500]
            found = self._x(
                db,
                "SELECT sop_uid, metadata FROM instances"
                f" WHERE sop_uid IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            out.update((sop, bytes(m)) for sop, m in found)
        return out

    # -- QIDO ----------------------------------------------------------------------------
    def search_sql(self, query: Query) -> tuple[str, list[Any]]:
        """The ``SELECT`` of a query's candidate rows in result order, paged (one row past
        ``limit`` tells that it was cut), with the columns ``rows.from_columns`` reads."""
        level, n = query.level, self.d.integer
        if level is Level.STUDY:
            sql = (
                "SELECT st.json, st.rep_sop, st.num_series, st.num_instances, st.modalities,"
                " st.study_uid FROM studies st"
            )
            order = (
                " ORDER BY st.studydate DESC NULLS LAST, st.studytime DESC NULLS LAST, st.study_uid"
            )
        elif level is Level.SERIES:
            sql = (
                "SELECT st.json, se.rep_sop, se.json, se.num_instances, se.study_uid,"
                " se.series_uid FROM series se JOIN studies st ON st.study_uid = se.study_uid"
            )
            order = (
                f" ORDER BY st.study_uid, {n.format('se.seriesnumber')} NULLS FIRST, se.series_uid"
            )
        else:
            sql = (
                "SELECT st.json, i.sop_uid, se.json, i.json, i.study_uid, i.series_uid"
                " FROM instances i JOIN series se ON se.series_uid = i.series_uid"
                " JOIN studies st ON st.study_uid = i.study_uid"
            )
            order = (
                f" ORDER BY i.study_uid, {n.format('se.seriesnumber')} NULLS FIRST, i.series_uid,"
                f" {n.format('i.instancenumber')} NULLS FIRST, i.sop_uid"
            )
        where: list[str] = []
        args: list[Any] = []
        # scope on the queried table's own columns, so that its index is used
        own = "i" if level is Level.INSTANCE else "se" if level is Level.SERIES else "st"
        if query.study_uid is not None:
            where.append(f"{own}.study_uid = ?")
            args.append(query.study_uid)
        if query.series_uid is not None:
            where.append(f"{'i' if level is Level.INSTANCE else 'se'}.series_uid = ?")
            args.append(query.series_uid)
        extension = [c for c in query.conditions if c.path is not None]
        if extension:  # extension keys: the attribute-value tables (one instance for all)
            clause, cargs = sqlattrs.conditions_sql(self.d, extension, level)
            where.append(clause)
            args += cargs
        for cond in query.conditions:
            if cond.path is not None:
                continue
            a = cond.attribute
            column = f"{ALIAS[a.level]}.{a.column}"
            if a.keyword in _OWN_UIDS:
                column = f"{ALIAS[a.level]}.{UID_COL[a.level]}"
            clause, cargs = condition_sql(self.d, cond, column)
            where.append(clause)
            args += cargs
        for clause, cargs in self.refs.clauses(query):
            where.append(clause)
            args += cargs
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += order
        if query.limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [query.limit + 1, query.offset]
        elif query.offset:
            sql += f" {self.d.no_limit} OFFSET ?"
            args.append(query.offset)
        return self.d.sql(sql), args

    def rows(
        self, query: Query, found: list[Any], metadata: Callable[[list[str]], dict[str, rows.Json]]
    ) -> tuple[list[dict[str, Any]], bool]:
        """The QIDO rows of what ``search_sql`` found, and whether ``limit`` cut them."""
        truncated = query.limit is not None and len(found) > query.limit
        if truncated:
            found = found[: query.limit]
        candidates, source = rows.from_columns(query.level, found, metadata)
        return rows.build_rows(query, candidates, source), truncated


class TablesReads(abc.ABC):
    """The read half of ``Index`` for a backend on ``Tables``: the backend sets ``tables``
    and implements ``_reading`` (its connection, its driver's errors translated)."""

    tables: Tables

    @abc.abstractmethod
    def _reading(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` on a reading connection of the backend."""

    def get(self, sop_uid: str) -> InstanceRecord | None:
        return self._reading(self.tables.get, sop_uid)

    def instances(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[InstanceRecord]:
        return self._reading(self.tables.select, study_uid, series_uid, sop_uid)

    def series_version(self, study_uid: str, series_uid: str) -> str | None:
        return self._reading(self.tables.series_version, study_uid, series_uid)

    def study_series(self, study_uid: str) -> list[str]:
        return self._reading(self.tables.study_series, study_uid)

    def study_conflicts(self, study_uid: str) -> list[dict[str, Any]]:
        return self._reading(self.tables.study_conflicts, study_uid)

    def changes(self, since: int = 0, limit: int = 1000) -> list[Change]:
        return self._reading(self.tables.changes, since, limit)

    def totals(self) -> dict[str, int | None]:
        return self._reading(self.tables.totals)

    def metadata(self, sop_uids: list[str]) -> dict[str, rows.Json]:
        """DICOM JSON of instances by SOP Instance UID (the representative ones of a page)."""
        return self._reading(self.tables.metadata, sop_uids)

    def search(self, query: Query) -> SearchResult:
        sql, args = self.tables.search_sql(query)
        found = self._reading(lambda db: db.execute(sql, args).fetchall())
        result = SearchResult(*self.tables.rows(query, found, self.metadata))
        attach_labels(query, result.rows, self._labels_of)
        return result

    def _labels_of(self, level: Level, uids: list[str]) -> dict[str, list[str]]:
        return self._reading(self.tables.refs.labels_of, level, uids)

    def references(self, sop_uid: str) -> list[Reference]:
        return self._reading(self.tables.refs.edges, sop_uid)

    def labels(self, study_uid: str, series_uid: str | None = None) -> list[str]:
        return self._reading(self.tables.refs.labels, study_uid, series_uid)
