"""Build and update static DICOMweb trees from a store (index + blobs) or from Part 10 files.

A study is always written whole (instance files, then series files, then study files) and its
directory pruned of what the build did not write; ``studies/index.json.gz`` is last, made of
the study rows of the tree. Incremental builds follow the index change feed from the position
saved in the tree (:data:`~.tree.STATE_FILE`) and rewrite only the studies it names.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from webpacs.config import Settings, isolated
from webpacs.core.attributes import Level
from webpacs.core.query import Query
from webpacs.errors import WebpacsError
from webpacs.ingest import commit, prepare
from webpacs.static import dedup
from webpacs.static.instance import InstanceWriter, Recompression, Thresholds
from webpacs.static.tree import (
    FROM_INSTANCE,
    FROM_SERIES,
    Tree,
    gz,
    gz_json,
    instance_dir,
    read_gz_json,
    relocate,
    series_dir,
    study_dir,
)
from webpacs.storage.base import Index
from webpacs.storage.registry import Store, open_store

RETRIEVE_URL = "00081190"

#: Called after each instance is written (progress).
OnInstance = Callable[[], None]


@dataclass
class Options:
    """What to write: inline thresholds and whether to add the deduplicated form."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    dedup: bool = False
    #: stored transfer syntaxes whose frames are written as JPEG-LS lossless (``--recompress``)
    recompress: frozenset[str] = frozenset()


@dataclass
class Report:
    """What a build did."""

    studies: int = 0
    removed: int = 0
    instances: int = 0
    files: int = 0
    seconds: float = 0.0
    seq: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: bytes of the Part 10 input (builds from files only)
    input_bytes: int = 0
    #: frame bytes before and after recompression (``--recompress``)
    recompressed: Recompression = field(default_factory=Recompression)

    @property
    def rate(self) -> float:
        """Instances per second."""
        return self.instances / self.seconds if self.seconds > 0 else 0.0


def _rows(index: Index, level: Level, study: str | None, series: str | None = None) -> list[Any]:
    rows = index.search(Query(level=level, conditions=(), study_uid=study, series_uid=series)).rows
    for row in rows:
        row.pop(RETRIEVE_URL, None)
    return rows


def _uid(row: dict[str, Any], tag: str) -> str:
    return str(row[tag]["Value"][0])


def count_instances(index: Index, studies: Iterable[str]) -> int:
    """Instances in ``studies`` (for a progress total), from the study rows."""
    total = 0
    for s in studies:
        for row in _rows(index, Level.STUDY, s):
            total += int(row.get("00201208", {}).get("Value", [0])[0])
    return total


def latest_seq(index: Index, since: int = 0) -> int:
    """The last sequence number of the change feed."""
    while True:
        page = index.changes(since, limit=1000)
        if not page:
            return since
        since = page[-1].seq


def build_study(
    st: Store,
    tree: Tree,
    study: str,
    opts: Options,
    on_instance: OnInstance | None = None,
    recompression: Recompression | None = None,
) -> int:
    """(Re)write one study; removes its directory when the store no longer has it.

    Returns the number of instances written.
    """
    study_rows = _rows(st.index, Level.STUDY, study)
    sdir = study_dir(study)
    if not study_rows:
        tree.remove_dir(sdir)
        return 0
    keep: set[str] = set()

    def put(rel: str, data: bytes, immutable: bool) -> None:
        keep.add(rel)
        if not (immutable and tree.exists(rel)):
            tree.write(rel, data)

    if recompression is None:
        recompression = Recompression(opts.recompress)
    writer = InstanceWriter(st.blobs, opts.thresholds, put, recompression)
    count = 0
    series_rows = _rows(st.index, Level.SERIES, study)
    for srow in series_rows:
        series = _uid(srow, "0020000E")
        xdir = series_dir(study, series)
        metas: list[bytes] = []
        canon: list[dict[str, Any]] = []
        for rec in st.index.instances(study, series):
            meta = writer.write(rec)
            body = orjson.dumps(meta)
            put(
                f"{instance_dir(study, series, rec.sop_uid)}/metadata.gz",
                gz(b"[" + relocate(body, FROM_INSTANCE) + b"]"),
                False,
            )
            metas.append(relocate(body, FROM_SERIES))
            canon.append(meta)
            count += 1
            if on_instance is not None:
                on_instance()
        put(f"{xdir}/metadata.gz", gz(b"[" + b",".join(metas) + b"]"), False)
        if opts.dedup:
            dedup.write_series(study, series, canon, put)
        put(
            f"{xdir}/instances/index.json.gz",
            gz_json(_rows(st.index, Level.INSTANCE, study, series)),
            False,
        )
        put(f"{xdir}/series-singleton.json.gz", gz_json([srow]), False)
    put(f"{sdir}/series/index.json.gz", gz_json(series_rows), False)
    put(f"{sdir}/index.json.gz", gz_json(study_rows), False)
    tree.prune(sdir, keep)
    return count


def write_study_list(tree: Tree) -> int:
    """``studies/index.json.gz`` from the study rows of the tree; returns the study count."""
    rows = []
    base = tree.path("studies")
    if base.exists():
        for p in sorted(base.glob("*/index.json.gz")):
            rows += read_gz_json(p)

    def order(row: dict[str, Any]) -> tuple[str, str]:
        def v(tag: str) -> str:
            return str((row.get(tag, {}).get("Value") or [""])[0])

        return v("00080020"), v("00080030")

    rows.sort(key=lambda r: _uid(r, "0020000D"))
    rows.sort(key=order, reverse=True)  # newest first, like the server
    tree.write("studies/index.json.gz", gz_json(rows))
    return len(rows)


def build(
    st: Store,
    tree: Tree,
    opts: Options,
    *,
    studies: list[str] | None = None,
    incremental: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_instance: OnInstance | None = None,
) -> Report:
    """Write ``studies`` (all when ``None``) or, with ``incremental``, the studies changed
    since the last build. ``on_start(total instances)`` is called before writing."""
    t0 = time.perf_counter()
    report = Report()
    state = tree.state()
    since = int(state.get("seq", 0))
    full = not incremental or "seq" not in state
    seq = latest_seq(st.index, since if not full else 0)
    if full:
        todo = (
            studies
            if studies is not None
            else [_uid(r, "0020000D") for r in _rows(st.index, Level.STUDY, None)]
        )
        if studies is None:  # a full build also drops studies the store no longer has
            base = tree.path("studies")
            gone = (
                {p.name for p in base.iterdir() if p.is_dir()} - set(todo)
                if base.exists()
                else set()
            )
            todo = todo + sorted(gone)
    else:
        changed: dict[str, None] = {}
        for change in _changes(st.index, since):
            changed[change] = None
        todo = [s for s in changed if studies is None or s in studies]
    if on_start is not None:
        on_start(count_instances(st.index, todo))
    files0 = tree.written
    report.recompressed = Recompression(opts.recompress)
    for study in todo:
        n = build_study(st, tree, study, opts, on_instance, report.recompressed)
        report.instances += n
        report.studies += 1 if n else 0
        report.removed += 0 if n else 1
    write_study_list(tree)
    tree.save_state({"seq": seq, "time": time.time()})
    report.seq = seq
    report.files = tree.written - files0
    report.seconds = time.perf_counter() - t0
    return report


def _changes(index: Index, since: int) -> Iterable[str]:
    while True:
        page = index.changes(since, limit=1000)
        if not page:
            return
        for c in page:
            yield c.study_uid
        since = page[-1].seq


def watch(
    st: Store,
    tree: Tree,
    opts: Options,
    *,
    interval: float = 2.0,
    max_seconds: float | None = None,
    on_report: Callable[[Report], None] | None = None,
) -> int:
    """Follow the change feed: an incremental build whenever it moves, until ``max_seconds``.

    Returns the number of builds that wrote something.
    """
    start = time.monotonic()
    builds = 0
    while True:
        seq = int(tree.state().get("seq", -1))
        if seq < 0 or latest_seq(st.index, seq) != seq:
            report = build(st, tree, opts, incremental=True)
            builds += 1
            if on_report is not None:
                on_report(report)
        if max_seconds is not None and time.monotonic() - start + interval > max_seconds:
            return builds
        time.sleep(interval)


#: Stores Part 10 files into a store opened from the settings; returns ``(path, reason)`` for
#: each file that was not stored. ``webpacs static build --from`` passes the parallel one of
#: ``webpacs import``.
LoadFiles = Callable[[Settings, list[Path]], list[tuple[str, str]]]


def load_sequentially(settings: Settings, paths: list[Path]) -> list[tuple[str, str]]:
    """The simplest :data:`LoadFiles`: parse and commit each file in turn, in this process."""
    st = open_store(settings)
    failures: list[tuple[str, str]] = []
    try:
        for path in paths:
            try:
                commit(st.index, st.blobs, prepare(path.read_bytes(), st.blobs), overwrite=True)
            except (WebpacsError, OSError) as e:
                failures.append((str(path), str(e)))
    finally:
        st.close()
    return failures


def scratch_settings(data_dir: Path) -> Settings:
    """Settings of a throw-away store in ``data_dir`` (defaults only; a later file with the
    same SOP Instance UID replaces the earlier one)."""
    return isolated({"dataDir": str(data_dir), "ingest": {"conflict": "overwrite"}})


def build_from_files(
    paths: list[Path],
    tree: Tree,
    opts: Options,
    *,
    load: LoadFiles = load_sequentially,
    on_start: Callable[[int], None] | None = None,
    on_instance: OnInstance | None = None,
) -> Report:
    """Build a tree straight from Part 10 files (the ``mkdicomweb`` use case).

    ``load`` stores the files into a temporary store (SQLite index and file blobs), each one
    parsed once by :func:`webpacs.ingest.prepare`; the tree is then written from that store as
    from any other. The report's ``seconds`` and ``rate`` cover both steps.
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="webpacs-static-") as tmp:
        settings = scratch_settings(Path(tmp))
        failures = load(settings, paths)
        st = open_store(settings)
        try:
            studies = [_uid(r, "0020000D") for r in _rows(st.index, Level.STUDY, None)]
            report = build(
                st, tree, opts, studies=studies, on_start=on_start, on_instance=on_instance
            )
        finally:
            st.close()
    state = tree.state()
    state.pop("seq", None)  # a tree from files does not follow any store's change feed
    tree.save_state(state)
    report.failures = failures
    report.input_bytes = sum(_size(p) for p in paths)
    report.seconds = time.perf_counter() - t0
    return report


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
