"""``webpacs check --repair``: act on a walk's findings.

- leftover object files (``unreferenced``) and scraps older than the grace period are
  removed, each through ``Blobs.collect``, which looks at the file's age and at the index
  again at the moment it removes it (see ``storage.fs``): an ingest that found the object
  already stored touched it, and one that wrote it did so less than the grace period ago;
- ``unindexed`` objects are stored again from their bytes, through ingest;
- ``stale`` derived documents are replaced by current ones (``integrity.derived``).

Missing and damaged objects cannot be repaired from the store itself: they stay in the
report (and make the exit status 1); restore them from a backup or send them again.
"""

from __future__ import annotations

import logging
import time

from webpacs.errors import WebpacsError
from webpacs.ingest import commit, prepare
from webpacs.integrity import derived
from webpacs.integrity.findings import Finding, Kind, Report
from webpacs.integrity.walk import referenced
from webpacs.storage.base import Outcome
from webpacs.storage.registry import Store

log = logging.getLogger("webpacs.check")


def repair(store: Store, report: Report) -> None:
    """Repair what ``report`` found; each finding acted on gets its ``repaired`` note."""
    index, blobs = store.index, store.blobs
    older_than = time.time() - report.grace_seconds
    for f in _todo(report, Kind.UNINDEXED):
        _reindex(store, f)
    for f in _todo(report, Kind.UNREFERENCED):
        if f.age < report.grace_seconds:
            continue
        if blobs.collect(f.key, older_than, lambda key: referenced(index, key)):
            f.repaired = "removed"
    for f in _todo(report, Kind.SCRAP):
        if f.age >= report.grace_seconds:
            blobs.remove_scrap(f.key)
            f.repaired = "removed"
    stale = {f.key: f for f in _todo(report, Kind.STALE)}
    docs = []
    for key, f in stale.items():
        doc = derived.parse(key)
        if doc is None:
            blobs.delete(key)
            f.repaired = "removed"
        else:
            docs.append(doc)
    for key, what in derived.rebuild(index, blobs, docs).items():
        stale[key].repaired = what


def _todo(report: Report, kind: Kind) -> list[Finding]:
    return [f for f in report.findings if f.kind is kind and not f.repaired]


def _reindex(store: Store, f: Finding) -> None:
    """Store an object the index lost again, from its own bytes (one ingest)."""
    try:
        data = store.blobs.get(f.key)
        prepared = prepare(data, store.blobs, bulk_threshold=store.bulk_threshold)
        result = commit(store.index, store.blobs, prepared, overwrite=False)
    except WebpacsError as e:
        f.detail += f"; not re-indexed: {e}"
        return
    if result.outcome in (Outcome.STORED, Outcome.DUPLICATE):
        f.repaired = "re-indexed from its bytes"
        log.info("re-indexed %s from %s", result.sop_uid, f.key)
