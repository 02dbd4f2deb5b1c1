"""The reference graph and labels as SQL tables, for the SQL backends (SQLite, PostgreSQL).

Tables:

* ``refs``: one row per edge (``core.references``): the referencing instance (``sop_uid``,
  its ``series_uid`` and ``study_uid``), the referenced ``target`` UID, what it names
  (``level``: study, series or instance), the ``frame`` (0: none given) and the sequence
  path ``via``. Rows come and go with their instance; a target need not be stored.
* ``labels``: one row per label of a study (``series_uid`` ``''``) or of a series.

``RefTables`` holds the statements: writes inside the caller's transaction, the research
keys of a query (``core.research``) as SQL conditions on the query's own table, and the
migration step that builds the edges of instances stored before these tables existed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import orjson

from webpacs.core import references
from webpacs.core.attributes import Level
from webpacs.core.query import Query
from webpacs.core.references import Reference
from webpacs.core.research import HAS, LABEL, REFERENCED_BY, REFERENCES, ResearchKey
from webpacs.errors import NotFound
from webpacs.storage.base import InstanceRecord

log = logging.getLogger("webpacs.index")

_EDGE_COLS = ("sop_uid", "series_uid", "study_uid", "target", "level", "frame", "via")
_CHUNK = 100
#: the column a query level's rows are identified by, with the search's table alias
_OWN = {Level.STUDY: "st.study_uid", Level.SERIES: "se.series_uid", Level.INSTANCE: "i.sop_uid"}


def statements(text: str, real: str) -> list[str]:
    """The tables and indexes, in a dialect's types (``text``, ``real``)."""
    return [
        f"CREATE TABLE IF NOT EXISTS refs (sop_uid {text} NOT NULL, series_uid {text} NOT NULL,"
        f" study_uid {text} NOT NULL, target {text} NOT NULL, level {text} NOT NULL,"
        f" frame INTEGER NOT NULL DEFAULT 0, via {text} NOT NULL,"
        " PRIMARY KEY (sop_uid, target, level, frame, via))",
        "CREATE INDEX IF NOT EXISTS refs_target ON refs(target)",
        "CREATE INDEX IF NOT EXISTS refs_series ON refs(series_uid)",
        "CREATE INDEX IF NOT EXISTS refs_study ON refs(study_uid)",
        f"CREATE TABLE IF NOT EXISTS labels (study_uid {text} NOT NULL,"
        f" series_uid {text} NOT NULL DEFAULT '', label {text} NOT NULL, time {real} NOT NULL,"
        " PRIMARY KEY (study_uid, series_uid, label))",
        "CREATE INDEX IF NOT EXISTS labels_label ON labels(label, series_uid)",
        "CREATE INDEX IF NOT EXISTS labels_series ON labels(series_uid)",
        "CREATE INDEX IF NOT EXISTS instances_sopclass ON instances(sop_class_uid)",
    ]


def _marks(values: Iterable[Any]) -> str:
    return ",".join("?" for _ in values)


class RefTables:
    """Statements on ``refs`` and ``labels``; ``sql`` turns ``?`` into the driver's
    placeholder, ``before_change``/``after_change`` are the dialect's change-log hooks."""

    def __init__(self, placeholder: str, before_change: str = "", after_change: str = "") -> None:
        self.placeholder = placeholder
        self.before_change = before_change
        self.after_change = after_change

    def _x(self, db: Any, sql: str, args: Any = ()) -> Any:
        if self.placeholder != "?":
            sql = sql.replace("?", self.placeholder)
        return db.execute(sql, args)

    # -- edges ---------------------------------------------------------------------------
    def record(self, db: Any, rec: InstanceRecord) -> None:
        """Insert the edges of a record being added."""
        self._insert(db, rec.sop_uid, rec.series_uid, rec.study_uid, rec.references)

    def _insert(
        self, db: Any, sop: str, series: str, study: str, refs: Iterable[Reference]
    ) -> None:
        rows = [(sop, series, study, r.uid, r.level, r.frame or 0, r.via) for r in refs]
        row_marks = f"({_marks(_EDGE_COLS)})"
        for i in range(0, len(rows), _CHUNK):
            chunk = rows[i : i + _CHUNK]
            self._x(
                db,
                f"INSERT INTO refs ({', '.join(_EDGE_COLS)}) VALUES"
                f" {','.join(row_marks for _ in chunk)} ON CONFLICT DO NOTHING",
                [v for row in chunk for v in row],
            )

    def forget(self, db: Any, sop: str) -> None:
        """Remove the edges of an instance being removed."""
        self._x(db, "DELETE FROM refs WHERE sop_uid = ?", (sop,))

    def edges(self, db: Any, sop: str) -> list[Reference]:
        found = self._x(
            db,
            "SELECT target, level, via, frame FROM refs WHERE sop_uid = ?"
            " ORDER BY via, level, target, frame",
            (sop,),
        ).fetchall()
        return [Reference(t, lv, via, f or None) for t, lv, via, f in found]

    def backfill(self, db: Any, batch: int = 500) -> int:
        """Edges of every stored instance, from its stored metadata (a migration step);
        returns the number of instances that reference something."""
        last, n = "", 0
        while True:
            page = self._x(
                db,
                "SELECT sop_uid, series_uid, study_uid, metadata FROM instances"
                " WHERE sop_uid > ? ORDER BY sop_uid LIMIT ?",
                (last, batch),
            ).fetchall()
            if not page:
                return n
            for sop, series, study, meta in page:
                try:
                    refs = references.from_json(orjson.loads(bytes(meta)))
                except Exception as e:  # noqa: BLE001 (a stored oddity: no edges, say so)
                    log.warning("instance %s: references not read: %s", sop, e)
                    refs = ()
                if refs:
                    self.forget(db, sop)
                    self._insert(db, sop, series, study, refs)
                    n += 1
            last = page[-1][0]

    # -- QIDO ----------------------------------------------------------------------------
    def clauses(self, query: Query) -> list[tuple[str, list[Any]]]:
        """SQL conditions (``?`` placeholders) for the query's research keys, on the
        search's table aliases (``st``, ``se``, ``i``)."""
        return [self._clause(query.level, key) for key in query.research]

    def _clause(self, level: Level, key: ResearchKey) -> tuple[str, list[Any]]:
        own = _OWN[level]
        v = list(key.values)
        if key.kind == REFERENCES:
            col = {Level.STUDY: "study_uid", Level.SERIES: "series_uid"}.get(level, "sop_uid")
            return f"{own} IN (SELECT r.{col} FROM refs r WHERE r.target IN ({_marks(v)}))", v
        if key.kind == REFERENCED_BY:
            named = " UNION ".join(
                f"SELECT target FROM refs WHERE {c} IN ({_marks(v)})"
                for c in ("sop_uid", "series_uid", "study_uid")
            )
            return self._named(level, named, v * 3)
        if key.kind == HAS:
            clause, args = self._has(level, key)
            return (f"NOT ({clause})" if key.negated else clause), args
        assert key.kind == LABEL
        if level is Level.STUDY:
            inner = "SELECT l.study_uid FROM labels l WHERE l.series_uid = '' AND l.label = ?"
        else:
            inner = "SELECT l.series_uid FROM labels l WHERE l.series_uid <> '' AND l.label = ?"
        return f"{own} {'NOT IN' if key.negated else 'IN'} ({inner})", v

    @staticmethod
    def _named(level: Level, named: str, args: list[Any]) -> tuple[str, list[Any]]:
        """Rows of ``level`` whose UID is among the UIDs ``named`` selects, or that hold
        a series or instance whose UID is."""
        own = _OWN[level]
        parts = [f"{own} IN ({named})"]
        if level is Level.STUDY:
            parts.append(
                f"{own} IN (SELECT n.study_uid FROM series n WHERE n.series_uid IN ({named}))"
            )
        if level in (Level.STUDY, Level.SERIES):
            col = "study_uid" if level is Level.STUDY else "series_uid"
            parts.append(f"{own} IN (SELECT n.{col} FROM instances n WHERE n.sop_uid IN ({named}))")
        return "(" + " OR ".join(parts) + ")", args * len(parts)

    def _has(self, level: Level, key: ResearchKey) -> tuple[str, list[Any]]:
        mods, classes = list(key.modalities), list(key.sop_classes)
        if level is Level.STUDY:
            parts, args = [], []
            if mods:
                parts.append(
                    f"SELECT h.study_uid FROM series h WHERE h.modality IN ({_marks(mods)})"
                )
                args += mods
            if classes:
                parts.append(
                    "SELECT h.study_uid FROM instances h"
                    f" WHERE h.sop_class_uid IN ({_marks(classes)})"
                )
                args += classes
            return f"st.study_uid IN ({' UNION '.join(parts)})", args
        parts, args = [], []
        if mods:
            parts.append(
                "SELECT r.target FROM refs r JOIN series rs ON rs.series_uid = r.series_uid"
                f" WHERE rs.modality IN ({_marks(mods)})"
            )
            args += mods
        if classes:
            parts.append(
                "SELECT r.target FROM refs r JOIN instances ri ON ri.sop_uid = r.sop_uid"
                f" WHERE ri.sop_class_uid IN ({_marks(classes)})"
            )
            args += classes
        return self._named(level, " UNION ".join(parts), args)

    # -- labels --------------------------------------------------------------------------
    def _exists(self, db: Any, study: str, series: str | None) -> None:
        if series is None:
            row = self._x(db, "SELECT 1 FROM studies WHERE study_uid = ?", (study,)).fetchone()
            what = f"study {study}"
        else:
            row = self._x(
                db, "SELECT 1 FROM series WHERE series_uid = ? AND study_uid = ?", (series, study)
            ).fetchone()
            what = f"series {series} of study {study}"
        if row is None:
            raise NotFound(f"{what} not found")

    def labels(self, db: Any, study: str, series: str | None) -> list[str]:
        self._exists(db, study, series)
        found = self._x(
            db,
            "SELECT label FROM labels WHERE study_uid = ? AND series_uid = ? ORDER BY label",
            (study, series or ""),
        ).fetchall()
        return [r[0] for r in found]

    def add_label(self, db: Any, study: str, series: str | None, label: str) -> bool:
        self._exists(db, study, series)
        cur = self._x(
            db,
            "INSERT INTO labels (study_uid, series_uid, label, time) VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (study, series or "", label, time.time()),
        )
        created = bool(cur.rowcount)
        if created:
            self._log(db, study, series)
        return created

    def remove_label(self, db: Any, study: str, series: str | None, label: str) -> bool:
        self._exists(db, study, series)
        cur = self._x(
            db,
            "DELETE FROM labels WHERE study_uid = ? AND series_uid = ? AND label = ?",
            (study, series or "", label),
        )
        removed = bool(cur.rowcount)
        if removed:
            self._log(db, study, series)
        return removed

    def _log(self, db: Any, study: str, series: str | None) -> None:
        if self.before_change:
            self._x(db, self.before_change)
        seq = self._x(
            db,
            "INSERT INTO changes (op, study_uid, series_uid, sop_uid, time)"
            " VALUES ('label', ?, ?, '', ?) RETURNING seq",
            (study, series or "", time.time()),
        ).fetchone()[0]
        if self.after_change:
            self._x(db, self.after_change, (str(seq),))

    def labels_of(self, db: Any, level: Level, uids: list[str]) -> dict[str, list[str]]:
        """Labels of studies or series by UID (``storage.labels.Lookup``)."""
        out: dict[str, list[str]] = {}
        col = "study_uid" if level is Level.STUDY else "series_uid"
        scope = "series_uid = '' AND " if level is Level.STUDY else ""
        for i in range(0, len(uids), 500):
            chunk = uids[i : i + 500]
            found = self._x(
                db,
                f"SELECT {col}, label FROM labels WHERE {scope}{col} IN ({_marks(chunk)})",
                chunk,
            ).fetchall()
            for uid, label in found:
                out.setdefault(uid, []).append(label)
        return out

    def after_delete(self, db: Any, removed: list[InstanceRecord]) -> None:
        """Labels of the series and studies that a delete emptied go with them."""
        for series in {r.series_uid for r in removed}:
            if (
                self._x(db, "SELECT 1 FROM series WHERE series_uid = ?", (series,)).fetchone()
                is None
            ):
                self._x(db, "DELETE FROM labels WHERE series_uid = ?", (series,))
        for study in {r.study_uid for r in removed}:
            if (
                self._x(db, "SELECT 1 FROM studies WHERE study_uid = ?", (study,)).fetchone()
                is None
            ):
                self._x(db, "DELETE FROM labels WHERE study_uid = ?", (study,))
