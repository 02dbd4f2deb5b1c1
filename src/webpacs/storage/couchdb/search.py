"""Reads of the CouchDB index: QIDO through Mango, aggregates through views.

A query selects the documents of its level (``type``) with one Mango selector built
from its conditions (``couchdb_design.selector_for``). Without conditions the results
come straight from the ``[type, k]`` index in order, paged by the server. With
conditions, the matches' ids and sort keys are gathered (an index narrows them: the
query must have an indexed condition or a UID scope, unless ``allowScan``), sorted,
and only the page's documents are fetched. The aggregates of the page's studies and
series come from the ``agg`` view, one grouped view query per study.
"""

from __future__ import annotations

from typing import Any

import orjson

from webpacs.core.attributes import Level
from webpacs.core.query import Condition, Query, matches
from webpacs.errors import InvalidRequest, NotImplementedFeature
from webpacs.storage import rows
from webpacs.storage.base import SearchResult
from webpacs.storage.couchdb import attrs, design
from webpacs.storage.couchdb.http import CouchClient
from webpacs.storage.couchdb.refs import RefReads
from webpacs.storage.labels import attach as attach_labels

_BATCH = 2000
#: More matches than this for one query is an error (narrow the query), never a crawl.
MAX_MATCHES = 200_000
_HIGH: dict[str, Any] = {}


def _int(value: Any) -> float:
    try:
        return int(str(value).split("\\")[0])
    except (TypeError, ValueError):
        return float("-inf")


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One selector for all ``parts``: one object when no field repeats, else ``$and``
    alone (pouchdb-server ignores the other fields of an object that also has ``$and``)."""
    selector: dict[str, Any] = {}
    for part in parts:
        for field, cond in part.items():
            if field in selector:
                return {"$and": parts}
            selector[field] = cond
    return selector


class Searcher:
    """The read side of ``CouchIndex``."""

    def __init__(self, client: CouchClient, *, allow_scan: bool) -> None:
        self.client = client
        self.allow_scan = allow_scan

    # -- building blocks -----------------------------------------------------------
    def find_all(
        self, selector: dict[str, Any], fields: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Every document matching ``selector`` (bookmark or skip paging)."""
        out: list[dict[str, Any]] = []
        bookmark: str | None = None
        while True:
            body: dict[str, Any] = {"selector": selector, "limit": _BATCH}
            if fields:
                body["fields"] = fields
            if bookmark:
                body["bookmark"] = bookmark
            elif out:
                body["skip"] = len(out)
            _, page = self.client.call("POST", "_find", body=body)
            docs = page.get("docs", [])
            out += docs
            if len(docs) < _BATCH:
                return out
            if len(out) > MAX_MATCHES:
                raise InvalidRequest(f"more than {MAX_MATCHES} matches: narrow the query")
            bookmark = page.get("bookmark")

    def docs_by_id(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Documents by id (missing ones left out)."""
        if not ids:
            return {}
        _, page = self.client.call(
            "POST", "_all_docs", body={"keys": ids}, params={"include_docs": "true"}
        )
        return {r["id"]: r["doc"] for r in page.get("rows", []) if r.get("doc")}

    def _view(self, name: str, **params: Any) -> list[dict[str, Any]]:
        query = {
            k: (v if isinstance(v, str) else orjson.dumps(v).decode()) for k, v in params.items()
        }
        _, page = self.client.call("GET", f"_design/webpacs/_view/{name}", params=query)
        return list(page.get("rows", []))

    def instance_docs(
        self, study: str, series: str | None = None, sop: str | None = None
    ) -> list[dict[str, Any]]:
        """Instance documents of a study, series or instance, in series/instance order."""
        selector: dict[str, Any] = {"type": "instance", "study": study}
        if series is not None:
            selector["series"] = series
        if sop is not None:
            selector["sop"] = sop
        docs = self.find_all(selector)
        docs.sort(
            key=lambda d: (
                _int(d["a"].get("SeriesNumber")),
                d["series"],
                _int(d["a"].get("InstanceNumber")),
                d["sop"],
            )  # fmt: skip
        )
        return docs

    def newest(self, level: Level, uid: str) -> dict[str, Any] | None:
        """The most recently received instance document of a series or study."""
        prefix = "se" if level is Level.SERIES else "st"
        rows = self._view(
            "newest", startkey=[prefix, uid, _HIGH], endkey=[prefix, uid],
            descending=True, limit=1, include_docs=True,
        )  # fmt: skip
        return rows[0]["doc"] if rows else None

    def instance_count(self) -> int:
        """Instances in the database (the ``agg`` view reduced to one row)."""
        rows = self._view("agg")
        return int(rows[0]["value"]["count"]) if rows else 0

    def series_stats(self, study: str, series: str) -> dict[str, Any] | None:
        """``_stats`` of the instances' version hashes in one series, or None if empty."""
        rows = self._view(
            "agg", startkey=[study, series], endkey=[study, series, _HIGH], group_level=2
        )
        return rows[0]["value"] if rows else None

    def series_sizes(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Instances of each (study, series): one multi-key query of the ``nser`` view."""
        if not pairs:
            return {}
        _, page = self.client.call(
            "POST", "_design/webpacs/_view/nser", params={"group": "true"},
            body={"keys": [list(p) for p in pairs]},
        )  # fmt: skip
        return {(r["key"][0], r["key"][1]): int(r["value"]) for r in page.get("rows", [])}

    def page_aggregates(self, studies: list[str]) -> dict[str, tuple[dict[str, int], list[str]]]:
        """Instances per series and the modalities of several studies (a QIDO page): their
        series summaries in one query, their sizes in one more, whatever their number."""
        if not studies:
            return {}
        series = self.find_all(
            {"type": "series", "study": {"$in": studies}}, ["study", "series", "a.Modality"]
        )
        sizes = self.series_sizes(sorted({(d["study"], d["series"]) for d in series}))
        out: dict[str, tuple[dict[str, int], set[str]]] = {s: ({}, set()) for s in studies}
        for d in series:
            n = sizes.get((d["study"], d["series"]), 0)
            if n and d["study"] in out:
                counts, mods = out[d["study"]]
                counts[d["series"]] = n
                if modality := (d.get("a") or {}).get("Modality"):
                    mods.add(modality)
        return {s: (counts, sorted(mods)) for s, (counts, mods) in out.items()}

    def study_series(self, study: str) -> list[str]:
        docs = self.find_all({"type": "series", "study": study}, ["series", "a"])
        docs.sort(key=lambda d: (_int(d["a"].get("SeriesNumber")), d["series"]))
        return [d["series"] for d in docs]

    def _studies_with_modality(self, cond: Condition) -> set[str]:
        if cond.kind == "wildcard":
            known = [r["key"][0] for r in self._view("mods", group_level=1)]
            wanted = [m for m in known if m and matches(cond, m)]
        else:
            wanted = list(cond.values)
        studies: set[str] = set()
        for m in wanted:
            rows = self._view("mods", startkey=[m], endkey=[m, _HIGH], group_level=2)
            studies.update(r["key"][1] for r in rows)
        return studies

    def _studies_by_name(self, prefix: str) -> set[str]:
        rows = self._view("names", startkey=prefix, endkey=prefix + "\ufff0")
        return {r["id"].removeprefix("study:") for r in rows}

    # -- QIDO ------------------------------------------------------------------------
    def search(self, query: Query, research: RefReads) -> SearchResult:
        level = query.level
        parts: list[dict[str, Any]] = [{"type": level.value}]
        if query.study_uid is not None:
            parts.append({"study": query.study_uid})
        if query.series_uid is not None and level is not Level.STUDY:
            parts.append({"series": query.series_uid})
        native = len(parts) > 1 or not query.conditions
        extension = [c.path for c in query.conditions if c.path is not None]
        if extension:  # extension keys: the ``attrs`` view (one instance for all)
            matched = attrs.matching_ids(
                self.client, self.find_all, extension, level,
                allow_scan=self.allow_scan, limit=MAX_MATCHES,
            )  # fmt: skip
            parts.append({"_id": {"$in": sorted(matched)}})
            native = True
        for cond in query.conditions:
            if cond.path is not None:
                continue
            if cond.attribute.keyword == "ModalitiesInStudy":
                parts.append({"study": {"$in": sorted(self._studies_with_modality(cond))}})
                native = True
                continue
            name = design.name_prefix(cond)
            if name is not None:
                parts.append({"study": {"$in": sorted(self._studies_by_name(name))}})
                native = True
            parts.append(design.selector_for(cond))
            native = native or design.indexable(cond, level)
        plan = research.plan(query)
        parts += plan.parts
        native = native or plan.narrowing
        if not native and not self.allow_scan:
            names = sorted(design.keyword_of(f) for f in design.INDEXED[level])
            raise NotImplementedFeature(
                f"this {level.value}-level query would scan every {level.value}: match on one of"
                f" {', '.join(names)} (without a leading wildcard or fuzzy matching), or set"
                " couchdb.allowScan"
            )
        want = None if query.limit is None else query.offset + query.limit + 1
        if len(parts) == 1 and not plan.exclude:
            ids = self._listing(level, query.offset, want)
        elif len(parts) == 1:  # only negated research keys: the listing, less what they name
            ids = [i for i in self._listing(level, 0, None) if i not in plan.exclude]
            ids = ids[query.offset : want]
        else:
            found = self.find_all(_merge(parts), ["_id", "k"])
            found.sort(key=lambda d: d.get("k", ""), reverse=level is Level.STUDY)
            ids = [d["_id"] for d in found if d["_id"] not in plan.exclude][query.offset : want]
        truncated = query.limit is not None and len(ids) > query.limit
        if truncated:
            ids = ids[: query.limit]
        result = SearchResult(self._rows(query, ids), truncated)
        attach_labels(query, result.rows, research.labels_of)
        return result

    def _listing(self, level: Level, offset: int, want: int | None) -> list[str]:
        """Ids of a level's documents in result order, straight from the sort index."""
        order = "desc" if level is Level.STUDY else "asc"
        ids: list[str] = []
        skip = offset
        while want is None or offset + len(ids) < want:
            n = _BATCH if want is None else min(_BATCH, want - offset - len(ids))
            body = {
                "selector": {"type": level.value, "k": {"$gt": None}},
                "sort": [{"type": order}, {"k": order}],
                "fields": ["_id"], "skip": skip, "limit": n,
                "use_index": design.index_ddoc("sortkey"),
            }  # fmt: skip
            _, page = self.client.call("POST", "_find", body=body)
            docs = page.get("docs", [])
            ids += [d["_id"] for d in docs]
            skip += len(docs)
            if len(docs) < n:
                break
        return ids

    def _rows(self, query: Query, ids: list[str]) -> list[dict[str, Any]]:
        level = query.level
        docs = self.docs_by_id(ids)
        page = [docs[i] for i in ids if i in docs]
        outer = sorted({f"study:{d['study']}" for d in page} if level is not Level.STUDY else set())
        if level is Level.INSTANCE:
            outer += sorted({f"series:{d['series']}" for d in page})
        summaries = self.docs_by_id(outer) if outer else {}
        candidates = []
        for d in page:
            study = d if level is Level.STUDY else summaries.get(f"study:{d['study']}", {})
            series = d if level is Level.SERIES else summaries.get(f"series:{d['series']}", {})
            rep = d["_id"] if level is Level.INSTANCE else d["rep"]
            candidates.append(
                rows.Candidate(
                    d["study"], d.get("series"), rep, study.get("j", "{}"),
                    None if level is Level.STUDY else series.get("j", "{}"),
                    d["j"] if level is Level.INSTANCE else None,
                )
            )  # fmt: skip
        own = {d["_id"]: d["m"] for d in page} if level is Level.INSTANCE else {}
        return rows.build_rows(query, candidates, _Rows(self, own))


class _Rows:
    """``rows.RowSource`` over CouchDB: the aggregates of a page in a bounded number of
    queries (``page_aggregates``, ``series_sizes``), not one per study."""

    def __init__(self, searcher: Searcher, known: dict[str, rows.Json]) -> None:
        self.searcher = searcher
        self.known = known
        self._studies: dict[str, tuple[dict[str, int], list[str]]] = {}

    def study_counts(self, study_uids: list[str]) -> dict[str, rows.StudyCounts]:
        missing = [s for s in dict.fromkeys(study_uids) if s not in self._studies]
        self._studies.update(self.searcher.page_aggregates(missing))
        out = {}
        for s in study_uids:
            counts, mods = self._studies[s]
            out[s] = rows.StudyCounts(len(counts), sum(counts.values()), mods)
        return out

    def series_counts(self, series: list[tuple[str, str]]) -> dict[str, int]:
        sizes = self.searcher.series_sizes(sorted(set(series)))
        return {se: sizes.get((st, se), 0) for st, se in series}

    def metadata(self, sop_uids: list[str]) -> dict[str, rows.Json]:
        missing = sorted(set(sop_uids) - set(self.known))
        found = {k: d["m"] for k, d in self.searcher.docs_by_id(missing).items()}
        return {k: v for k, v in (self.known | found).items() if k in set(sop_uids)}
