"""The walk of ``webpacs check``: index records, stored objects, derived documents, scraps.

1. Every stored object is listed once (``Blobs.entries``), then every index record is
   checked against its object (``verify.problem``): missing or damaged.
2. Each listed object no record names is looked at again: the record of its SOP Instance
   may name another object (the object is a leftover of a replaced or refused version),
   or there is no record. Then the change feed decides: if its last word on that instance
   is a store, the index lost the record (``unindexed``, re-indexed by ``--repair``);
   otherwise the object was never committed (an ingest cut short) or its instance was
   deleted: a leftover.
3. Derived documents are checked against the current series versions; what interrupted
   writes left behind is listed.

The server may keep serving meanwhile: whatever looks wrong is looked at again in the
index before it is reported, so a store or delete that raced the walk is not a finding.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from webpacs.core.attributes import Level
from webpacs.core.query import Query
from webpacs.errors import NotFound, WebpacsError
from webpacs.integrity import derived, verify
from webpacs.integrity.findings import Finding, Kind, Report
from webpacs.storage import objects
from webpacs.storage.base import BlobEntry, Blobs, Index, InstanceRecord
from webpacs.storage.registry import Store

STUDY_UID, NUMBER_OF_INSTANCES = "0020000D", "00201208"


def _studies(index: Index) -> list[tuple[str, int]]:
    """Every study UID with its number of instances (for the progress total)."""
    rows = index.search(Query(level=Level.STUDY, conditions=())).rows
    out = []
    for row in rows:
        count = (row.get(NUMBER_OF_INSTANCES, {}).get("Value") or [0])[0]
        out.append((str(row[STUDY_UID]["Value"][0]), int(count)))
    return out


def referenced(index: Index, key: str) -> bool:
    """Whether an index record names object ``key`` now (asked of the index, not the walk)."""
    parsed = objects.parse_key(key)
    if parsed is None:
        return True  # not a key ingest writes: never taken for a leftover
    rec = index.get(parsed.sop_uid)
    return rec is not None and rec.blob_key == key


def last_ops(index: Index, sops: set[str]) -> dict[str, str]:
    """The change feed's last operation ("put" or "delete") on each of ``sops``."""
    out: dict[str, str] = {}
    since = 0
    while sops and (page := index.changes(since, 10_000)):
        for c in page:
            if c.sop_uid in sops:
                out[c.sop_uid] = c.op
        since = page[-1].seq
    return out


def check(
    store: Store,
    *,
    full: bool = True,
    grace_seconds: float = 0.0,
    on_start: Callable[[int], None] | None = None,
    on_instance: Callable[[], None] | None = None,
) -> Report:
    """Walk the store; ``on_start(total instances)`` then ``on_instance()`` per record."""
    index, blobs = store.index, store.blobs
    now = time.time()
    report = Report(full=full, grace_seconds=grace_seconds)
    listing = {e.key: e for e in blobs.entries(objects.PREFIX)}
    report.objects = len(listing)
    studies = _studies(index)
    if on_start is not None:
        on_start(sum(n for _, n in studies))
    named: set[str] = set()
    for study, _ in studies:
        for rec in index.instances(study):
            report.instances += 1
            named.add(rec.blob_key)
            entry = listing.get(rec.blob_key)
            _check_record(report, index, blobs, rec, entry, full)
            if on_instance is not None:
                on_instance()
    _leftover_objects(report, index, [e for k, e in listing.items() if k not in named], now)
    for entry in blobs.entries(derived.PREFIX):
        report.derived += 1
        _check_derived(report, index, entry, now)
    for entry in blobs.scraps():
        report.add(Finding(Kind.SCRAP, entry.key, "left by an interrupted write",
                           age=now - entry.modified))  # fmt: skip
    return report


def _check_record(
    report: Report,
    index: Index,
    blobs: Blobs,
    rec: InstanceRecord,
    entry: BlobEntry | None,
    full: bool,
) -> None:
    try:
        why = verify.problem(blobs, rec, full=full, size=None if entry is None else entry.size)
        kind = Kind.DAMAGED
        if why is None and full:
            report.verified_bytes += rec.size
    except NotFound:
        why, kind = "the object is not stored", Kind.MISSING
    except WebpacsError as e:
        why, kind = f"cannot be read: {e}", Kind.DAMAGED
    if why is None:
        return
    now = index.get(rec.sop_uid)  # deleted or replaced while we looked: not a finding
    if now is None or now.blob_key != rec.blob_key:
        return
    report.add(Finding(kind, rec.blob_key, why, rec.study_uid, rec.series_uid, rec.sop_uid))


def _leftover_objects(report: Report, index: Index, entries: list[BlobEntry], now: float) -> None:
    unrecorded: dict[str, BlobEntry] = {}
    for entry in entries:
        parsed = objects.parse_key(entry.key)
        age = now - entry.modified
        if parsed is None:
            report.add(Finding(Kind.UNREFERENCED, entry.key, "not an object key webpacs writes;"
                               " left alone", age=age))  # fmt: skip
            continue
        rec = index.get(parsed.sop_uid)
        ids = (parsed.study_uid, parsed.series_uid, parsed.sop_uid)
        if rec is not None and rec.blob_key == entry.key:
            continue  # committed since the listing
        if rec is not None:
            report.add(Finding(Kind.UNREFERENCED, entry.key,
                               f"an earlier or refused version (the index names {rec.blob_key})",
                               *ids, age=age))  # fmt: skip
        else:
            unrecorded[parsed.sop_uid] = entry
    ops = last_ops(index, set(unrecorded))
    for sop, entry in unrecorded.items():
        parsed = objects.parse_key(entry.key)
        assert parsed is not None
        ids = (parsed.study_uid, parsed.series_uid, parsed.sop_uid)
        age = now - entry.modified
        op = ops.get(sop)
        if referenced(index, entry.key):
            continue  # committed while the feed was read
        if op == "put" and index.get(sop) is None:
            report.add(
                Finding(
                    Kind.UNINDEXED,
                    entry.key,
                    "stored (says the change feed) but missing from the index",
                    *ids,
                )
            )
        elif op == "delete":
            report.add(Finding(Kind.UNREFERENCED, entry.key, "its instance was deleted",
                               *ids, age=age))  # fmt: skip
        elif op is None:
            report.add(
                Finding(
                    Kind.UNREFERENCED,
                    entry.key,
                    "never committed (an ingest that was cut short)",
                    *ids,
                    age=age,
                )
            )
        # op == "put" with a record now: replaced meanwhile, not a finding


def _check_derived(report: Report, index: Index, entry: BlobEntry, now: float) -> None:
    doc = derived.parse(entry.key)
    if doc is None:
        report.add(Finding(Kind.STALE, entry.key, "not a derived document key",
                           age=now - entry.modified))  # fmt: skip
        return
    why = derived.stale(index, doc)
    if why is not None:
        report.add(Finding(Kind.STALE, entry.key, why, doc.study_uid, doc.series_uid,
                           age=now - entry.modified))  # fmt: skip
