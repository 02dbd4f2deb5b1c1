"""The proxy to a remote PACS: remote search (``queryAe``) and retrieve (``proxyAe``).

Synchronous, like the storage Protocol: the web layer calls it on its threadpool and
makes concurrent retrieves of the same series wait for one (``web.remote``); across the
worker processes of one store, retrieves of one study take turns on a file lock and the
later ones find the series stored.

* ``search``: the C-FIND side of a QIDO-RS study or series search (PS3.18 10.6,
  PS3.4 C.4.1), as rows marked remote (``query.mark_remote``).
* ``retrieve``: brings a study or series from the ``proxyAe`` into the store, by
  C-MOVE to our own SCP (``dimse.aeTitle``, PS3.4 C.4.2; the SCP ingests what arrives)
  or by C-GET (PS3.4 C.4.3; ingested here). Either way every instance goes through
  ``ingest``. The retrieved series are recorded (``cache.ProxyCache``) and the cache
  limits applied.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from webpacs.config import Settings
from webpacs.core.attributes import Level
from webpacs.core.query import Query
from webpacs.dimse.scu import Remote, RetrieveResult, Scu
from webpacs.errors import NotFound, UpstreamError
from webpacs.ingest import ingest
from webpacs.proxy import query as q
from webpacs.proxy.cache import ProxyCache
from webpacs.storage.registry import Store

log = logging.getLogger("webpacs.proxy")

#: Lock files for retrieves (studies hash onto them; two studies may share one).
LOCK_SLOTS = 64


@dataclass
class Proxy:
    """The configured remote AEs (either may be None) and the record of retrieves."""

    settings: Settings
    store: Store
    query_remote: Remote | None
    proxy_remote: Remote | None
    cache: ProxyCache
    lock_dir: Path
    stats: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, store: Store) -> Proxy | None:
        """The proxy for ``queryAe``/``proxyAe``, or None when neither is set."""
        names = settings.query_ae, settings.proxy_ae
        if not any(names):
            return None
        query_remote, proxy_remote = (
            Remote.from_entry(name, settings.ae(name), settings.dimse.tls) if name else None
            for name in names
        )
        data_dir = settings.for_service("server").data_dir
        cache = ProxyCache(data_dir / "proxy.sqlite3")
        return cls(settings, store, query_remote, proxy_remote, cache, data_dir / "proxy-locks")

    def close(self) -> None:
        self.cache.close()

    @property
    def own_title(self) -> str:
        return self.settings.dimse.ae_title

    @property
    def timeout(self) -> float:
        return self.settings.proxy.timeout

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    # -- search ------------------------------------------------------------------
    def search(self, query: Query, cap: int | None) -> list[dict[str, Any]]:
        """Rows of the ``queryAe`` matching a STUDY or SERIES ``query``, marked remote.

        ``cap`` bounds the number of studies a series search explores (see
        ``query.series_plan``). Raises ``UpstreamError``/``UpstreamTimeout``.
        """
        assert self.query_remote is not None
        scu = Scu(self.own_title, self.query_remote, self.timeout)
        self._count("finds")
        if query.level is Level.STUDY:
            found = scu.find([q.study_identifier(query)])[0]
            rows = [q.row(ds) for ds in found]
        elif query.level is Level.SERIES:
            rows = self._search_series(scu, query, cap)
        else:
            raise ValueError(f"remote search at {query.level.value} level is not supported")
        retrievable = self.proxy_remote is not None
        return [
            q.mark_remote(r, self.query_remote.title, retrievable=retrievable)
            for r in rows
            if q.keep(query, r)
        ]

    def _search_series(self, scu: Scu, query: Query, cap: int | None) -> list[dict[str, Any]]:
        first, series = q.series_plan(query)
        if first is None:
            return [q.row(ds) for ds in scu.find([series])[0]]
        studies = [q.row(ds) for ds in scu.find([first])[0]][:cap]
        per_study = []
        for study in studies:
            uid = q.uid_of(Level.STUDY, study)
            if uid is None:
                continue
            ident = Dataset()
            ident.update(series)
            ident.StudyInstanceUID = uid
            per_study.append((study, ident))
        out = []
        if per_study:
            answers = scu.find([ident for _, ident in per_study])
            for (study, _), found in zip(per_study, answers, strict=True):
                for ds in found:
                    out.append({**study, **q.row(ds)})
        return out

    # -- retrieve ----------------------------------------------------------------
    def is_local(self, study: str, series: str | None) -> bool:
        """Whether the store has the series (or, with ``series`` None, any of the study)."""
        index = self.store.index
        if series is None:
            return bool(index.study_series(study))
        return index.series_version(study, series) is not None

    def retrieve(self, study: str, series: str | None) -> int:
        """Retrieve a study or series from the ``proxyAe`` unless it is (now) local.

        Returns the number of instances stored. ``NotFound`` when the remote has none;
        ``UpstreamError``/``UpstreamTimeout`` when it fails.
        """
        assert self.proxy_remote is not None
        if self.is_local(study, series):
            return 0
        with self._study_lock(study):  # other worker processes: one retrieve per study
            return self._retrieve(study, series)

    @contextmanager
    def _study_lock(self, study: str) -> Iterator[None]:
        """An exclusive lock per study (of ``LOCK_SLOTS``) shared by every process of the
        store: ``flock`` on a file next to ``proxy.sqlite3``, released if a process dies."""
        slot = int.from_bytes(hashlib.sha256(study.encode()).digest()[:4], "big") % LOCK_SLOTS
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_dir / f"{slot:02d}.lock", "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file is closed
            yield

    def _retrieve(self, study: str, series: str | None) -> int:
        assert self.proxy_remote is not None
        if self.is_local(study, series):  # another process retrieved it meanwhile
            return 0
        index = self.store.index
        before = {r.sop_uid for r in index.instances(study, series)}
        ident = Dataset()
        ident.QueryRetrieveLevel = "STUDY" if series is None else "SERIES"
        ident.StudyInstanceUID = study
        if series is not None:
            ident.SeriesInstanceUID = series
        scu = Scu(self.own_title, self.proxy_remote, self.timeout)
        mode = self.settings.proxy.retrieve
        what = f"series {series}" if series else f"study {study}"
        log.info("retrieving %s from %s by C-%s", what, self.proxy_remote, mode.upper())
        self._count("retrieves")
        try:
            if mode == "get":
                result = scu.get(ident, self._ingest)
            else:
                result = scu.move(ident, self.own_title)
        except UpstreamError as exc:
            self._count("retrieveFailures")
            # Some PACS (Orthanc) answer a C-MOVE that matches nothing with a failure
            # rather than Success with no sub-operations (PS3.4 C.4.2.3.1): ask.
            if exc.status is not None and not self._exists(scu, ident):
                raise NotFound(f"{what} is neither stored here nor on {scu.remote.title}") from exc
            raise
        new = [r for r in index.instances(study, series) if r.sop_uid not in before]
        log.info(
            "retrieved %s: %d instance(s) stored, remote counts %s",
            what,
            len(new),
            _counts(result),
        )
        if not new:
            raise NotFound(f"{what} is neither stored here nor on {self.proxy_remote.title}")
        self.cache.record(new)
        self._count("retrievedInstances", len(new))
        keep = frozenset((r.study_uid, r.series_uid) for r in new)
        evicted = self.cache.evict(
            self.store,
            max_bytes=self.settings.proxy.cache_max_bytes,
            max_age_hours=self.settings.proxy.cache_max_age_hours,
            keep=keep,
        )
        self._count("evictedSeries", len(evicted))
        return len(new)

    def _exists(self, scu: Scu, ident: Dataset) -> bool:
        """Whether a C-FIND for the retrieve's keys matches (True when it cannot tell)."""
        try:
            return bool(scu.find([ident])[0])
        except UpstreamError:
            return True

    def _ingest(self, data: bytes) -> None:
        st = self.store
        ingest(
            st.index,
            st.blobs,
            data,
            overwrite=st.overwrite,
            bulk_threshold=st.bulk_threshold,
            recompress=st.recompress,
        )

    def summary(self) -> dict[str, Any]:
        """Counters and the cache's content, for ``/webpacs/proxy``."""
        entries = self.cache.series()
        with self._lock:
            stats = dict(self.stats)
        return {
            "queryAe": str(self.query_remote) if self.query_remote else None,
            "proxyAe": str(self.proxy_remote) if self.proxy_remote else None,
            "retrieve": self.settings.proxy.retrieve,
            "stats": {
                k: stats.get(k, 0)
                for k in (
                    "finds",
                    "retrieves",
                    "retrieveFailures",
                    "retrievedInstances",
                    "evictedSeries",
                )
            },
            "cache": {
                "series": len(entries),
                "bytes": sum(e.bytes for e in entries),
                "entries": [
                    {
                        "study": e.study_uid,
                        "series": e.series_uid,
                        "retrieved": e.retrieved,
                        "bytes": e.bytes,
                    }
                    for e in entries
                ],
            },
        }


def _counts(result: RetrieveResult) -> str:
    return f"{result.completed} completed, {result.failed} failed, {result.warning} warning"
