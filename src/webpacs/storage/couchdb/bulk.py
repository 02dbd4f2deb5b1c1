"""Summaries of one STOW-RS request's instances written together.

Inside ``CouchIndex.batch`` each ``put`` of a new instance is its one ``PUT`` (the only
call that decides STORED or not, so duplicates and conflicts keep their meaning), and the
series and study summaries it touches are remembered. When the batch ends they are
brought up to date in two calls whatever the number of instances: one read of every
summary touched (``_all_docs`` with their conflicting revisions) and one ``_bulk_docs``
that writes the ones that changed. Each instance is followed in the order stored, as the
one-by-one path does (``CouchIndex.follow_step``). A summary someone else wrote in between
is read and followed again; the disagreements found go in one more ``_bulk_docs``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from webpacs.core.attributes import Level
from webpacs.errors import StorageError
from webpacs.storage import rows

if TYPE_CHECKING:
    from webpacs.storage.couchdb.index import CouchIndex

#: One summary change to apply: the level, the instance document and its metadata.
Step = tuple[Level, dict[str, Any], dict[str, Any]]


class PendingSummaries(threading.local):
    """This thread's open batch: the summary steps waiting for its end (None: no batch)."""

    steps: dict[str, list[Step]] | None = None

    def add(self, doc_id: str, step: Step) -> None:
        assert self.steps is not None
        self.steps.setdefault(doc_id, []).append(step)


def flush(index: CouchIndex, steps: dict[str, list[Step]], retries: int) -> None:
    """Follow every step, in order, on the summaries as stored; write the changed ones."""
    client = index.client
    waiting = dict(steps)
    found: list[rows.Disagreement] = []
    for _ in range(retries):
        if not waiting:
            break
        _, page = client.call(
            "POST", "_all_docs", params={"include_docs": "true", "conflicts": "true"},
            body={"keys": list(waiting)},
        )  # fmt: skip
        writes: list[dict[str, Any]] = []
        disagreements: dict[str, list[rows.Disagreement]] = {}
        for row in page.get("rows", []):
            current = row.get("doc")
            if current is not None and current.get("_conflicts"):
                current = index.merge_conflicts(current)
            state, changed, seen = current, False, disagreements.setdefault(row["key"], [])
            for level, inst, meta in waiting[row["key"]]:
                new, more = index.follow_step(level, inst, meta, state)
                seen += more
                if new is not None:
                    state, changed = new, True
            if changed and state is not None:
                if current is not None:  # written over the revision read
                    state["_rev"] = current["_rev"]
                writes.append(state)
            elif not changed:
                found += seen
                del waiting[row["key"]]
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
