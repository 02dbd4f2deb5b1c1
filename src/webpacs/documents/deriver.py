"""Follow the change feed and rebuild the derived documents of what changed.

Whatever door an instance came through (STOW-RS, C-STORE, ``webpacs import``, another
node, CouchDB replication), it shows up in ``Index.changes``. The deriver polls that
feed and rebuilds the gzip'd series and study metadata of every series that changed,
for the base URLs clients have used, and their thumbnails, so the next viewer that opens
the study gets a pre-computed document instead of waiting for a build. Reads still rebuild a stale
document themselves; the deriver only moves that work off the request path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from webpacs.documents import metadata, thumbnails
from webpacs.errors import NotFound, WebpacsError
from webpacs.storage.base import Blobs, Index

log = logging.getLogger("webpacs.deriver")

#: How many base URLs (host names clients use) documents are kept warm for.
MAX_BASES = 4


class Deriver:
    """Rebuilds derived documents after changes; ``start()`` runs it on a daemon thread."""

    def __init__(self, index: Index, blobs: Blobs, *, interval: float = 2.0) -> None:
        self.index = index
        self.blobs = blobs
        self.interval = interval
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

    def run_once(self, limit: int = 1000) -> int:
        """Handle the changes since the last call; returns how many changes it read."""
        changes = self.index.changes(self.seq, limit)
        if not changes:
            return 0
        # a label change leaves the documents as they are
        touched = {(c.study_uid, c.series_uid) for c in changes if c.op != "label"}
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
        self.seq = changes[-1].seq
        log.debug("rebuilt %d series document(s) up to change %d", rebuilt, self.seq)
        return len(changes)

    def _loop(self) -> None:
        # an index that announces changes (PostgreSQL's NOTIFY) wakes the deriver early
        wait = getattr(self.index, "wait_for_change", None)
        while not self._stop.is_set():
            if wait is None:
                self._stop.wait(self.interval)
            else:
                self._wait_for_change(wait)
            if self._stop.is_set():
                return
            try:
                while self.run_once():
                    if self._stop.is_set():
                        return
            except WebpacsError as e:  # a backend hiccup: try again next round
                log.warning("derived documents not rebuilt: %s", e)
            except Exception:  # a bug must not stop every later rebuild: log it, go on
                log.exception("derived documents not rebuilt")

    def _wait_for_change(self, wait: Callable[[float], bool]) -> None:
        """Until a change is announced or ``interval`` passes (in short slices, so that
        ``stop()`` is not kept waiting)."""
        deadline = time.monotonic() + self.interval
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
