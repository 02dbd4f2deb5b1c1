"""The storage Protocols: ``Index`` (records, queries, change feed) and ``Blobs`` (bytes).

Both are synchronous (DESIGN.md rule 7); the web layer calls them through a threadpool.
Backends translate their driver's exceptions into ``webpacs.errors`` at their boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, BinaryIO, Protocol

from webpacs.core.anyattr import Entry
from webpacs.core.query import Query
from webpacs.core.references import Reference
from webpacs.errors import WebpacsError


class Outcome(StrEnum):
    """What putting an instance into the index did."""

    STORED = "stored"
    DUPLICATE = "duplicate"  # same SOP Instance UID, same content: nothing changed
    CONFLICT = "conflict"  # same SOP Instance UID, other content, refused
    REPLACED = "replaced"  # same SOP Instance UID, other content, overwritten


@dataclass
class InstanceRecord:
    """One instance as the index keeps it."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    blob_key: str
    size: int
    # what the data set means (webpacs.core.meaning, "m1:..."): the "same content" test;
    # records written before it hold the sha256 of the stored bytes (see object_digest)
    digest: str
    attributes: dict[
        str, str
    ]  # keyword -> normalized match value for every STORED attribute present
    metadata: bytes  # DICOM JSON (orjson) with relative BulkDataURIs
    framemap: dict[str, Any]  # FrameMap.to_json()
    received: float = 0.0
    #: the edges ingest extracted (``core.references``); records read back leave it empty
    #: (``Index.references`` answers)
    references: tuple[Reference, ...] = ()
    #: every value of the metadata as the research tables keep it (``core.anyattr.entries``),
    #: computed by ingest before the index's write lock; None: computed at the write
    values: tuple[Entry, ...] | None = None

    @property
    def object_digest(self) -> str:
        """sha256 (hex) of the stored object's bytes after its File Meta Information: what
        an integrity check verifies the blob against. Kept in the frame map; a record
        written before it was has it as its ``digest``."""
        return str(self.framemap.get("sha256") or self.digest)


@dataclass
class Change:
    """One entry of the change feed."""

    seq: int
    op: str  # "put" | "delete" | "label" (a study's or series' labels changed; sop_uid "")
    study_uid: str
    series_uid: str
    sop_uid: str
    time: float


@dataclass
class SearchResult:
    """QIDO rows as DICOM JSON objects, plus whether ``limit`` cut the result."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False


#: Whether a stored record (first) holds the data set an incoming one (second) holds,
#: asked when their digests differ (``webpacs.duplicates`` looks closer).
SameCheck = Callable[[InstanceRecord, InstanceRecord], bool]
#: What putting one record of several did: its outcome and the record it replaced or
#: kept, or the error that kept it out (the other records are not affected).
PutResult = tuple[Outcome, InstanceRecord | None] | WebpacsError


def same_digest(stored: InstanceRecord, incoming: InstanceRecord) -> bool:
    return stored.digest == incoming.digest


def decide(
    stored: InstanceRecord | None, incoming: InstanceRecord, *, overwrite: bool, same: SameCheck
) -> Outcome:
    """The outcome of ``incoming`` meeting what is stored under its SOP Instance UID."""
    if stored is None:
        return Outcome.STORED
    if stored.digest == incoming.digest or same(stored, incoming):
        return Outcome.DUPLICATE
    return Outcome.REPLACED if overwrite else Outcome.CONFLICT


def put_each(
    index: Index, records: list[InstanceRecord], *, overwrite: bool, same: SameCheck
) -> list[PutResult]:
    """``Index.put_many`` for an index whose ``put`` is its own transaction: one record
    after the other (the caller's ``batch`` groups them), each as ``decide`` has it."""
    out: list[PutResult] = []
    for rec in records:
        try:
            if overwrite:  # an equivalent copy must not replace the stored one
                current = index.get(rec.sop_uid)
                if (
                    current is not None
                    and decide(current, rec, overwrite=True, same=same) is Outcome.DUPLICATE
                ):
                    out.append((Outcome.DUPLICATE, current))
                    continue
            outcome, other = index.put(rec, overwrite=overwrite)
            if outcome is Outcome.CONFLICT and other is not None:
                outcome = decide(other, rec, overwrite=False, same=same)
            out.append((outcome, other))
        except WebpacsError as e:
            out.append(e)
    return out


class Index(Protocol):
    """Records of stored instances, the QIDO queries over them, and the change feed."""

    def put(
        self, record: InstanceRecord, *, overwrite: bool
    ) -> tuple[Outcome, InstanceRecord | None]:
        """Insert ``record`` atomically; returns the outcome and the record it replaced or kept.

        Same SOP Instance UID with the same ``digest`` -> ``DUPLICATE`` (nothing written);
        other digest -> ``REPLACED`` when ``overwrite`` else ``CONFLICT`` (nothing written).
        """
        ...

    def put_many(
        self, records: list[InstanceRecord], *, overwrite: bool, same: SameCheck
    ) -> list[PutResult]:
        """``put`` each record, in order (a later copy of a SOP Instance UID meets the
        earlier one), with ``same`` asked before differing digests make a conflict or a
        replacement (``decide``); one result per record. An index may write them all in
        one call (CouchDB's ``_bulk_docs``); ``StorageError`` when the call itself fails."""
        ...

    def batch(self) -> AbstractContextManager[None]:
        """Group this thread's ``put``s (e.g. one STOW-RS request) into one commit, when the
        index can; each ``put`` stays atomic. Nothing is durable before the batch ends."""
        ...

    def get(self, sop_uid: str) -> InstanceRecord | None:
        """The record of one instance, with metadata and frame map."""
        ...

    def instances(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[InstanceRecord]:
        """Records of a study, series or instance, ordered by series then instance number."""
        ...

    def delete(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[InstanceRecord]:
        """Remove a study, series or instance; returns the records removed (empty if none)."""
        ...

    def search(self, query: Query) -> SearchResult:
        """Answer a QIDO query from the index (never by reading stored objects)."""
        ...

    def series_version(self, study_uid: str, series_uid: str) -> str | None:
        """A token that changes whenever the series' instances change; None if it is unknown."""
        ...

    def study_series(self, study_uid: str) -> list[str]:
        """Series UIDs of a study, in series number order."""
        ...

    def study_conflicts(self, study_uid: str) -> list[dict[str, Any]]:
        """Patient/study attributes that disagreed between instances of a study."""
        ...

    def changes(self, since: int = 0, limit: int = 1000) -> list[Change]:
        """Changes after sequence number ``since``, oldest first."""
        ...

    def references(self, sop_uid: str) -> list[Reference]:
        """The edges instance ``sop_uid`` makes (empty when it is not stored)."""
        ...

    def labels(self, study_uid: str, series_uid: str | None = None) -> list[str]:
        """The labels of a study (``series_uid`` None) or a series, sorted; ``NotFound``
        when it is not stored."""
        ...

    def add_label(self, study_uid: str, series_uid: str | None, label: str) -> bool:
        """Label a study or series; whether the label is new (a change ``label`` is logged
        then). ``NotFound`` when it is not stored."""
        ...

    def remove_label(self, study_uid: str, series_uid: str | None, label: str) -> bool:
        """Take a label off; whether it was there. ``NotFound`` when not stored."""
        ...

    def totals(self) -> dict[str, int | None]:
        """What the index holds, for ``/metrics``: ``studies``, ``series``, ``instances`` and
        ``bytes`` (of the stored objects); None for a figure the backend cannot count cheaply."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BlobEntry:
    """One blob as a listing shows it: its key, size and when it was last written or touched."""

    key: str
    size: int
    modified: float  # seconds since the epoch


class Blobs(Protocol):
    """Opaque bytes by key (``a/b/c``). Writes are atomic: a reader never sees half a blob."""

    def put(self, key: str, data: bytes) -> None: ...

    def put_file(self, key: str, fp: BinaryIO) -> None: ...

    def get(self, key: str) -> bytes: ...

    def get_range(self, key: str, offset: int, length: int) -> bytes: ...

    def open(self, key: str) -> BinaryIO: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None: ...

    def keys(self, prefix: str = "") -> Iterator[str]: ...

    def local_path(self, key: str) -> str | None:
        """A filesystem path for zero-copy serving, or None for remote backends."""
        ...

    # -- what `webpacs check` needs (storage.objects, integrity/) --------------------------
    def entries(self, prefix: str = "") -> Iterator[BlobEntry]:
        """``keys`` with each blob's size and modification time (one listing)."""
        ...

    def touch(self, key: str) -> bool:
        """Restart the blob's age (its modification time becomes now); False if it is missing.

        Ingest touches an object it finds already stored, so that ``collect`` spares it.
        """
        ...

    def collect(self, key: str, older_than: float, referenced: Callable[[str], bool]) -> bool:
        """Delete ``key`` if it was last written or touched before ``older_than`` and
        ``referenced(key)`` is false, asked after the age; True when it was deleted.

        A ``touch`` or ``put`` that races with it either makes it spare the blob or finds
        the blob gone (and writes it again), so a committed reference never loses its blob.
        """
        ...

    def scraps(self) -> Iterator[BlobEntry]:
        """What interrupted writes left behind (temporary files, unfinished uploads)."""
        ...

    def remove_scrap(self, key: str) -> None:
        """Remove one of ``scraps`` (undo it, when it is a collection that was cut short)."""
        ...
