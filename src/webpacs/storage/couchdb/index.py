"""The scale-out index: CouchDB 3.x (or pouchdb-server) over its HTTP API.

One document per instance (``_id`` = SOP Instance UID), study and series summaries that
follow the newest instance, aggregates from views, QIDO through Mango (see
``couchdb_design`` for the documents and ``couchdb_search`` for the queries). The
database, its views and indexes are created on first use and upgraded when their
definition changes. Several nodes may share one database: every read-modify-write of a
shared document retries on ``409``, so no instance is lost to a concurrent writer, and
the conflicting revisions replication leaves on summaries are merged on the next write.

The change feed is CouchDB's ``_changes``. Its sequence numbers are integers on
pouchdb-server and on a single-shard CouchDB database they are opaque strings whose
numeric prefix grows; ``changes`` reports that prefix and remembers the opaque value to
resume from (a ``since`` it has not seen is answered by reading the feed from the start).
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import orjson

from webpacs.config import Settings
from webpacs.core.attributes import STORED, Level
from webpacs.core.dicomjson import project
from webpacs.core.query import Query
from webpacs.core.references import Reference
from webpacs.errors import StorageError, WebpacsError
from webpacs.storage import rows
from webpacs.storage.base import (
    Change,
    InstanceRecord,
    Outcome,
    PutResult,
    SameCheck,
    SearchResult,
    decide,
    same_digest,
)
from webpacs.storage.couchdb import attrs, bulk, design, refs
from webpacs.storage.couchdb.http import CouchClient
from webpacs.storage.couchdb.search import Searcher

log = logging.getLogger("webpacs.index")

_RETRIES = 50


def _vh(sop: str, digest: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{sop}/{digest}".encode()).digest()[:4]) & 0x7FFFFFFF


def _record(doc: dict[str, Any]) -> InstanceRecord:
    return InstanceRecord(
        study_uid=doc["study"],
        series_uid=doc["series"],
        sop_uid=doc["sop"],
        sop_class_uid=doc["cls"],
        transfer_syntax=doc["ts"],
        blob_key=doc["blob"],
        size=doc["size"],
        digest=doc["digest"],
        attributes=doc["a"],
        metadata=doc["m"].encode(),
        framemap=orjson.loads(doc["f"]),
        received=doc["received"],
    )


def _seq_int(seq: Any) -> int:
    if isinstance(seq, int):
        return seq
    return int(str(seq).split("-", 1)[0])


def _pause(attempt: int) -> None:
    time.sleep(random.uniform(0, min(0.05, 0.002 * (attempt + 1))))


class CouchIndex:
    """``Index`` on one CouchDB database."""

    record_of = staticmethod(_record)

    def __init__(
        self,
        url: str,
        database: str,
        *,
        username: str = "",
        password: str = "",
        max_concurrent: int = 16,
        allow_scan: bool = False,
    ) -> None:
        self.client = CouchClient(
            url, database, username=username, password=password, max_concurrent=max_concurrent
        )
        self._opaque: dict[int, str] = {}
        upgraded = self._ensure_database()
        self.schema_version = design.DESIGN_VERSION
        self.searcher = Searcher(self.client, allow_scan=allow_scan)
        self.ref_reads = refs.RefReads(self.client)
        self.label_docs = refs.Labels(self.client, self.ref_reads)
        if upgraded and (n := refs.backfill(self.client, self.ref_reads)):
            log.info("CouchDB: references of %d stored instance(s) recorded", n)

    @classmethod
    def from_settings(cls, settings: Settings) -> CouchIndex:
        """Open the database the ``couchdb`` configuration section names."""
        c = settings.couchdb
        return cls(
            c.url,
            c.database,
            username=c.username,
            password=c.password,
            max_concurrent=c.max_concurrent,
            allow_scan=c.allow_scan,
        )

    # -- setup ---------------------------------------------------------------------
    def _ensure_database(self) -> bool:
        """Create the database, its views and indexes; whether the views were (re)written."""
        c = self.client
        c.call("PUT", "", ok=(201, 202, 412))
        status, current = c.call("GET", c.doc_path(design.DESIGN_ID), ok=(200, 404))
        upgraded = status == 404 or current.get("version") != design.DESIGN_VERSION
        if upgraded:
            if status == 200 and attrs.backfill(c):  # written before instances had ``x``
                log.info("CouchDB instance documents given their attribute values")
            doc = design.design_document()
            if status == 200:
                doc["_rev"] = current["_rev"]
            c.call("PUT", c.doc_path(design.DESIGN_ID), body=doc, ok=(201, 202, 409))
            log.info("CouchDB design document at version %s", design.DESIGN_VERSION)
        wanted = {design.index_ddoc(n) for n in design.MANGO_INDEXES}
        _, listing = c.call("GET", "_index")
        have = {i["ddoc"].removeprefix("_design/") for i in listing.get("indexes", []) if i["ddoc"]}
        for name, fields in design.MANGO_INDEXES.items():
            if design.index_ddoc(name) not in have:
                c.call(
                    "POST",
                    "_index",
                    body={
                        "index": {"fields": fields},
                        "ddoc": design.index_ddoc(name),
                        "name": name,
                    },
                )
        for ddoc in have - wanted:
            if ddoc.startswith("webpacs-idx-"):
                _, d = c.call("GET", c.doc_path(f"_design/{ddoc}"), ok=(200, 404))
                if d and "_rev" in d:
                    c.call(
                        "DELETE", c.doc_path(f"_design/{ddoc}"), params={"rev": d["_rev"]},
                        ok=(200, 202, 404, 409),
                    )  # fmt: skip
        return upgraded

    def close(self) -> None:
        self.client.close()

    # -- documents ------------------------------------------------------------------
    def _doc(self, doc_id: str, **params: Any) -> dict[str, Any] | None:
        status, doc = self.client.call(
            "GET", self.client.doc_path(doc_id), params=params or None, ok=(200, 404)
        )
        return doc if status == 200 else None

    def _save(self, doc: dict[str, Any]) -> bool:
        """PUT one document; False on a ``409`` (someone else wrote it first)."""
        status, _ = self.client.call(
            "PUT", self.client.doc_path(doc["_id"]), body=doc, ok=(201, 202, 409)
        )
        return status != 409

    def instance_doc(self, rec: InstanceRecord, meta: dict[str, Any]) -> dict[str, Any]:
        uids = (rec.study_uid, rec.series_uid, rec.sop_uid)
        return {
            "_id": rec.sop_uid,
            "type": "instance",
            "study": rec.study_uid,
            "series": rec.series_uid,
            "sop": rec.sop_uid,
            "cls": rec.sop_class_uid,
            "ts": rec.transfer_syntax,
            "blob": rec.blob_key,
            "size": rec.size,
            "digest": rec.digest,
            "received": rec.received or time.time(),
            "a": rec.attributes,
            "m": rec.metadata.decode(),
            "f": orjson.dumps(rec.framemap).decode(),
            "j": orjson.dumps(project(meta, STORED[Level.INSTANCE])).decode(),
            "k": design.sort_key(Level.INSTANCE, rec.attributes, uids),
            "vh": _vh(rec.sop_uid, rec.digest),
            "t": time.time(),
            "r": refs.edges_field(rec.references),
            "x": attrs.doc_field(meta),
        }

    # -- writes ------------------------------------------------------------------------
    def batch(self) -> AbstractContextManager[None]:
        """Nothing to group: each ``put_many`` is its own two calls (``bulk``)."""
        return nullcontext()

    def put_many(
        self, records: list[InstanceRecord], *, overwrite: bool, same: SameCheck
    ) -> list[PutResult]:
        return bulk.put_many(self, records, overwrite=overwrite, same=same, retries=_RETRIES)

    def put(
        self, record: InstanceRecord, *, overwrite: bool
    ) -> tuple[Outcome, InstanceRecord | None]:
        result = self.put_many([record], overwrite=overwrite, same=same_digest)[0]
        if isinstance(result, WebpacsError):
            raise result
        return result

    def put_alone(
        self, record: InstanceRecord, *, overwrite: bool, same: SameCheck
    ) -> tuple[Outcome, InstanceRecord | None]:
        """One instance, one document at a time: read, decide, write until no one else
        wrote in between, then its summaries (``bulk`` falls back on it after a ``409``)."""
        meta = orjson.loads(record.metadata)
        doc = self.instance_doc(record, meta)
        for attempt in range(_RETRIES):
            current = self._doc(record.sop_uid)
            old = _record(current) if current is not None else None
            outcome = decide(old, record, overwrite=overwrite, same=same)
            if outcome in (Outcome.DUPLICATE, Outcome.CONFLICT):
                return outcome, old
            doc.pop("_rev", None)
            if current is not None:
                doc["_rev"] = current["_rev"]
            if self._save(doc):
                break
            _pause(attempt)
        else:
            raise StorageError(f"instance {record.sop_uid}: too many concurrent writers")
        self._summarize(Level.SERIES, doc, meta)
        self._summarize(Level.STUDY, doc, meta)
        if old is not None and old.series_uid != record.series_uid:
            self.after_removal([old])
        return outcome, old

    def _update(
        self, doc_id: str, change: Callable[[dict[str, Any] | None], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """Read-modify-write one shared document until no one else wrote in between.

        ``change`` gets the current document (None if missing) and returns the new one,
        or None for no change. Conflicting revisions left by replication are merged
        (the one with the newest ``latest`` wins) and the losers deleted.
        """
        for attempt in range(_RETRIES):
            current = self._doc(doc_id, conflicts="true")
            if current is not None and current.get("_conflicts"):
                current = self.merge_conflicts(current)
            new = change(current)
            if new is None:
                return current
            if current is not None:
                new["_rev"] = current["_rev"]
            if self._save(new):
                return new
            _pause(attempt)
        raise StorageError(f"{doc_id}: too many concurrent writers")

    def merge_conflicts(self, doc: dict[str, Any]) -> dict[str, Any]:
        revs = doc.pop("_conflicts")
        others = [self._doc(doc["_id"], rev=r) for r in revs]
        versions = [doc] + [o for o in others if o is not None]
        best = max(versions, key=lambda d: (d.get("latest", 0), d.get("rep", "")))
        merged = dict(best)
        merged["_rev"] = doc["_rev"]  # written over the winning revision
        losers = [{"_id": doc["_id"], "_rev": r, "_deleted": True} for r in revs]
        self.client.call("POST", "_bulk_docs", body={"docs": losers}, ok=(201, 202))
        return merged

    def _summary_doc(
        self, level: Level, inst: dict[str, Any], meta: dict[str, Any]
    ) -> tuple[dict[str, Any], rows.Summary]:
        summary = rows.summary_of(level, inst["sop"], inst["received"], inst["a"], meta)
        values = summary.values
        if level is Level.SERIES:  # Mango matches study attributes on series documents too
            kws = [a.keyword for a in STORED[Level.STUDY]]
            values = {kw: inst["a"][kw] for kw in kws if kw in inst["a"]} | values
        uid = inst["study"] if level is Level.STUDY else inst["series"]
        doc = {
            "_id": f"{level.value}:{uid}",
            "type": level.value,
            "study": inst["study"],
            "series": inst["series"] if level is Level.SERIES else None,
            "a": values,
            "j": orjson.dumps(summary.projection).decode(),
            "rep": summary.rep,
            "latest": summary.latest,
            "k": design.sort_key(level, inst["a"], (inst["study"], inst["series"], inst["sop"])),
        }
        return doc, summary

    def follow_step(
        self,
        level: Level,
        inst: dict[str, Any],
        meta: dict[str, Any],
        current: dict[str, Any] | None,
    ) -> tuple[dict[str, Any] | None, list[rows.Disagreement]]:
        """The summary after ``inst`` was stored (None: ``current`` stays), and what
        disagreed (``rows.follow``)."""
        fresh, summary = self._summary_doc(level, inst, meta)
        values = None if current is None else current["a"]
        latest = None if current is None else current.get("latest", 0)
        replace, found = rows.follow(inst["study"], values, latest, summary)
        return (dict(fresh) if replace else None), found

    def _summarize(self, level: Level, inst: dict[str, Any], meta: dict[str, Any]) -> None:
        disagreements: list[rows.Disagreement] = []

        def change(current: dict[str, Any] | None) -> dict[str, Any] | None:
            new, found = self.follow_step(level, inst, meta, current)
            disagreements[:] = found
            return new

        uid = inst["study"] if level is Level.STUDY else inst["series"]
        self._update(f"{level.value}:{uid}", change)
        self.record_disagreements(disagreements)

    def record_disagreements(self, disagreements: list[rows.Disagreement]) -> None:
        """Keep what disagreed (``study_conflicts``), one document each, in one call."""
        if disagreements:
            docs = [
                {"_id": f"conflict:{d.study_uid}:{uuid.uuid4().hex}", "type": "conflict",
                 "study": d.study_uid, "sop": d.sop_uid, "keyword": d.keyword,
                 "previous": d.previous, "value": d.value, "time": d.time}
                for d in disagreements
            ]  # fmt: skip
            self.client.call("POST", "_bulk_docs", body={"docs": docs}, ok=(201, 202))

    def after_removal(self, removed: list[InstanceRecord]) -> None:
        """Summaries whose representative went away follow the newest remaining instance."""
        gone = {r.sop_uid for r in removed}
        for uid in {r.series_uid for r in removed}:
            self._refresh_summary(Level.SERIES, uid, gone)
        for uid in {r.study_uid for r in removed}:
            self._refresh_summary(Level.STUDY, uid, gone)

    def _refresh_summary(self, level: Level, uid: str, gone: set[str]) -> None:
        newest = self.searcher.newest(level, uid)

        def change(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if newest is None:
                return {"_id": f"{level.value}:{uid}", "_deleted": True} if current else None
            if current is not None and not rows.orphaned(current.get("rep"), gone):
                return None
            return self._summary_doc(level, newest, orjson.loads(newest["m"]))[0]

        self._update(f"{level.value}:{uid}", change)

    def delete(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[InstanceRecord]:
        docs = self.searcher.instance_docs(study_uid, series_uid, sop_uid)
        removed = self._delete_revisions([d["_id"] for d in docs])
        if removed:
            self.after_removal(removed)
            self._forget_labels(removed)
        if removed and series_uid is None and sop_uid is None:
            conflicts = self.searcher.find_all({"type": "conflict", "study": study_uid})
            tombs = [{"_id": c["_id"], "_rev": c["_rev"], "_deleted": True} for c in conflicts]
            if tombs:
                self.client.call("POST", "_bulk_docs", body={"docs": tombs}, ok=(201, 202))
        return removed

    def _delete_revisions(self, ids: list[str]) -> list[InstanceRecord]:
        """Delete every revision of these instance documents, the conflicting ones that
        replication left included (else one of them would take the deleted one's place).

        One read of the documents with their conflicts, the conflicting revisions read
        one by one (they name objects of their own), one ``_bulk_docs`` of tombstones;
        documents someone wrote in between are read again. Returns one record per
        revision deleted.
        """
        removed: list[InstanceRecord] = []
        pending = list(dict.fromkeys(ids))
        for attempt in range(_RETRIES):
            if not pending:
                break
            _, page = self.client.call(
                "POST", "_all_docs", params={"include_docs": "true", "conflicts": "true"},
                body={"keys": pending},
            )  # fmt: skip
            revisions: list[dict[str, Any]] = []
            for row in page.get("rows", []):
                doc = row.get("doc")
                if not doc or doc.get("type") != "instance":
                    continue
                revisions.append(doc)
                for rev in doc.pop("_conflicts", []):
                    other = self._doc(doc["_id"], rev=rev)
                    if other is not None and other.get("type") == "instance":
                        revisions.append(other)
            if not revisions:
                break
            tombs = [
                {"_id": d["_id"], "_rev": d["_rev"], "_deleted": True, "type": "instance",
                 "study": d["study"], "series": d["series"], "sop": d["sop"], "t": time.time()}
                for d in revisions
            ]  # fmt: skip
            _, results = self.client.call("POST", "_bulk_docs", body={"docs": tombs}, ok=(201, 202))
            failed = {r["id"] for r in results if r.get("error")}
            removed += [
                _record(d) for d, r in zip(revisions, results, strict=True) if not r.get("error")
            ]
            pending = [i for i in pending if i in failed]
            if pending:
                _pause(attempt)
        return removed

    def _forget_labels(self, removed: list[InstanceRecord]) -> None:
        """Labels of the series and studies no longer stored go with them."""
        for study, series in sorted({(r.study_uid, r.series_uid) for r in removed}):
            if self._doc(f"series:{series}") is None:
                self.label_docs.forget(study, series)
        for study in sorted({r.study_uid for r in removed}):
            if self._doc(f"study:{study}") is None:
                self.label_docs.forget(study, None)

    def add_label(self, study_uid: str, series_uid: str | None, label: str) -> bool:
        return self.label_docs.add(study_uid, series_uid, label)

    def remove_label(self, study_uid: str, series_uid: str | None, label: str) -> bool:
        return self.label_docs.remove(study_uid, series_uid, label)

    # -- reads ---------------------------------------------------------------------------
    def references(self, sop_uid: str) -> list[Reference]:
        doc = self._doc(sop_uid)
        if doc is None or doc.get("type") != "instance":
            return []
        return [Reference.from_list(e) for e in doc.get("r") or []]

    def labels(self, study_uid: str, series_uid: str | None = None) -> list[str]:
        return self.label_docs.of(study_uid, series_uid)

    def get(self, sop_uid: str) -> InstanceRecord | None:
        doc = self._doc(sop_uid)
        return _record(doc) if doc is not None and doc.get("type") == "instance" else None

    def instances(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[InstanceRecord]:
        return [_record(d) for d in self.searcher.instance_docs(study_uid, series_uid, sop_uid)]

    def series_version(self, study_uid: str, series_uid: str) -> str | None:
        stats = self.searcher.series_stats(study_uid, series_uid)
        if stats is None:
            return None
        return f"{int(stats['count']):x}.{int(stats['sum']):x}"

    def study_series(self, study_uid: str) -> list[str]:
        return self.searcher.study_series(study_uid)

    def study_conflicts(self, study_uid: str) -> list[dict[str, Any]]:
        docs = self.searcher.find_all({"type": "conflict", "study": study_uid})
        docs.sort(key=lambda d: (d["time"], d["_id"]))
        return [
            rows.Disagreement(
                d["study"], d["sop"], d["keyword"], d["previous"], d["value"], d["time"]
            ).as_record()
            for d in docs
        ]

    def changes(self, since: int = 0, limit: int = 1000) -> list[Change]:
        out: list[Change] = []
        cursor: Any = self._opaque.get(since, since) if since else 0
        batch = max(100, limit)
        while len(out) < limit:
            params = {"since": str(cursor), "limit": str(batch), "include_docs": "true"}
            status, page = self.client.call("GET", "_changes", params=params, ok=(200, 400))
            if status == 400 and cursor != 0:  # CouchDB 3: an integer it never gave out
                cursor = 0  # read from the start, keep what comes after ``since``
                continue
            if status == 400:
                raise StorageError(f"CouchDB _changes: {page}")
            results = page.get("results", [])
            for row in results:
                n = _seq_int(row["seq"])
                if not isinstance(row["seq"], int):
                    self._opaque[n] = row["seq"]
                doc = row.get("doc") or {}
                if n <= since or doc.get("type") not in ("instance", "label"):
                    continue
                if doc["type"] == "label":
                    out.append(Change(n, "label", doc["study"], doc["series"], "", doc.get("t", 0)))
                    continue
                op = "delete" if row.get("deleted") else "put"
                out.append(Change(n, op, doc["study"], doc["series"], doc["sop"], doc.get("t", 0)))
                if len(out) >= limit:
                    break
            if len(results) < batch:
                break
            cursor = page["last_seq"]
        return out

    def search(self, query: Query) -> SearchResult:
        return self.searcher.search(query, self.ref_reads)

    def totals(self) -> dict[str, int | None]:
        """Instances from the ``agg`` view's reduction; the other figures would need a view
        of their own (or a walk), so they are left out."""
        count = self.searcher.instance_count()
        return {"studies": None, "series": None, "instances": count, "bytes": None}
