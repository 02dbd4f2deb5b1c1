"""Corrections of stored instances: set, replace or remove attributes, move a series.

An update rewrites each instance it changes through ``ingest`` (its one write path): the
stored object is read, edited with ``core.modify`` (pixel data and every other value
copied as bytes, never decoded), written as a new content-addressed object by
``ingest.prepare`` and made visible by ``ingest.commit`` with replace semantics; the old
object is deleted once no record references it (``ingest.collect_garbage``). The change
feed records it, so the deriver, ``webpacs static build --incremental`` and other nodes
follow; the derived documents of what changed are dropped at once.

The changes of one study are one unit: one index batch (one transaction on SQLite; on
the backends whose batch is not a transaction, each instance is replaced atomically).
When patient or study attributes change, or a series moves, the study's (or series')
index entries are taken out and put back in that batch, so that the study summary never
sees its own old values as a disagreement between instances.
"""

from __future__ import annotations

import datetime
import io
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import pydicom
from pydicom.dataset import Dataset

from webpacs import ingest
from webpacs.core import modify, part10
from webpacs.core.attributes import BY_TAG, Level
from webpacs.core.modify import Edit
from webpacs.core.query import Condition, Query
from webpacs.documents import metadata
from webpacs.errors import Conflict, InvalidRequest, NotFound
from webpacs.storage.base import Index, InstanceRecord
from webpacs.storage.registry import Store

log = logging.getLogger("webpacs.update")

#: Tries of one study's unit when another writer changed the study meanwhile.
ATTEMPTS = 3


@dataclass(frozen=True)
class Change:
    """Edits of everything under one patient (by Patient ID), study, series or instance.

    ``move_to`` (series level only) moves the series to that study. ``study`` may name
    the study of a series or instance (found from the index otherwise).
    """

    level: Level
    uid: str
    edits: tuple[Edit, ...] = ()
    move_to: str | None = None
    reason: str = modify.DEFAULT_REASON
    study: str | None = None


@dataclass
class Report:
    """What an update did: studies touched, instances rewritten and left as they were."""

    studies: list[str] = field(default_factory=list)
    rewritten: int = 0
    unchanged: int = 0

    def as_json(self) -> dict[str, object]:
        return {"studies": self.studies, "rewritten": self.rewritten, "unchanged": self.unchanged}


@dataclass
class _Item:
    """One instance of a plan: its record and what to do to it."""

    record: InstanceRecord
    edits: list[Edit] = field(default_factory=list)
    move_to: str | None = None
    reason: str = modify.DEFAULT_REASON


def _find(store: Store, level: Level, keyword: str, uid: str) -> list[dict[str, object]]:
    cond = Condition(BY_TAG[_TAGS[keyword]], "single", (uid,))
    return store.index.search(Query(level, (cond,))).rows


_TAGS = {"PatientID": 0x00100020, "SeriesInstanceUID": 0x0020000E}


def _value(row: dict[str, object], tag: str) -> str:
    item = row.get(tag)
    values = item.get("Value") if isinstance(item, dict) else None
    return str(values[0]) if values else ""


def records_of(store: Store, change: Change) -> list[InstanceRecord]:
    """The instances ``change`` applies to (``NotFound`` when there are none)."""
    index = store.index
    found: list[InstanceRecord] = []
    if change.level is Level.PATIENT:
        for row in _find(store, Level.STUDY, "PatientID", change.uid):
            found += index.instances(_value(row, "0020000D"))
    elif change.level is Level.STUDY:
        found = index.instances(change.uid)
    elif change.level is Level.SERIES:
        studies = [change.study] if change.study else []
        if not studies:
            rows = _find(store, Level.SERIES, "SeriesInstanceUID", change.uid)
            studies = [_value(r, "0020000D") for r in rows]
        for study in studies:
            found += index.instances(study, change.uid)
    else:
        rec = index.get(change.uid)
        if rec is not None and change.study in (None, rec.study_uid):
            found = [rec]
    if not found:
        raise NotFound(f"no {change.level.value} {change.uid} is stored")
    return found


def plan(store: Store, changes: Iterable[Change]) -> dict[str, list[_Item]]:
    """Every instance to rewrite, grouped by its (current) study, edits in the order given."""
    items: dict[str, _Item] = {}
    for change in changes:
        if change.move_to is not None and change.level is not Level.SERIES:
            raise InvalidRequest("only a series can be moved to another study")
        for rec in records_of(store, change):
            item = items.setdefault(rec.sop_uid, _Item(rec))
            item.edits += change.edits
            item.reason = change.reason
            if change.move_to is not None:
                if change.move_to == rec.study_uid:
                    raise InvalidRequest(f"series {rec.series_uid} is already in that study")
                item.move_to = change.move_to
    by_study: dict[str, list[_Item]] = defaultdict(list)
    for item in items.values():
        by_study[item.record.study_uid].append(item)
    return dict(by_study)


def update(store: Store, changes: Iterable[Change]) -> Report:
    """Apply ``changes``: every study touched is rewritten as one unit, in turn."""
    report = Report()
    for study, items in plan(store, changes).items():
        for attempt in range(ATTEMPTS):
            try:
                rewritten, unchanged = _update_study(store, study, items)
                break
            except _Moved:
                if attempt == ATTEMPTS - 1:
                    raise Conflict(f"study {study} kept changing during the update") from None
                fresh = {r.sop_uid: r for r in store.index.instances(study)}
                items = [
                    _Item(fresh[i.record.sop_uid], i.edits, i.move_to, i.reason)
                    for i in items
                    if i.record.sop_uid in fresh
                ]
        report.studies.append(study)
        report.rewritten += rewritten
        report.unchanged += unchanged
    return report


class _Moved(Exception):
    """Another writer changed the study between reading and committing: try again."""


def _target_study(store: Store, uid: str) -> Dataset | None:
    """The patient and study attributes a series moved to study ``uid`` takes (None when
    no such study is stored: the series then starts it, keeping its own)."""
    records = store.index.instances(uid)
    if not records:
        return None
    ds, target = _read(store, records[0]), Dataset()
    for tag in modify.STUDY_LEVEL_TAGS:
        if tag in ds:
            target.add(ds[tag])
    target.StudyInstanceUID = uid
    return target


def _own_study(ds: Dataset, uid: str) -> Dataset:
    """``ds``'s own patient and study attributes under the new study UID ``uid``."""
    target = Dataset()
    for tag in modify.STUDY_LEVEL_TAGS:
        if tag in ds:
            target.add(ds[tag])
    target.StudyInstanceUID = uid
    return target


def _read(store: Store, rec: InstanceRecord) -> Dataset:
    return pydicom.dcmread(io.BytesIO(store.blobs.get(rec.blob_key)))


def _update_study(store: Store, study: str, items: list[_Item]) -> tuple[int, int]:
    now = datetime.datetime.now(datetime.UTC)
    targets = {i.move_to: _target_study(store, i.move_to) for i in items if i.move_to}
    prepared: list[tuple[InstanceRecord, ingest.Prepared]] = []
    upper = False  # patient or study attributes change: the study's entries are put back
    for item in items:
        ds = _read(store, item.record)
        move = None
        if item.move_to:
            known = targets[item.move_to]
            move = known if known is not None else _own_study(ds, item.move_to)
        changed = modify.apply(ds, item.edits, reason=item.reason, move_to=move, now=now)
        if not changed:
            continue
        upper |= any(modify.level_of(e.tag) in (Level.PATIENT, Level.STUDY) for e in item.edits)
        data = part10.storable_bytes(ds)
        # recompress=(): the pixel data is copied as stored, never decoded
        p = ingest.prepare(data, store.blobs, bulk_threshold=store.bulk_threshold)
        prepared.append((item.record, p))
    if not prepared:
        return 0, len(items)
    garbage = [(old.sop_uid, old.blob_key) for old, _ in prepared]
    touched = {(r.study_uid, r.series_uid) for old, p in prepared for r in (old, p.record)}
    try:
        _commit(store, study, items, prepared, upper, garbage)
    except BaseException:  # nothing committed: the new objects are not referenced
        fresh = [(p.record.sop_uid, p.record.blob_key) for _, p in prepared]
        ingest.collect_garbage(store.index, store.blobs, fresh)
        raise
    ingest.collect_garbage(store.index, store.blobs, garbage)
    for st, series in sorted(touched):
        metadata.drop_series(store.blobs, st, series)
    for st in sorted({s for s, _ in touched}):
        metadata.drop_study(store.blobs, st)
    log.info("study %s: %d instance(s) rewritten", study, len(prepared))
    return len(prepared), len(items) - len(prepared)


def _commit(
    store: Store,
    study: str,
    items: list[_Item],
    prepared: list[tuple[InstanceRecord, ingest.Prepared]],
    upper: bool,
    garbage: list[tuple[str, str]],
) -> None:
    """One index batch: check that nobody changed the study meanwhile, then commit."""
    index = store.index
    with index.batch():
        current = {r.sop_uid: r.blob_key for r in index.instances(study)}
        if any(current.get(old.sop_uid) != old.blob_key for old, _ in prepared):
            raise _Moved()
        labels: list[tuple[str, str | None, str]] = []  # put back after the entries
        if upper:  # the whole study is put back, unchanged instances as they are
            kept = [r for r in index.instances(study) if r.sop_uid not in dict(garbage)]
            labels += _labels(index, study, None, study)
            for series in index.study_series(study):
                labels += _labels(index, study, series, study)
            index.delete(study)
            redo = [p for _, p in prepared] + [ingest.Prepared(r, []) for r in kept]
        else:
            moves = {i.record.series_uid: i.move_to for i in items if i.move_to is not None}
            for series, target in sorted(moves.items()):
                labels += _labels(index, study, series, target)  # they go with the series
                index.delete(study, series)  # a moved series leaves its study first
            redo = [p for _, p in prepared]
        for p in redo:
            ingest.commit(index, store.blobs, p, overwrite=True, garbage=garbage)
        for at_study, at_series, label in labels:
            index.add_label(at_study, at_series, label)


def _labels(
    index: Index, study: str, series: str | None, target: str
) -> list[tuple[str, str | None, str]]:
    """The labels of a study (``series`` None) or series, as they are to be put back in
    study ``target`` after its index entries were deleted and put again."""
    return [(target, series, label) for label in index.labels(study, series)]
