"""Every attribute value of every instance, as SQL rows: extension keys answered by index.

The SQL backends (SQLite, PostgreSQL) keep ``core.anyattr.entries`` of each instance in
three tables:

* ``attr_owners`` (``id``, ``sop_uid``, ``series_uid``, ``study_uid``): a small integer
  per instance, so that value rows stay short;
* ``attr_values`` (``owner``, ``path``, ``occ``, ``pos``, ``num``, ``txt``): one row per
  value (path, occurrence of that path in the instance, position in the value list),
  the number in ``num`` for numeric VRs, the text in ``txt`` otherwise; its key is
  (owner, path, occ, pos), and partial indexes on (path, num) and (path, txt) answer
  every extension condition by an index range;
* ``attr_paths`` (``path``, ``id``): the paths into sequences that occur, so that a
  path key also finds the same chain further down.

A path's id is its tag for a top-level attribute, and a 47-bit hash above 2**32 for a
path into sequences (``path_id``): a write never reads ids back, and ``attr_paths``'
unique ``id`` makes a (never seen) hash collision an error rather than a misread.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson

from webpacs.core import anyattr
from webpacs.core.anyattr import Entry, PathMatch, ValueTest
from webpacs.core.attributes import Level
from webpacs.core.query import Condition

if TYPE_CHECKING:
    from webpacs.storage.sqltables import Dialect

log = logging.getLogger("webpacs.index")

SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS attr_owners (
    id INTEGER PRIMARY KEY, sop_uid TEXT NOT NULL UNIQUE, series_uid TEXT NOT NULL,
    study_uid TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attr_paths (path TEXT PRIMARY KEY, id INTEGER NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS attr_values (
    owner INTEGER NOT NULL, path INTEGER NOT NULL, occ INTEGER NOT NULL, pos INTEGER NOT NULL,
    num REAL, txt TEXT, PRIMARY KEY (owner, path, occ, pos)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS attr_values_num ON attr_values(path, num) WHERE num IS NOT NULL;
CREATE INDEX IF NOT EXISTS attr_values_txt ON attr_values(path, txt) WHERE txt IS NOT NULL;
"""

_C = 'TEXT COLLATE "C"'
POSTGRESQL_DDL = f"""
CREATE TABLE attr_owners (
    id BIGSERIAL PRIMARY KEY, sop_uid {_C} NOT NULL UNIQUE, series_uid {_C} NOT NULL,
    study_uid {_C} NOT NULL);
CREATE TABLE attr_paths (path {_C} PRIMARY KEY, id BIGINT NOT NULL UNIQUE);
CREATE TABLE attr_values (
    owner BIGINT NOT NULL, path BIGINT NOT NULL, occ INTEGER NOT NULL, pos SMALLINT NOT NULL,
    num DOUBLE PRECISION, txt {_C}, PRIMARY KEY (owner, path, occ, pos));
CREATE INDEX attr_values_num ON attr_values(path, num, owner) WHERE num IS NOT NULL;
CREATE INDEX attr_values_txt ON attr_values(path, txt, owner) WHERE txt IS NOT NULL;
"""

_HASH_BASE = 1 << 32
_OWN = {
    Level.INSTANCE: ("i.sop_uid", "sop_uid"),
    Level.SERIES: ("se.series_uid", "series_uid"),
    Level.STUDY: ("st.study_uid", "study_uid"),
}


@lru_cache(maxsize=65536)
def path_id(key: str) -> int:
    """The integer an index keeps for a path key (``00180050``, ``52009229.00289110.00280030``)."""
    if "." not in key:
        return int(key, 16)
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return _HASH_BASE + int.from_bytes(digest) % (1 << 47)


def _postgresql(d: Dialect) -> bool:
    return d.placeholder == "%s"


# --------------------------------------------------------------------------- writes


def add(
    d: Dialect,
    db: Any,
    sop: str,
    series: str,
    study: str,
    meta: dict[str, Any],
    found: Sequence[Entry] | None = None,
) -> None:
    """Index every value of one instance (inside the caller's transaction); ``found``:
    ``anyattr.entries(meta)`` when the caller has them already."""
    found = anyattr.entries(meta) if found is None else found
    owner = db.execute(
        d.sql(
            "INSERT INTO attr_owners (sop_uid, series_uid, study_uid) VALUES (?, ?, ?) RETURNING id"
        ),
        (sop, series, study),
    ).fetchone()[0]
    nested = sorted({e[0] for e in found if "." in e[0]})
    cur = db.cursor()
    if nested:
        cur.executemany(
            d.sql("INSERT INTO attr_paths (path, id) VALUES (?, ?) ON CONFLICT (path) DO NOTHING"),
            [(k, path_id(k)) for k in nested],
        )
    if not found:
        return
    if _postgresql(d):  # one statement, not one per row
        cols = list(zip(*((path_id(k), o, p, n, t) for k, o, p, n, t in found), strict=True))
        db.execute(
            "INSERT INTO attr_values (owner, path, occ, pos, num, txt) SELECT %s, * FROM"
            " unnest(%s::bigint[], %s::int[], %s::smallint[], %s::float8[], %s::text[])",
            (owner, *(list(c) for c in cols)),
        )
        return
    cur.executemany(
        "INSERT INTO attr_values (owner, path, occ, pos, num, txt) VALUES (?, ?, ?, ?, ?, ?)",
        [(owner, path_id(k), o, p, n, t) for k, o, p, n, t in found],
    )


def remove(d: Dialect, db: Any, sop: str) -> None:
    """Drop one instance's values (inside the caller's transaction)."""
    row = db.execute(d.sql("SELECT id FROM attr_owners WHERE sop_uid = ?"), (sop,)).fetchone()
    if row is None:
        return
    db.execute(d.sql("DELETE FROM attr_values WHERE owner = ?"), (row[0],))
    db.execute(d.sql("DELETE FROM attr_owners WHERE id = ?"), (row[0],))


def backfill(d: Dialect, db: Any, batch: int = 500) -> int:
    """Index the instances that have no values yet, from their stored metadata (the
    migration of an index written before this table existed); returns how many."""
    done = 0
    while True:
        found = db.execute(
            d.sql(
                "SELECT i.sop_uid, i.series_uid, i.study_uid, i.metadata FROM instances i"
                " WHERE NOT EXISTS (SELECT 1 FROM attr_owners o WHERE o.sop_uid = i.sop_uid)"
                " LIMIT ?"
            ),
            (batch,),
        ).fetchall()
        for sop, series, study, metadata in found:
            add(d, db, sop, series, study, orjson.loads(bytes(metadata)))
        done += len(found)
        if len(found) < batch:
            if done:
                log.info("indexed the attribute values of %d stored instances", done)
            return done


#: SQLite's ``PRAGMA user_version`` once this module's tables exist and are filled.
def migrate_sqlite(conn: Any, d: Dialect) -> None:
    """Create and fill the tables in an SQLite index (a step of ``storage.sqlschema``,
    which runs it in its transaction and records the version)."""
    for statement in SQLITE_DDL.split(";"):
        if statement.strip():
            conn.execute(statement)
    backfill(d, conn)


def migrate_postgresql(conn: Any) -> None:
    """The PostgreSQL schema step that adds the tables and fills them."""
    from webpacs.storage.postgresql.index import TABLES  # the backend's dialect

    conn.execute(POSTGRESQL_DDL)
    backfill(TABLES.d, conn)


# --------------------------------------------------------------------------- queries


def _value_sql(d: Dialect, a: str, t: ValueTest) -> tuple[str, list[Any]]:
    args: list[Any] = []
    if t.op == "num":
        ors = []
        for lo, hi in t.bounds:
            if lo is not None and hi is not None:
                ors.append(f"{a}.num BETWEEN ? AND ?")
                args += [lo, hi]
            elif lo is not None:
                ors.append(f"{a}.num >= ?")
                args.append(lo)
            else:
                ors.append(f"{a}.num <= ?")
                args.append(hi)
        return f"{a}.num IS NOT NULL AND ({' OR '.join(ors)})", args
    if t.op == "in":
        return f"{a}.txt IS NOT NULL AND {a}.txt IN ({','.join('?' * len(t.texts))})", list(t.texts)
    if t.op == "glob":
        return f"{a}.txt IS NOT NULL AND {a}.txt {d.match_op} ?", [d.pattern(t.texts[0])]
    if t.op == "range":
        first, last = t.texts
        parts = [f"{a}.txt IS NOT NULL", f"{a}.txt <> ''"]
        if first:
            parts.append(f"{a}.txt >= ?")
            args.append(first)
        if last:
            parts.append(f"{a}.txt <= ?")
            args.append(last)
        return " AND ".join(parts), args
    return "1 = 1", []


def _path_sql(m: PathMatch, a: str) -> tuple[str, list[Any]]:
    key = m.path.key
    if not m.path.nested:
        return f"{a}.path = ?", [path_id(key)]
    return (
        f"{a}.path IN (SELECT p.id FROM attr_paths p WHERE p.path = ? OR p.path LIKE ?)",
        [key, "%." + key],
    )


def owners_sql(d: Dialect, m: PathMatch, owner: str | None = None) -> tuple[str, list[Any]]:
    """A ``SELECT`` of the owners (``attr_owners.id``) of the instances ``m`` matches; with
    ``owner`` (an outer column), only that owner's values are read (a key lookup)."""
    where, args = _path_sql(m, "v0")
    if owner is not None:
        where = f"v0.owner = {owner} AND {where}"
    if not m.positional:
        value, vargs = _value_sql(d, "v0", m.tests[0])
        return f"SELECT v0.owner FROM attr_values v0 WHERE {where} AND {value}", args + vargs
    tests = [(i, t) for i, t in enumerate(m.tests) if t.op != "any"]
    joins: list[str] = []
    jargs: list[Any] = []
    conds, cargs = [where, "v0.pos = ?"], [*args, tests[0][0]]
    for k, (i, t) in enumerate(tests):
        a = f"v{k}"
        if k:
            joins.append(
                f" JOIN attr_values {a} ON {a}.owner = v0.owner AND {a}.path = v0.path"
                f" AND {a}.occ = v0.occ AND {a}.pos = ?"
            )
            jargs.append(i)
        value, vargs = _value_sql(d, a, t)
        conds.append(value)
        cargs += vargs
    conds.append(
        "NOT EXISTS (SELECT 1 FROM attr_values vx WHERE vx.owner = v0.owner"
        " AND vx.path = v0.path AND vx.occ = v0.occ AND vx.pos >= ?)"
    )
    cargs.append(len(m.tests))
    sql = "SELECT v0.owner FROM attr_values v0" + "".join(joins) + " WHERE " + " AND ".join(conds)
    return sql, jargs + cargs


def conditions_sql(d: Dialect, conds: list[Condition], level: Level) -> tuple[str, list[Any]]:
    """The ``WHERE`` term of a query's extension conditions at ``level``: the row's
    instance matches them all, or (series, study) one of its instances does.

    The first key's index range finds the candidates; each further key is a lookup in
    the candidate's own values (so the most selective key should come first)."""
    terms, args = [], []
    for i, cond in enumerate(conds):
        assert cond.path is not None
        inner, inner_args = owners_sql(d, cond.path, None if i == 0 else "o.id")
        terms.append(f"o.id IN ({inner})" if i == 0 else f"EXISTS ({inner})")
        args += inner_args
    column, owned = _OWN[level]
    return f"{column} IN (SELECT o.{owned} FROM attr_owners o WHERE {' AND '.join(terms)})", args
