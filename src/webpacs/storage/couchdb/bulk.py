"""Instances and the summaries they touch, written together: one read, one write.

``put_many`` (one STOW-RS request, one import batch, one C-STORE) reads the instance
documents of its records and the series and study summaries they touch in one
``_all_docs`` call, decides each record's outcome from what it read (``base.decide``:
new, already stored, conflict, replacement; a later copy of a SOP Instance UID meets the
earlier one), follows each summary through the instances to write, in the order given
(``CouchIndex.follow_step``), and writes the instance documents and the changed summaries
in one ``_bulk_docs``. So a request costs two calls whatever its size, and a request of
instances already stored (or refused) only the read.

A crash of this process cannot leave an instance visible without its summaries: one
request carries both (the stored object was written before, by ``ingest.prepare``).
``_bulk_docs`` is not a transaction, though: each document is written or refused on its
own, and what was refused is done again the slow way. An instance someone else wrote
between the read and the write (a ``409`` on it) is put again alone (``put_alone``:
read, decide, write), and the summaries that followed it, if it did not go in, follow
the newest stored instance instead. A summary someone else wrote in between is read and
followed again (``flush``). What disagreed at study level goes in one more ``_bulk_docs``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from webpacs.core.attributes import Level
from webpacs.errors import StorageError, WebpacsError
from webpacs.storage import rows
from webpacs.storage.base import InstanceRecord, Outcome, PutResult, SameCheck, decide

if TYPE_CHECKING:
    from webpacs.storage.couchdb.index import CouchIndex

#: One summary change to apply: the level, the instance document and its metadata.
Step = tuple[Level, dict[str, Any], dict[str, Any]]
_READ = {"include_docs": "true", "conflicts": "true"}


def summary_ids(record: InstanceRecord) -> tuple[str, str]:
    return f"series:{record.series_uid}", f"study:{record.study_uid}"


def put_many(
    index: CouchIndex,
    records: list[InstanceRecord],
    *,
    overwrite: bool,
    same: SameCheck,
    retries: int,
) -> list[PutResult]:
    """``Index.put_many`` in two calls (module docstring)."""
    if not records:
        return []
    client = index.client
    sums = list(dict.fromkeys(i for r in records for i in summary_ids(r)))
    sops = list(dict.fromkeys(r.sop_uid for r in records))
    _, page = client.call("POST", "_all_docs", params=_READ, body={"keys": sops + sums})
    found = {row["key"]: row.get("doc") for row in page.get("rows", [])}
    results: list[PutResult] = []
    planned: dict[str, tuple[int, dict[str, Any], InstanceRecord]] = {}
    metas: dict[str, dict[str, Any]] = {}
    for i, rec in enumerate(records):
        stored: InstanceRecord | None
        if rec.sop_uid in planned:  # a second copy in this call meets the first
            _, earlier, stored = planned[rec.sop_uid]
            rev = earlier.get("_rev")
        else:
            doc = found.get(rec.sop_uid)
            live = doc if doc is not None and doc.get("type") == "instance" else None
            stored = index.record_of(live) if live else None
            rev = live["_rev"] if live else None
        outcome = decide(stored, rec, overwrite=overwrite, same=same)
        results.append((outcome, stored))
        if outcome in (Outcome.DUPLICATE, Outcome.CONFLICT):
            continue
        metas[rec.sop_uid] = orjson.loads(rec.metadata)
        new = index.instance_doc(rec, metas[rec.sop_uid])
        if rev:
            new["_rev"] = rev
        planned[rec.sop_uid] = (i, new, rec)
    if not planned:
        return results
    docs = [doc for _, doc, _ in sorted(planned.values(), key=lambda p: p[0])]
    steps: dict[str, list[Step]] = {}
    for doc in docs:
        meta = metas[doc["sop"]]
        series_id, study_id = f"series:{doc['series']}", f"study:{doc['study']}"
        steps.setdefault(series_id, []).append((Level.SERIES, doc, meta))
        steps.setdefault(study_id, []).append((Level.STUDY, doc, meta))
    summaries: list[dict[str, Any]] = []
    seen: dict[str, list[rows.Disagreement]] = {}
    for doc_id, doc_steps in steps.items():
        write, seen[doc_id] = follow(index, found.get(doc_id), doc_steps)
        if write is not None:
            summaries.append(write)
    _, written = client.call(
        "POST", "_bulk_docs", body={"docs": docs + summaries}, ok=(201, 202)
    )  # fmt: skip
    refused = {r["id"] for r in written if r.get("error")}
    disagreements = [d for doc_id, ds in seen.items() if doc_id not in refused for d in ds]
    index.record_disagreements(disagreements)
    lost = [planned[d["sop"]] for d in docs if d["_id"] in refused]
    gone = {rec.sop_uid for _, _, rec in lost}
    again = {
        doc_id: [s for s in doc_steps if s[1]["sop"] not in gone]
        for doc_id, doc_steps in steps.items()
        if doc_id in refused
    }
    flush(index, {k: v for k, v in again.items() if v}, retries)
    for i, _, rec in lost:  # someone else wrote it in between: decided again, alone
        try:
            results[i] = index.put_alone(rec, overwrite=overwrite, same=same)
        except WebpacsError as e:
            results[i] = e
        if not _went_in(results[i]):  # the summaries that followed it follow another
            index.after_removal([rec])
    for i, _, rec in planned.values():
        put = results[i]
        old = None if isinstance(put, WebpacsError) or rec.sop_uid in gone else put[1]
        if old is not None and old.series_uid != rec.series_uid:
            index.after_removal([old])  # a replacement that left its series
    return results


def _went_in(result: PutResult) -> bool:
    return not isinstance(result, WebpacsError) and result[0] in (Outcome.STORED, Outcome.REPLACED)


def follow(
    index: CouchIndex, current: dict[str, Any] | None, steps: list[Step]
) -> tuple[dict[str, Any] | None, list[rows.Disagreement]]:
    """The summary ``current`` (None: none yet) after ``steps``, to write (None: no change),
    and what disagreed on the way. Conflicting revisions are merged first."""
    if current is not None and current.get("_conflicts"):
        current = index.merge_conflicts(current)
    state, changed, seen = current, False, []
    for level, inst, meta in steps:
        new, more = index.follow_step(level, inst, meta, state)
        seen += more
        if new is not None:
            state, changed = new, True
    if not changed or state is None:
        return None, seen
    if current is not None:  # written over the revision read
        state["_rev"] = current["_rev"]
    return state, seen


def flush(index: CouchIndex, steps: dict[str, list[Step]], retries: int) -> None:
    """Follow every step, in order, on the summaries as stored, until each is written."""
    client = index.client
    waiting = dict(steps)
    found: list[rows.Disagreement] = []
    for _ in range(retries):
        if not waiting:
            break
        _, page = client.call("POST", "_all_docs", params=_READ, body={"keys": list(waiting)})
        writes: list[dict[str, Any]] = []
        disagreements: dict[str, list[rows.Disagreement]] = {}
        for row in page.get("rows", []):
            write, seen = follow(index, row.get("doc"), waiting[row["key"]])
            if write is None:
                found += seen
                del waiting[row["key"]]
            else:
                writes.append(write)
                disagreements[row["key"]] = seen
        if not writes:
            break
        _, results = client.call("POST", "_bulk_docs", body={"docs": writes}, ok=(201, 202))
        for result in results:
            if not result.get("error"):
                found += disagreements.get(result["id"], [])
                waiting.pop(result["id"], None)
    if waiting:
        raise StorageError(f"{', '.join(waiting)}: too many concurrent writers")
    index.record_disagreements(found)
