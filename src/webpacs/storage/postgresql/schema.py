"""The PostgreSQL schema: tables, its version, and what a node does with it on start.

The tables of ``storage.sqltables`` (in the connection's ``search_path``), in
PostgreSQL's types, plus ``webpacs_schema`` (one row: the schema version). ``changes.seq``
comes from a sequence; changes are logged under one advisory lock, so ``seq`` order is
commit order and a reader following the feed never skips a change committed late.

A node starting on an empty database creates the schema at ``SCHEMA_VERSION``; on an
older version it migrates it (``MIGRATIONS``, in one transaction, under an advisory lock
so that nodes starting together migrate once); on a newer or unknown version it refuses
to start and names the command that migrates (``webpacs migrate``, run by the newer
release). Never a silent misread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from webpacs.core.attributes import Level
from webpacs.errors import ConfigError
from webpacs.storage import sqlattrs, sqlrefs
from webpacs.storage.sqltables import cols

#: Bump when a table changes, and add the step from the previous version to MIGRATIONS.
SCHEMA_VERSION = 3
#: ``pg_advisory_xact_lock`` keys: schema changes, and the change feed's commit order.
SCHEMA_LOCK = 0x7765_6270_0001
CHANGES_LOCK = 0x7765_6270_0002
#: The channel ``NOTIFY`` wakes listeners on after each committed change.
CHANNEL = "webpacs_changes"
MIGRATE_COMMAND = "webpacs migrate"

T = 'TEXT COLLATE "C"'  # byte order, as the matching rules and the other backends compare
REAL = "DOUBLE PRECISION"


def _references_and_labels(conn: Any) -> None:
    """1 -> 2: the reference graph and labels (``storage.sqlrefs``), with the edges of the
    instances already stored."""
    for statement in sqlrefs.statements(T, REAL):
        conn.execute(statement)
    sqlrefs.RefTables("%s").backfill(conn)


#: version -> SQL (or a function of the connection) that brings a schema at that version
#: to the next one.
MIGRATIONS: dict[int, str | Callable[[Any], None]] = {
    1: _references_and_labels,
    2: sqlattrs.migrate_postgresql,  # the attribute-value tables (any attribute as a key)
}


def ddl() -> str:
    def attrs(level: Level) -> str:
        return "".join(f", {a.column} {T}" for a in cols(level))

    return f"""
    CREATE TABLE webpacs_schema (version INTEGER NOT NULL);
    CREATE TABLE studies (
        study_uid {T} PRIMARY KEY{attrs(Level.STUDY)},
        json BYTEA NOT NULL, rep_sop {T} NOT NULL, latest DOUBLE PRECISION NOT NULL,
        num_series INTEGER NOT NULL DEFAULT 0, num_instances INTEGER NOT NULL DEFAULT 0,
        modalities {T} NOT NULL DEFAULT '');
    CREATE TABLE series (
        series_uid {T} PRIMARY KEY, study_uid {T} NOT NULL{attrs(Level.SERIES)},
        json BYTEA NOT NULL, rep_sop {T} NOT NULL, latest DOUBLE PRECISION NOT NULL,
        num_instances INTEGER NOT NULL DEFAULT 0, version BIGINT NOT NULL DEFAULT 0);
    CREATE TABLE instances (
        sop_uid {T} PRIMARY KEY, series_uid {T} NOT NULL, study_uid {T} NOT NULL,
        sop_class_uid {T} NOT NULL, transfer_syntax {T} NOT NULL,
        blob_key {T} NOT NULL, size BIGINT NOT NULL, digest {T} NOT NULL,
        received DOUBLE PRECISION NOT NULL{attrs(Level.INSTANCE)},
        json BYTEA NOT NULL, metadata BYTEA NOT NULL, framemap BYTEA NOT NULL,
        attributes BYTEA NOT NULL);
    CREATE TABLE changes (
        seq BIGSERIAL PRIMARY KEY, op {T} NOT NULL, study_uid {T} NOT NULL,
        series_uid {T} NOT NULL, sop_uid {T} NOT NULL, time DOUBLE PRECISION NOT NULL);
    CREATE TABLE conflicts (
        id BIGSERIAL PRIMARY KEY, study_uid {T} NOT NULL, sop_uid {T} NOT NULL,
        keyword {T} NOT NULL, previous {T}, value {T}, time DOUBLE PRECISION NOT NULL);
    CREATE FUNCTION webpacs_int(v TEXT) RETURNS BIGINT IMMUTABLE LANGUAGE sql AS
        $$ SELECT CASE WHEN v IS NULL THEN NULL
                       ELSE coalesce(substring(v FROM '^\\s*([+-]?[0-9]{{1,18}})')::BIGINT, 0)
                  END $$;
    CREATE INDEX series_study ON series(study_uid);
    CREATE INDEX instances_series ON instances(series_uid, instancenumber);
    CREATE INDEX instances_study_series ON instances(study_uid, series_uid);
    CREATE INDEX instances_received ON instances(study_uid, received);
    CREATE INDEX studies_patientid ON studies(patientid);
    CREATE INDEX studies_date ON studies(studydate, studytime);
    CREATE INDEX studies_accession ON studies(accessionnumber);
    CREATE INDEX series_modality ON series(modality);
    CREATE INDEX conflicts_study ON conflicts(study_uid);
    {"".join(s + ";" for s in sqlrefs.statements(T, REAL))}
    INSERT INTO webpacs_schema (version) VALUES ({SCHEMA_VERSION});
    {sqlattrs.POSTGRESQL_DDL}
    """


def ensure(conn: Any) -> int:
    """Create or migrate the schema on ``conn`` (a psycopg connection, autocommit off);
    returns the version found. Raises ``ConfigError`` naming the migrate command when
    the database holds a schema this release does not know."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        exists = conn.execute("SELECT to_regclass('webpacs_schema') IS NOT NULL").fetchone()[0]
        if not exists:
            if conn.execute("SELECT to_regclass('instances') IS NOT NULL").fetchone()[0]:
                raise ConfigError(
                    "the PostgreSQL database has webpacs tables without a schema version:"
                    f" run `{MIGRATE_COMMAND}` of the release that wrote them"
                )
            conn.execute(ddl())
            return 0
        row = conn.execute("SELECT max(version) FROM webpacs_schema").fetchone()
        found = row[0] if row else None
        if found is None or found > SCHEMA_VERSION:
            raise ConfigError(
                f"the PostgreSQL schema is at version {found}, this release knows versions up"
                f" to {SCHEMA_VERSION}: run `{MIGRATE_COMMAND}` of the newer release that"
                " wrote it, or upgrade this node"
            )
        for version in range(found, SCHEMA_VERSION):
            step = MIGRATIONS[version]
            if isinstance(step, str):
                conn.execute(step)
            else:
                step(conn)
        if found < SCHEMA_VERSION:
            conn.execute("UPDATE webpacs_schema SET version = %s", (SCHEMA_VERSION,))
        return int(found)
