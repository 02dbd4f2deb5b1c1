"""Labels on QIDO rows, for every index backend (``includefield=webpacsLabels``).

A backend answers which labels the rows' studies or series have (``Lookup``); the rows
get them, sorted, as a JSON array of strings under ``webpacsLabels`` (empty when none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from webpacs.core.attributes import Level
from webpacs.core.query import Query
from webpacs.core.research import LABELS_FIELD

#: (level, UIDs of that level) -> labels by UID (UIDs without labels may be left out)
Lookup = Callable[[Level, list[str]], dict[str, list[str]]]
_UID_KEY = {Level.STUDY: "0020000D", Level.SERIES: "0020000E"}


def attach(query: Query, rows: list[dict[str, Any]], lookup: Lookup) -> None:
    """Add ``webpacsLabels`` to each row when the query asks for them."""
    if not query.include_labels or query.level not in _UID_KEY or not rows:
        return
    key = _UID_KEY[query.level]
    uids = [str(r[key]["Value"][0]) for r in rows]
    found = lookup(query.level, list(dict.fromkeys(uids)))
    for row, uid in zip(rows, uids, strict=True):
        row[LABELS_FIELD] = sorted(found.get(uid, []))
