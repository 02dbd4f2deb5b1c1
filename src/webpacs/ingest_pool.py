"""``ingest.prepare`` in worker processes, so that parsing uses every core.

``prepare`` holds the GIL for most of its time (pydicom's parse, DICOM JSON, the index
attributes), so the threads of one server process parse on one core. The server's worker
processes take connections as the kernel hands them out, and two uploads often land on the
same one (measured on 2 cores and 2 workers: in 3 of 4 STOW runs one worker did 80-90 % of
the work), and a single uploading client only ever reaches one. A pool of processes per
server process (``ingest.prepareProcesses``, default one per core) parses each request's
instances on all cores, whichever worker received them; the commit stays where it was.

The pool's processes are started by a ``forkserver`` (never forked from a server process
that runs threads), with this module preloaded, when the app starts; each opens the blob
store from the settings (as ``webpacs import``'s parsers do) and writes the stored objects
itself. A pool whose process died (killed, out of memory) fails the instances it held
(a processing failure, nothing stored) and is started again for the next request.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from webpacs.config import isolated
from webpacs.errors import StorageError, WebpacsError
from webpacs.ingest import Prepared, prepare
from webpacs.storage.base import Blobs
from webpacs.storage.registry import open_store

log = logging.getLogger("webpacs.ingest")

_blobs: Blobs | None = None
_threshold = 1024
_recompress: tuple[str, ...] = ()


def init_worker(values: dict[str, Any]) -> None:
    """Open the blob store of the settings ``values`` in a parser process."""
    global _blobs, _threshold, _recompress
    st = open_store(isolated(values))
    _blobs = st.blobs
    _threshold = st.bulk_threshold
    _recompress = st.recompress
    st.index.close()


def prepare_here(data: bytes, expected_study: str | None) -> Prepared | WebpacsError:
    """``prepare`` in a parser process, its refusal returned rather than raised."""
    assert _blobs is not None, "init_worker was not run"
    try:
        return prepare(
            data,
            _blobs,
            expected_study=expected_study,
            bulk_threshold=_threshold,
            recompress=_recompress,
        )
    except WebpacsError as e:
        return e


def _ready() -> int:
    return os.getpid()


def default_processes(configured: int | None) -> int:
    """``ingest.prepareProcesses``: None = one per core when there are several, else 0."""
    if configured is not None:
        return max(0, configured)
    cores = os.cpu_count() or 1
    return cores if cores > 1 else 0


class PreparePool:
    """A pool of ``processes`` parser processes for the store named by settings ``values``."""

    def __init__(self, values: dict[str, Any], processes: int) -> None:
        self.values = values
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload([__name__])
                self._pool = ProcessPoolExecutor(
                    self.processes, ctx, initializer=init_worker, initargs=(self.values,)
                )
            return self._pool

    def start(self) -> None:
        """Start the processes now (not at the first request); returns without waiting."""
        pool = self._executor()
        for _ in range(self.processes):
            pool.submit(_ready)

    def prepare_all(
        self, items: Sequence[bytes | WebpacsError], expected_study: str | None
    ) -> list[Prepared | WebpacsError]:
        """``prepare`` each item on the pool, in order; items that are errors pass through."""
        pool = self._executor()
        futures = [
            x if isinstance(x, WebpacsError) else pool.submit(prepare_here, x, expected_study)
            for x in items
        ]
        out: list[Prepared | WebpacsError] = []
        for f in futures:
            if isinstance(f, WebpacsError):
                out.append(f)
                continue
            try:
                out.append(f.result())
            except BrokenProcessPool as e:
                out.append(StorageError(f"the parser process stopped: {e}"))
                self._reset(pool)
        return out

    def _reset(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                log.error("a parser process stopped; the pool is started again")
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
