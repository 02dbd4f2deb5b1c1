"""Follow the change feed and rebuild the derived documents of what changed.

Whatever door an instance came through (STOW-RS, C-STORE, ``webpacs import``, another
node, CouchDB replication), it shows up in ``Index.changes``. The deriver polls that
feed and rebuilds the gzip'd series and study metadata of every series that changed,
for the base URLs clients have used, and their thumbnails, so the next viewer that opens
the study gets a pre-computed document instead of waiting for a build. Reads still rebuild a stale
document themselves; the deriver only moves that work off the request path.

It yields to ingest: a series still receiving instances is rebuilt once it has been
``QUIET`` seconds without a change (or, while it keeps changing, every ``MAX_DELAY``
seconds), not at every poll, since a document built while its series grows is stale at
once. And one deriver per node does the work: with several server processes on one
data directory, the one holding ``lock_path`` (an advisory ``flock``) rebuilds, the others
follow the feed and take over when it stops. Both cost CPU that ingest needs: measured
during a STOW-RS benchmark, the derivers of two workers took 8 % of the server's samples.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import IO

from webpacs.documents import metadata, thumbnails
from webpacs.errors import NotFound, WebpacsError
from webpacs.storage.base import Blobs, Index

log = logging.getLogger("webpacs.deriver")

#: How many base URLs (host names clients use) documents are kept warm for.
MAX_BASES = 4
#: Seconds without a change before a series' documents are rebuilt by the loop.
QUIET = 1.0
#: Seconds a series that keeps changing waits at most for its rebuild.
MAX_DELAY = 10.0


class Deriver:
    """Rebuilds derived documents after changes; ``start()`` runs it on a daemon thread."""

    def __init__(
        self,
        index: Index,
        blobs: Blobs,
        *,
        interval: float = 2.0,
        lock_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.index = index
        self.blobs = blobs
        self.interval = interval
        self.lock_path = lock_path
        self._lock_file: IO[bytes] | None = None
        #: series waiting for a rebuild -> (first seen, last seen changing), monotonic
        self._pending: dict[tuple[str, str], tuple[float, float]] = {}
        self._bases: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.seq = self._latest()  # what happened before the start is rebuilt on read

    def _latest(self) -> int:
        seq = 0
        while batch := self.index.changes(seq, 10_000):
            seq = batch[-1].seq
        return seq

    def remember(self, base_url: str) -> None:
        """Keep documents warm for ``base_url`` (the most recent ``MAX_BASES`` ones)."""
        with self._lock:
            self._bases[base_url] = None
            self._bases.move_to_end(base_url)
            while len(self._bases) > MAX_BASES:
                self._bases.popitem(last=False)

    def run_once(self, limit: int = 1000, *, quiet: float = 0.0) -> int:
        """Handle the changes since the last call; returns how many changes it read.

        With ``quiet`` > 0 a series is rebuilt only once ``quiet`` seconds passed since it
        was last seen changing (or ``MAX_DELAY`` since it first was); the others wait for a
        later call. Without, every series that changed is rebuilt now.
        """
        changes = self.index.changes(self.seq, limit)
        now = time.monotonic()
        # a label change leaves the documents as they are
        for c in changes:
            if c.op != "label":
                key = (c.study_uid, c.series_uid)
                self._pending[key] = (self._pending.get(key, (now, now))[0], now)
        if changes:
            self.seq = changes[-1].seq
        due = {
            key
            for key, (first, last) in self._pending.items()
            if now - last >= quiet or now - first >= MAX_DELAY
        }
        for key in due:
            del self._pending[key]
        if due:
            self._rebuild(due)
        return len(changes)

    def _rebuild(self, touched: set[tuple[str, str]]) -> None:
        with self._lock:
            bases = list(self._bases)
        rebuilt = 0
        for study, series in sorted(touched):
            for base in bases:
                try:
                    metadata.series_metadata_gz(self.index, self.blobs, study, series, base)
                    rebuilt += 1
                except NotFound:
                    metadata.drop_series(self.blobs, study, series)
            for base in bases:
                try:
                    metadata.study_metadata_gz(self.index, self.blobs, study, base)
                except NotFound:
                    metadata.drop_study(self.blobs, study)
            thumbnails.prebuild(self.index, self.blobs, study, series)
        log.debug("rebuilt %d series document(s) up to change %d", rebuilt, self.seq)

    def _leading(self) -> bool:
        """Whether this process does the rebuilds (it holds ``lock_path``, or there is none)."""
        if self.lock_path is None or self._lock_file is not None:
            return True
        f = open(self.lock_path, "ab")  # noqa: SIM115  (held while this deriver runs)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        self._lock_file = f
        return True

    def _loop(self) -> None:
        # an index that announces changes (PostgreSQL's NOTIFY) wakes the deriver early
        wait = getattr(self.index, "wait_for_change", None)
        while not self._stop.is_set():
            pause = min(self.interval, QUIET) if self._pending else self.interval
            if wait is None:
                self._stop.wait(pause)
            else:
                self._wait_for_change(wait, pause)
            if self._stop.is_set():
                return
            try:
                if not self._leading():  # another process rebuilds: follow the feed only
                    while batch := self.index.changes(self.seq, 1000):
                        self.seq = batch[-1].seq
                    continue
                while self.run_once(quiet=QUIET):
                    if self._stop.is_set():
                        return
            except WebpacsError as e:  # a backend hiccup: try again next round
                log.warning("derived documents not rebuilt: %s", e)
            except Exception:  # a bug must not stop every later rebuild: log it, go on
                log.exception("derived documents not rebuilt")

    def _wait_for_change(self, wait: Callable[[float], bool], pause: float) -> None:
        """Until a change is announced or ``pause`` passes (in short slices, so that
        ``stop()`` is not kept waiting)."""
        deadline = time.monotonic() + pause
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            try:
                if wait(min(left, 1.0)):
                    return
            except WebpacsError:
                self._stop.wait(min(left, 1.0))

    def start(self) -> None:
        """Poll the change feed every ``interval`` seconds until ``stop()``."""
        self._thread = threading.Thread(target=self._loop, name="deriver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock: another process takes over
            self._lock_file = None
