"""Which series came from the remote PACS, and their eviction (``proxy.cacheMax*``).

Retrieved series are ordinary stored instances (they went through ``ingest``); this
module keeps, in its own SQLite file next to the index (``proxy.sqlite3``), the record
of which series a proxy retrieve brought in and the digest of each of their instances.
Eviction removes only those, oldest retrieve first, and only an instance whose stored
digest is still the recorded one: what STOW-RS, C-STORE or ``webpacs import`` stored,
before or after, is never evicted.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from webpacs.remove import Target, remove_many
from webpacs.storage.base import InstanceRecord
from webpacs.storage.registry import Store

log = logging.getLogger("webpacs.proxy")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    retrieved REAL NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (study_uid, series_uid)
);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    digest TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_series ON instances (study_uid, series_uid);
"""


@dataclass(frozen=True)
class CachedSeries:
    """One retrieved series."""

    study_uid: str
    series_uid: str
    retrieved: float
    bytes: int


class ProxyCache:
    """The record of retrieved series (thread-safe; one connection behind a lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record(self, records: Iterable[InstanceRecord], *, now: float | None = None) -> None:
        """Remember instances a retrieve stored; their series count as retrieved ``now``."""
        stamp = time.time() if now is None else now
        by_series: dict[tuple[str, str], int] = {}
        rows = []
        for rec in records:
            key = (rec.study_uid, rec.series_uid)
            by_series[key] = by_series.get(key, 0) + rec.size
            rows.append((rec.sop_uid, rec.study_uid, rec.series_uid, rec.digest))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO instances VALUES (?, ?, ?, ?)", rows)
                for (study, series), size in by_series.items():
                    self._db.execute(
                        "INSERT INTO series VALUES (?, ?, ?, ?) ON CONFLICT (study_uid, series_uid)"
                        " DO UPDATE SET retrieved = excluded.retrieved,"
                        " bytes = series.bytes + excluded.bytes",
                        (study, series, stamp, size),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def series(self) -> list[CachedSeries]:
        """Every retrieved series, oldest retrieve first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT study_uid, series_uid, retrieved, bytes FROM series"
                " ORDER BY retrieved, study_uid, series_uid"
            ).fetchall()
        return [CachedSeries(*r) for r in rows]

    def _instances(self, study: str, series: str) -> list[tuple[str, str]]:
        with self._lock:
            return self._db.execute(
                "SELECT sop_uid, digest FROM instances WHERE study_uid = ? AND series_uid = ?",
                (study, series),
            ).fetchall()

    def _forget(self, study: str, series: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM instances WHERE study_uid = ? AND series_uid = ?", (study, series)
            )
            self._db.execute(
                "DELETE FROM series WHERE study_uid = ? AND series_uid = ?", (study, series)
            )

    def remove(self, store: Store, entry: CachedSeries) -> int:
        """Delete a retrieved series' instances that are still as retrieved; forget it."""
        ours: list[Target] = []
        for sop, digest in self._instances(entry.study_uid, entry.series_uid):
            rec = store.index.get(sop)
            if rec is None or rec.digest != digest:
                continue  # deleted, or replaced by a local store since: not ours any more
            ours.append((rec.study_uid, rec.series_uid, sop))
        removed = remove_many(store, ours)
        self._forget(entry.study_uid, entry.series_uid)
        return len(removed)

    def evict(
        self,
        store: Store,
        *,
        max_bytes: int,
        max_age_hours: float,
        keep: frozenset[tuple[str, str]] = frozenset(),
        now: float | None = None,
    ) -> list[CachedSeries]:
        """Evict retrieved series, oldest first, while over ``max_bytes`` or older than
        ``max_age_hours`` (0 = no limit); ``keep`` (the series just retrieved) stays."""
        stamp = time.time() if now is None else now
        entries = self.series()
        total = sum(e.bytes for e in entries)
        evicted = []
        for entry in entries:
            expired = max_age_hours > 0 and stamp - entry.retrieved > max_age_hours * 3600
            over = max_bytes > 0 and total > max_bytes
            if not (expired or over):
                break  # oldest first: the rest is younger and the size fits
            if (entry.study_uid, entry.series_uid) in keep:
                continue
            n = self.remove(store, entry)
            total -= entry.bytes
            evicted.append(entry)
            log.info(
                "evicted retrieved series %s (%d instance(s), %d bytes, %s)",
                entry.series_uid,
                n,
                entry.bytes,
                "expired" if expired else "over proxy.cacheMaxBytes",
            )
        return evicted
