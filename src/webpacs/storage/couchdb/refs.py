"""The reference graph and labels on CouchDB: views, label documents, research keys.

Each instance document carries its edges (``core.references``) in ``r`` as
``[uid, level, via, frame]`` lists, so they are written, replicated and deleted with it.
Labels are documents ``label:<study>:<series or ''>:<label>`` (``type: "label"``); a label
taken off leaves a tombstone that keeps ``study``/``series`` for the change feed, where a
label document's change is a ``label`` change.

Views (in ``_design/webpacs``, see ``design``):

* ``refs``: per edge, ``["to", target]`` -> ``[study, series]`` of the referencing instance
  (``webpacsReferences``); ``["by", uid]`` -> target for the instance's own SOP Instance,
  series and study UIDs (``webpacsReferencedBy``); ``["kind", X, target]`` for X its
  Modality and its SOP Class UID (``webpacsHas`` on series);
* ``has``: ``[X, study]`` for each instance (X its Modality and its SOP Class UID);
* ``uids``: instance and series documents by id -> ``[study, series]``.

``plan`` turns a query's research keys into Mango selectors on the level's own documents
(``study``, ``series``: indexed) and a set of document ids to leave out (the negated keys).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from webpacs.core import references
from webpacs.core.attributes import Level
from webpacs.core.query import Query
from webpacs.core.research import HAS, LABEL, REFERENCED_BY, REFERENCES, ResearchKey
from webpacs.errors import NotFound, StorageError
from webpacs.storage.couchdb.http import CouchClient

log = logging.getLogger("webpacs.index")

VIEWS: dict[str, dict[str, str]] = {
    "refs": {
        "map": "function (doc) { if (doc.type === 'instance' && doc.r) {"
        " var kinds = [doc.cls]; if (doc.a && doc.a.Modality) { kinds.push(doc.a.Modality); }"
        " doc.r.forEach(function (e) {"
        " emit(['to', e[0]], [doc.study, doc.series]);"
        " emit(['by', doc.sop], e[0]); emit(['by', doc.series], e[0]);"
        " emit(['by', doc.study], e[0]);"
        " kinds.forEach(function (k) { emit(['kind', k, e[0]], null); }); }); } }",
    },
    "has": {
        "map": "function (doc) { if (doc.type === 'instance') { emit([doc.cls, doc.study], null);"
        " if (doc.a && doc.a.Modality) { emit([doc.a.Modality, doc.study], null); } } }",
        "reduce": "_count",
    },
    "uids": {
        "map": "function (doc) { if (doc.type === 'instance' || doc.type === 'series') {"
        " emit(doc._id, [doc.study, doc.series]); } }",
    },
}
#: Mango indexes this module's queries use (besides ``[type, study]`` and ``[type, series]``).
MANGO_INDEXES: dict[str, list[str]] = {"label": ["type", "label"]}
_HIGH: dict[str, Any] = {}
_PREFIX = {Level.STUDY: "study:", Level.SERIES: "series:"}


def label_id(study: str, series: str | None, label: str) -> str:
    return f"label:{study}:{series or ''}:{label}"


def edges_field(refs: tuple[references.Reference, ...]) -> list[list[Any]]:
    """The ``r`` field of an instance document."""
    return [e.to_json() for e in refs]


@dataclass
class Plan:
    """What a query's research keys add: selectors (ANDed), whether one narrows by an
    index, and document ids to leave out."""

    parts: list[dict[str, Any]] = field(default_factory=list)
    narrowing: bool = False
    exclude: set[str] = field(default_factory=set)


class RefReads:
    """Lookups on the views and label documents of one database."""

    def __init__(self, client: CouchClient) -> None:
        self.client = client

    def _view(self, name: str, keys: list[Any] | None = None, **params: Any) -> list[Any]:
        query = {
            k: (v if isinstance(v, str) else orjson.dumps(v).decode()) for k, v in params.items()
        }
        path = f"_design/webpacs/_view/{name}"
        if keys is not None:
            if not keys:
                return []
            _, page = self.client.call("POST", path, body={"keys": keys}, params=query or None)
        else:
            _, page = self.client.call("GET", path, params=query)
        return list(page.get("rows", []))

    def find(self, selector: dict[str, Any], fields: list[str]) -> list[dict[str, Any]]:
        """Every document matching ``selector`` (bookmark paging), with no cap on their
        number, unlike ``Searcher.find_all``: the migration's ``backfill`` reads them all."""
        out: list[dict[str, Any]] = []
        bookmark: str | None = None
        while True:
            body: dict[str, Any] = {"selector": selector, "fields": fields, "limit": 2000}
            if bookmark:
                body["bookmark"] = bookmark
            elif out:
                body["skip"] = len(out)
            _, page = self.client.call("POST", "_find", body=body)
            docs = page.get("docs", [])
            out += docs
            if len(docs) < 2000:
                return out
            bookmark = page.get("bookmark")

    # -- the graph ---------------------------------------------------------------------
    def referencing(self, uids: tuple[str, ...]) -> list[tuple[str, str, str]]:
        """(study, series, SOP) of the instances that name any of ``uids``."""
        rows = self._view("refs", keys=[["to", u] for u in uids])
        return list(dict.fromkeys((r["value"][0], r["value"][1], r["id"]) for r in rows))

    def named_by(self, uids: tuple[str, ...]) -> set[str]:
        """The UIDs the instances with any of ``uids`` as SOP, series or study UID name."""
        return {r["value"] for r in self._view("refs", keys=[["by", u] for u in uids])}

    def named_by_kind(self, kinds: tuple[str, ...]) -> set[str]:
        """The UIDs named by instances of these modalities or SOP classes."""
        out: set[str] = set()
        for k in kinds:
            rows = self._view("refs", startkey=["kind", k], endkey=["kind", k, _HIGH])
            out.update(r["key"][2] for r in rows)
        return out

    def holders(self, level: Level, named: set[str]) -> set[str]:
        """UIDs of ``level`` that are among ``named`` or hold a series or instance that is
        (a stored one)."""
        if level is Level.INSTANCE:
            return set(named)
        ids = sorted(named) + sorted(f"series:{u}" for u in named)
        out = {u for u in named}  # a UID named as what it is; kept only if it exists
        for r in self._view("uids", keys=ids):
            if "value" in r and r["value"]:
                study, series = r["value"]
                out.add(study if level is Level.STUDY else series or "")
        return out

    def studies_having(self, kinds: tuple[str, ...]) -> set[str]:
        out: set[str] = set()
        for k in kinds:
            rows = self._view("has", startkey=[k], endkey=[k, _HIGH], group_level=2)
            out.update(r["key"][1] for r in rows)
        return out

    def labelled(self, level: Level, label: str) -> set[str]:
        docs = self.find({"type": "label", "label": label}, ["study", "series"])
        if level is Level.STUDY:
            return {d["study"] for d in docs if not d.get("series")}
        return {d["series"] for d in docs if d.get("series")}

    def labels_of(self, level: Level, uids: list[str]) -> dict[str, list[str]]:
        """Labels of studies or series by UID (``storage.labels.Lookup``)."""
        key = "study" if level is Level.STUDY else "series"
        docs = self.find({"type": "label", key: {"$in": uids}}, ["study", "series", "label"])
        out: dict[str, list[str]] = {}
        for d in docs:
            if (level is Level.STUDY) == (not d.get("series")):
                out.setdefault(d[key], []).append(d["label"])
        return out

    # -- QIDO ----------------------------------------------------------------------------
    def plan(self, query: Query) -> Plan:
        p = Plan()
        for key in query.research:
            uids, negated = self._matching(query.level, key)
            if negated:
                p.exclude |= {_doc_id(query.level, u) for u in uids}
                continue
            p.narrowing = True
            if query.level is Level.INSTANCE:
                p.parts.append({"sop": {"$in": sorted(uids)}})
                p.parts.append({"series": {"$in": sorted(self._series_of(uids))}})
            else:
                p.parts.append({query.level.value: {"$in": sorted(uids)}})
        return p

    def _series_of(self, sops: set[str]) -> set[str]:
        return {r["value"][1] for r in self._view("uids", keys=sorted(sops)) if r.get("value")}

    def _matching(self, level: Level, key: ResearchKey) -> tuple[set[str], bool]:
        """The UIDs of ``level`` that satisfy ``key`` (or, when negated, that do not)."""
        if key.kind == REFERENCES:
            found = self.referencing(key.values)
            col = {Level.STUDY: 0, Level.SERIES: 1}.get(level, 2)
            return {f[col] for f in found}, False
        if key.kind == REFERENCED_BY:
            return self.holders(level, self.named_by(key.values)), False
        if key.kind == HAS:
            if level is Level.STUDY:
                return self.studies_having(key.values), key.negated
            return self.holders(level, self.named_by_kind(key.values)), key.negated
        assert key.kind == LABEL
        return self.labelled(level, key.values[0]), key.negated


def _doc_id(level: Level, uid: str) -> str:
    return _PREFIX.get(level, "") + uid


class Labels:
    """Label documents: writes (with their change-feed tombstones) and reads."""

    def __init__(self, client: CouchClient, reads: RefReads) -> None:
        self.client = client
        self.reads = reads

    def _check(self, study: str, series: str | None) -> None:
        doc_id = f"series:{series}" if series else f"study:{study}"
        status, doc = self.client.call("GET", self.client.doc_path(doc_id), ok=(200, 404))
        if status == 404 or (series and doc.get("study") != study):
            what = f"series {series} of study {study}" if series else f"study {study}"
            raise NotFound(f"{what} not found")

    def of(self, study: str, series: str | None) -> list[str]:
        self._check(study, series)
        docs = self.reads.find({"type": "label", "study": study, "series": series or ""}, ["label"])
        return sorted(d["label"] for d in docs)

    def add(self, study: str, series: str | None, label: str) -> bool:
        self._check(study, series)
        doc: dict[str, Any] = {
            "_id": label_id(study, series, label), "type": "label", "study": study,
            "series": series or "", "label": label, "t": time.time(),
        }  # fmt: skip
        status, _ = self.client.call(
            "PUT", self.client.doc_path(doc["_id"]), body=doc, ok=(201, 202, 409)
        )
        return status != 409  # 409: the label is there (a live document)

    def remove(self, study: str, series: str | None, label: str) -> bool:
        self._check(study, series)
        doc_id = label_id(study, series, label)
        for _ in range(50):
            status, doc = self.client.call("GET", self.client.doc_path(doc_id), ok=(200, 404))
            if status == 404:
                return False
            if self._tombstone(doc):
                return True
        raise StorageError(f"{doc_id}: too many concurrent writers")

    def _tombstone(self, doc: dict[str, Any]) -> bool:
        tomb = {
            "_id": doc["_id"], "_rev": doc["_rev"], "_deleted": True, "type": "label",
            "study": doc["study"], "series": doc["series"], "label": doc["label"],
            "t": time.time(),
        }  # fmt: skip
        status, _ = self.client.call(
            "PUT", self.client.doc_path(doc["_id"]), body=tomb, ok=(200, 201, 202, 409)
        )
        return status != 409

    def forget(self, study: str, series: str | None) -> None:
        """Take every label off a series (or, ``series`` None, a study and its series)
        that is no longer stored."""
        selector: dict[str, Any] = {"type": "label", "study": study}
        if series is not None:
            selector["series"] = series
        for doc in self.reads.find(selector, ["_id", "_rev", "study", "series", "label"]):
            self._tombstone(doc)


def backfill(client: CouchClient, reads: RefReads) -> int:
    """Edges for the instance documents written before they had any (``r`` missing), from
    their stored metadata; returns how many documents were updated. A document someone
    else wrote meanwhile (``409``) is theirs: it has its edges."""
    n = 0
    for row in reads.find({"type": "instance", "r": {"$exists": False}}, ["_id"]):
        status, doc = client.call("GET", client.doc_path(row["_id"]), ok=(200, 404))
        if status == 404 or "r" in doc:
            continue
        try:
            doc["r"] = edges_field(references.from_json(orjson.loads(doc["m"])))
        except Exception as e:  # noqa: BLE001 (a stored oddity: no edges, say so)
            log.warning("instance %s: references not read: %s", row["_id"], e)
            doc["r"] = []
        status, _ = client.call("PUT", client.doc_path(doc["_id"]), body=doc, ok=(201, 202, 409))
        n += status != 409
    return n
