"""Every attribute value of every instance in CouchDB: extension keys answered by a view.

Each instance document carries ``x``: its attribute occurrences (``core.anyattr``) as
``[path key, [value by position, null where empty]]``. The ``attrs`` view emits one row
per value, keyed ``[path, value]`` (numbers as numbers, so that a numeric range is a
key range) with ``[occurrence, position, end]`` (``end``: one past the last non-empty
position), under the full path and under each shorter path of two or more tags it ends
with (a path key also matches further down). A condition is one key range per value
test; text rows are checked with the reference test (``ValueTest.accepts``), occurrences
by position intersected, and the matching instances (or their series or study summaries)
become a Mango ``$in`` on the document ids. A pattern without a literal prefix reads
every value of its path: refused, like other scans, unless ``couchdb.allowScan``.
"""

from __future__ import annotations

from typing import Any

import orjson

from webpacs.core import anyattr
from webpacs.core.anyattr import PathMatch, ValueTest
from webpacs.core.attributes import Level
from webpacs.errors import InvalidRequest, NotImplementedFeature
from webpacs.storage.couchdb.http import CouchClient

VIEW = {
    "map": "function (doc) { if (doc.type !== 'instance' || !doc.x) { return; }"
    " doc.x.forEach(function (e, occ) {"
    " var parts = e[0].split('.'), keys = [e[0]], vs = e[1], end = 0, i;"
    " for (i = 1; i < parts.length - 1; i++) { keys.push(parts.slice(i).join('.')); }"
    " for (i = 0; i < vs.length; i++) { if (vs[i] !== null) { end = i + 1; } }"
    " vs.forEach(function (v, pos) { if (v === null) { return; }"
    " keys.forEach(function (k) { emit([k, v], [occ, pos, end]); }); }); }); }",
}
_HIGH: dict[str, Any] = {}


def doc_field(meta: dict[str, Any]) -> list[list[Any]]:
    """The ``x`` field of an instance document (its DICOM JSON's occurrences)."""
    return [[key, list(values)] for key, values in anyattr.occurrences(meta)]


def _ranges(key: str, t: ValueTest, allow_scan: bool) -> list[tuple[list[Any], list[Any]]]:
    if t.op == "num":
        return [([key, lo], [key, "" if hi is None else hi]) for lo, hi in t.bounds]
    if t.op == "in":
        return [([key, v], [key, v]) for v in t.texts]
    if t.op == "range":
        lo, hi = t.texts
        return [([key, lo], [key, hi or _HIGH])]
    prefix = t.texts[0].split("*")[0].split("?")[0]
    if not prefix and not allow_scan:
        raise NotImplementedFeature(
            f"{key}: a pattern that starts with a wildcard reads every value of the attribute:"
            " give its first characters, or set couchdb.allowScan"
        )
    return [([key, prefix], [key, prefix + "\ufff0" if prefix else _HIGH])]


def _view_rows(
    client: CouchClient, start: list[Any], end: list[Any], limit: int
) -> list[dict[str, Any]]:
    params = {"startkey": start, "endkey": end, "limit": limit + 1}
    _, page = client.call("GET", "_design/webpacs/_view/attrs", params=params)
    found: list[dict[str, Any]] = page.get("rows", [])
    if len(found) > limit:
        raise InvalidRequest(f"more than {limit} values match {start[0]}: narrow the query")
    return found


def _accepts(t: ValueTest, value: Any) -> bool:
    """Whether a row of the key range of ``t`` passes ``t``. A number is not checked again:
    the key range is the test, and pouchdb-server gives keys back rounded (-12 comes back
    as -11.999999999999993); text is (a pattern's range is only its literal prefix, and
    CouchDB collates with ICU, not code points)."""
    if t.op == "num":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str) and t.accepts(value)


def matching_instances(
    client: CouchClient, m: PathMatch, *, allow_scan: bool, limit: int
) -> set[str]:
    """The SOP Instance UIDs of the instances ``m`` matches."""
    key = m.path.key
    tests = [(0, m.tests[0])] if not m.positional else list(enumerate(m.tests))
    found: set[tuple[str, int]] | None = None
    for pos, t in tests:
        if t.op == "any":
            continue
        hits: set[tuple[str, int]] = set()
        for start, end in _ranges(key, t, allow_scan):
            for row in _view_rows(client, start, end, limit):
                occ, at, stop = row["value"]
                if m.positional and (at != pos or stop > len(m.tests)):
                    continue
                if _accepts(t, row["key"][1]):
                    hits.add((row["id"], occ))
        found = hits if found is None else found & hits
    return {sop for sop, _ in found or set()}


def matching_ids(
    client: CouchClient,
    find_all: Any,
    matches: list[PathMatch],
    level: Level,
    *,
    allow_scan: bool,
    limit: int,
) -> set[str]:
    """The ids of the documents of ``level`` whose instance (or one of whose instances)
    satisfies every one of ``matches``: instances, or series or study summaries."""
    found: set[str] | None = None
    for m in matches:
        hits = matching_instances(client, m, allow_scan=allow_scan, limit=limit)
        found = hits if found is None else found & hits
    sops = sorted(found or set())
    if level is Level.INSTANCE:
        return set(sops)
    field = "series" if level is Level.SERIES else "study"
    owners: set[str] = set()
    for i in range(0, len(sops), 1000):
        docs = find_all({"_id": {"$in": sops[i : i + 1000]}}, [field])
        owners.update(f"{field}:{d[field]}" for d in docs if d.get(field))
    return owners


def backfill(client: CouchClient, batch: int = 200) -> int:
    """Give ``x`` to the instance documents written before it existed; returns how many."""
    done = 0
    while True:
        body = {"selector": {"type": "instance", "x": {"$exists": False}}, "limit": batch}
        _, page = client.call("POST", "_find", body=body)
        docs = page.get("docs", [])
        if not docs:
            return done
        for d in docs:
            d["x"] = doc_field(orjson.loads(d["m"]))
        client.call("POST", "_bulk_docs", body={"docs": docs}, ok=(201, 202))
        done += len(docs)
