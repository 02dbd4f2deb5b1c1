"""The SQLite index's schema version (``PRAGMA user_version``) and its migrations.

Version 0 is the schema of the releases before versioning (the tables
``storage.sqlite`` creates: ``studies``, ``series``, ``instances``, ``changes``,
``conflicts``); each ``Migration`` brings the schema from the version before it to its
own, in one transaction that also records the new version, so that a crash leaves the
file at the old version or the new one. Opening an index runs what is missing;
``webpacs migrate`` does the same alone. A file at a version newer than ``SCHEMA_VERSION``
(written by a newer release) is refused, naming the command. Never a silent misread.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from webpacs.errors import ConfigError
from webpacs.storage import sqlattrs, sqlrefs

if TYPE_CHECKING:
    from webpacs.storage.sqltables import Tables

log = logging.getLogger("webpacs.index")

MIGRATE_COMMAND = "webpacs migrate"


@dataclass(frozen=True)
class Migration:
    """The step to ``version``: ``step(connection, tables)`` inside a transaction."""

    version: int
    what: str
    step: Callable[[sqlite3.Connection, Tables], None]


def _references_and_labels(db: sqlite3.Connection, tables: Tables) -> None:
    for statement in sqlrefs.statements("TEXT", "REAL"):
        db.execute(statement)
    n = tables.refs.backfill(db)
    if n:
        log.info("index: references of %d stored instance(s) recorded", n)


def _attribute_values(db: sqlite3.Connection, tables: Tables) -> None:
    sqlattrs.migrate_sqlite(db, tables.d)


#: In version order; append a step (with the next version) for each schema change.
MIGRATIONS: list[Migration] = [
    Migration(1, "reference graph and labels (issue 13)", _references_and_labels),
    Migration(2, "attribute values: any attribute as a query key (issue 13)", _attribute_values),
]
SCHEMA_VERSION = MIGRATIONS[-1].version


def version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def ensure(db: sqlite3.Connection, tables: Tables, path: object, base: str) -> int:
    """Bring the index on ``db`` (autocommit mode, no transaction open) to
    ``SCHEMA_VERSION``: its base tables (the script ``base``, idempotent), then the
    migrations it has not had; returns the version found."""
    found = version(db)
    if found > SCHEMA_VERSION:
        raise ConfigError(
            f"the index {path} is at schema version {found}, this release knows versions up"
            f" to {SCHEMA_VERSION}: run `{MIGRATE_COMMAND}` of the newer release that wrote"
            " it, or upgrade"
        )
    db.executescript(base)
    for m in MIGRATIONS:
        if m.version <= found:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            if version(db) < m.version:  # another process may have migrated meanwhile
                m.step(db, tables)
                db.execute(f"PRAGMA user_version = {int(m.version)}")
                log.debug("index %s: schema version %s (%s)", path, m.version, m.what)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return found
