"""The one write path: every instance enters here, whichever door it came through.

``prepare`` parses the Part 10 bytes once and produces everything reads need (stored
object, DICOM JSON metadata, frame/bulk map, index attributes) and writes the stored
object under a content-addressed key; ``commit`` makes it visible in the index in one
transaction. A crash between the two leaves at most an unreferenced blob, never a
half-visible instance.
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from webpacs import duplicates
from webpacs.core import anyattr, part10
from webpacs.core.attributes import STORED
from webpacs.core.dicomjson import build_metadata
from webpacs.core.framemap import FrameMap, bulk_spans, frame_spans, native_swap
from webpacs.core.query import normalize_date, normalize_datetime, normalize_time
from webpacs.core.rawjson import uid_value
from webpacs.core.references import Reference, extract
from webpacs.core.uids import check_uid
from webpacs.errors import (
    Conflict,
    InvalidDicom,
    InvalidRequest,
    StorageError,
    WebpacsError,
    WrongStudy,
)
from webpacs.meaning import meaning
from webpacs.pixels.codecs import PixelDescription
from webpacs.pixels.families import RECOMPRESS_TARGET, recompress_syntaxes
from webpacs.pixels.transcode import recompress_instance
from webpacs.storage import objects
from webpacs.storage.base import Blobs, Index, InstanceRecord, Outcome

log = logging.getLogger("webpacs.ingest")

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
SOP_CLASS_UID = 0x00080016
DIRECTORY_RECORDS = 0x00041220
IDENTIFIERS = {
    "SOPClassUID": SOP_CLASS_UID,
    "SOPInstanceUID": 0x00080018,
    "StudyInstanceUID": 0x0020000D,
    "SeriesInstanceUID": 0x0020000E,
}
DEFAULT_BULK_THRESHOLD = 1024


@dataclass
class IngestResult:
    """What happened to one instance."""

    outcome: Outcome
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    warnings: list[str] = field(default_factory=list)


@dataclass
class Prepared:
    """A parsed instance whose stored object is written but not yet visible."""

    record: InstanceRecord
    warnings: list[str]


def _read(data: bytes) -> tuple[Dataset, list[str]]:
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except InvalidDicomError:
            try:
                ds = pydicom.dcmread(io.BytesIO(data), force=True)
            except Exception as e:  # pydicom raises many kinds on garbage
                raise InvalidDicom(f"not a DICOM object: {e}") from e
        except Exception as e:
            raise InvalidDicom(f"cannot parse DICOM: {e}") from e
        # (every value is converted by build_metadata, which refuses what does not convert)
    caught = [str(x.message) for x in w]
    return ds, caught


def _text(value: object) -> str:
    """A DICOM JSON value as the string DICOM would have encoded it."""
    if isinstance(value, dict):  # PN: Alphabetic=Ideographic=Phonetic
        groups = [value.get(g) or "" for g in ("Alphabetic", "Ideographic", "Phonetic")]
        return "=".join(groups).rstrip("=")
    return "" if value is None else str(value)


def _normalize(vr: str, value: object) -> str:
    s = _text(value).strip()
    if s and vr == "DA":
        return normalize_date(s)
    if s and vr == "TM":
        return normalize_time(s)
    if s and vr == "DT":
        return normalize_datetime(s)
    return s


def index_attributes(meta: dict[str, Any]) -> dict[str, str]:
    """Normalized match values of every attribute the index stores, by keyword.

    Read from the instance's DICOM JSON (``build_metadata``), so no element is
    converted twice; several values are joined with a backslash, as DICOM encodes them.
    """
    out: dict[str, str] = {}
    for attrs in STORED.values():
        for a in attrs:
            values = (meta.get(a.hex) or {}).get("Value")
            if not values:
                continue
            try:
                v = "\\".join(_normalize(a.vr, x) for x in values)
            except (ValueError, TypeError):
                continue
            if v.strip("\\"):
                out[a.keyword] = v
    return out


def _normalized_bytes(data: bytes, ds: Dataset) -> tuple[bytes, str, list[str]]:
    """Part 10 bytes to store, their transfer syntax, and notes on what was changed."""
    notes: list[str] = []
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    ts = meta.get("TransferSyntaxUID")
    has_header = data[128:132] == b"DICM"
    if ts == DeflatedExplicitVRLittleEndian:
        # frames must be range reads: store inflated, in Explicit VR Little Endian
        notes.append("deflated object stored inflated as Explicit VR Little Endian")
        return part10.storable_bytes(ds, ExplicitVRLittleEndian), ExplicitVRLittleEndian, notes
    if has_header and ts:
        return data, str(ts), notes
    # no (complete) File Meta Information: infer the transfer syntax from how it was read
    if not ts:
        implicit, little = ds.original_encoding
        if implicit:
            ts = ImplicitVRLittleEndian
        elif little:
            ts = ExplicitVRLittleEndian
        else:
            ts = ExplicitVRBigEndian
        notes.append(f"no File Meta Information; transfer syntax inferred as {ts.name}")
    return part10.with_file_meta(data, ds.SOPClassUID, ds.SOPInstanceUID, ts), str(ts), notes


def _recompressed(stored: bytes, ts: str, ds: Dataset, notes: list[str]) -> tuple[bytes, str]:
    """``stored`` recompressed to JPEG-LS lossless, or as it is when the codecs cannot."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = recompress_instance(stored, ts, PixelDescription.from_dataset(ds))
    except Exception as e:  # a codec refusing this data: keep what was received
        notes.append(f"not recompressed ({type(e).__name__}: {e})")
        return stored, ts
    if out is None:
        notes.append("not recompressed: no JPEG-LS lossless encoding for this pixel data")
        return stored, ts
    notes.append(f"recompressed from {ts} to JPEG-LS lossless ({len(out)} of {len(stored)} bytes)")
    return out, RECOMPRESS_TARGET


def prepare(
    data: bytes,
    blobs: Blobs,
    *,
    expected_study: str | None = None,
    bulk_threshold: int = DEFAULT_BULK_THRESHOLD,
    recompress: Iterable[str] = (),
) -> Prepared:
    """Parse ``data`` (Part 10, or a bare data set), write its stored object, build its record.

    ``recompress`` names stored families (``ingest.recompress``: ``uncompressed``, ``jp2``,
    ``jpeglossless``, ``rle``) whose pixel data is stored recompressed to JPEG-LS lossless.
    Raises ``InvalidDicom`` for what is not a storable instance and ``InvalidRequest``
    (with ``details``) when it does not belong to ``expected_study``.
    """
    if len(data) < 8:
        raise InvalidDicom("not a DICOM object: too short")
    ds, notes = _read(data)
    if uid_value(ds, SOP_CLASS_UID) == MEDIA_STORAGE_DIRECTORY or DIRECTORY_RECORDS in ds:
        raise InvalidDicom("a DICOMDIR is a media directory, not an instance")
    ids = {}
    for kw, tag in IDENTIFIERS.items():
        value = uid_value(ds, tag)
        if value is None:
            if data[128:132] != b"DICM" and SOP_CLASS_UID not in ds:
                raise InvalidDicom("not a DICOM object: no 'DICM' marker and no SOP Class UID")
            raise InvalidDicom(f"not a storable instance: {kw} is missing")
        try:
            ids[kw] = check_uid(value, kw)
        except InvalidRequest as e:
            raise InvalidDicom(str(e)) from e
    details = {"sop_class_uid": ids["SOPClassUID"], "sop_uid": ids["SOPInstanceUID"]}
    if expected_study is not None and ids["StudyInstanceUID"] != expected_study:
        raise WrongStudy(
            f"instance {ids['SOPInstanceUID']} belongs to study {ids['StudyInstanceUID']},"
            f" not to {expected_study}",
            **details,
        )
    try:  # re-encoding (a deflated object, a missing File Meta) meets what reading let by
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stored, ts, changed = _normalized_bytes(data, ds)
        notes += changed + [str(w.message) for w in caught]
    except InvalidRequest:
        raise
    except Exception as e:
        raise InvalidDicom(f"corrupt DICOM data set: {e}", **details) from e
    if ts in recompress_syntaxes(recompress) and "PixelData" in ds:
        stored, ts = _recompressed(stored, ts, ds, notes)
    if stored is not data:
        ds, more = _read(stored)
        notes += more
    study, series, sop = ids["StudyInstanceUID"], ids["SeriesInstanceUID"], ids["SOPInstanceUID"]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            meta, bulk = build_metadata(ds, study, series, sop, threshold=bulk_threshold)
            frames, aligned = frame_spans(ds, stored, meta)
            swap = native_swap(ds)
            fmap = FrameMap(frames, bulk_spans(bulk, stored), swap=swap, aligned=aligned)
            refs = _references(ds, notes)
            digest = str(meaning(meta, stored, fmap, ts))  # "the same instance" (duplicates)
        notes += [str(w.message) for w in caught]
    except InvalidRequest:
        raise
    except Exception as e:
        raise InvalidDicom(f"corrupt DICOM data set: {e}", **details) from e
    fmap.sha256 = objects.byte_digest(stored)  # the object's bytes (`webpacs check`)
    key = objects.object_key(study, series, sop, fmap.sha256)
    # an object already there is touched (its age restarts), so that `webpacs check --repair`
    # never collects it as unreferenced before the commit below names it
    if not blobs.touch(key):
        blobs.put(key, stored)
    record = InstanceRecord(
        study_uid=study,
        series_uid=series,
        sop_uid=sop,
        sop_class_uid=ids["SOPClassUID"],
        transfer_syntax=ts,
        blob_key=key,
        size=len(stored),
        digest=digest,
        attributes=index_attributes(meta),
        metadata=orjson.dumps(meta),
        framemap=fmap.to_json(),
        received=time.time(),
        references=refs,
        values=tuple(anyattr.entries(meta)),  # here, not under the index's write lock
    )
    return Prepared(record, notes)


def _references(ds: Dataset, notes: list[str]) -> tuple[Reference, ...]:
    """The reference graph's edges from ``ds``; a data set whose references cannot be read
    is stored all the same, without edges, and the note says why."""
    try:
        return extract(ds)
    except Exception as e:  # pydicom converting a malformed value
        notes.append(f"references not recorded ({type(e).__name__}: {e})")
        return ()


def commit(
    index: Index,
    blobs: Blobs,
    prepared: Prepared,
    *,
    overwrite: bool,
    garbage: list[tuple[str, str]] | None = None,
) -> IngestResult:
    """Make a prepared instance visible; resolve same-UID duplicates and conflicts.

    Stored objects no longer referenced (a refused version, a replaced one) are deleted, or,
    inside an index batch, added to ``garbage`` as ``(sop_uid, key)`` for
    :func:`collect_garbage` once the batch is committed.
    """
    outcome, other = duplicates.put(index, blobs, prepared.record, overwrite=overwrite)
    return _settle(blobs, prepared, outcome, other, garbage)


def _settle(
    blobs: Blobs,
    prepared: Prepared,
    outcome: Outcome,
    other: InstanceRecord | None,
    garbage: list[tuple[str, str]] | None,
) -> IngestResult:
    """What the index decided, made final: objects no longer referenced are dropped, a
    conflict raised, the change logged."""
    rec = prepared.record

    def drop(key: str) -> None:
        if garbage is None:
            blobs.delete(key)
        else:
            garbage.append((rec.sop_uid, key))

    details = {"sop_class_uid": rec.sop_class_uid, "sop_uid": rec.sop_uid}
    if outcome is Outcome.DUPLICATE:
        if other is not None and other.blob_key != rec.blob_key:
            drop(rec.blob_key)  # the same data set in other bytes: the stored copy stays
        log.info("instance %s is already stored (same data set): nothing written", rec.sop_uid)
    if outcome is Outcome.CONFLICT:
        if other is None or other.blob_key != rec.blob_key:
            drop(rec.blob_key)
        raise Conflict(
            f"instance {rec.sop_uid} is already stored with different content"
            " (conflict policy: reject)",
            **details,
        )
    if outcome is Outcome.REPLACED and other is not None and other.blob_key != rec.blob_key:
        drop(other.blob_key)
    _log_change(outcome, rec)
    for note in prepared.warnings:
        log.info("%s: %s", rec.sop_uid, note)
    return IngestResult(
        outcome,
        rec.study_uid,
        rec.series_uid,
        rec.sop_uid,
        rec.sop_class_uid,
        rec.transfer_syntax,
        prepared.warnings,
    )


def _log_change(outcome: Outcome, rec: InstanceRecord) -> None:
    """One line per change, with its UIDs (``study``/``series``/``sop`` fields in JSON)."""
    uids = {"study": rec.study_uid, "series": rec.series_uid, "sop": rec.sop_uid}
    if outcome is Outcome.DUPLICATE:
        log.debug("already stored: instance %s", rec.sop_uid, extra=uids)
        return
    how = "stored" if outcome is Outcome.STORED else "replaced (conflict policy: overwrite)"
    log.info(
        "%s instance %s of series %s, study %s (%d bytes)",
        how, rec.sop_uid, rec.series_uid, rec.study_uid, rec.size,
        extra={**uids, "change": outcome.value},
    )  # fmt: skip


def collect_garbage(index: Index, blobs: Blobs, garbage: list[tuple[str, str]]) -> None:
    """Delete the stored objects in ``garbage`` that no committed record references."""
    for sop, key in garbage:
        current = index.get(sop)
        if current is None or current.blob_key != key:
            blobs.delete(key)


#: Threads preparing one request's instances: parsing holds the GIL, but hashing, writing
#: and fsync release it, so a few threads overlap one instance's I/O with the next's parsing.
PREPARE_THREADS = 4


def ingest_many(
    index: Index,
    blobs: Blobs,
    items: Iterable[bytes | WebpacsError],
    *,
    overwrite: bool = False,
    expected_study: str | None = None,
    bulk_threshold: int = DEFAULT_BULK_THRESHOLD,
    recompress: Iterable[str] = (),
) -> list[IngestResult | WebpacsError]:
    """Store several instances (e.g. one STOW-RS request); each gets a result or its error.

    Items that are already errors are passed through. Instances are prepared on a few
    threads, then committed in the order given, in one index batch, so a later copy of the
    same SOP Instance UID in one request meets the earlier one as a real client would.
    """

    def prep(item: bytes | WebpacsError) -> Prepared | WebpacsError:
        if isinstance(item, WebpacsError):
            return item
        try:
            return prepare(
                item,
                blobs,
                expected_study=expected_study,
                bulk_threshold=bulk_threshold,
                recompress=recompress,
            )
        except WebpacsError as e:
            return e

    items = list(items)
    if len(items) > 1:
        with ThreadPoolExecutor(min(PREPARE_THREADS, len(items)), "webpacs-prepare") as pool:
            prepared = list(pool.map(prep, items))
    else:
        prepared = [prep(item) for item in items]
    return commit_many(index, blobs, prepared, overwrite=overwrite)


def commit_many(
    index: Index, blobs: Blobs, prepared: list[Prepared | WebpacsError], *, overwrite: bool
) -> list[IngestResult | WebpacsError]:
    """``commit`` each instance, in order, in one index batch (one durable commit; on
    CouchDB one read and one ``_bulk_docs``, ``Index.put_many``).

    Errors among ``prepared`` are passed through; if the batch itself cannot be committed,
    every instance of it gets that error (none of them is stored).
    """
    results: list[IngestResult | WebpacsError] = []
    garbage: list[tuple[str, str]] = []
    ready = [p for p in prepared if not isinstance(p, WebpacsError)]
    try:
        with index.batch():
            records = [p.record for p in ready]
            decided = iter(duplicates.put_many(index, blobs, records, overwrite=overwrite))
            for p in prepared:
                if isinstance(p, WebpacsError):
                    results.append(p)
                    continue
                put = next(decided)
                if isinstance(put, WebpacsError):
                    results.append(put)
                    continue
                try:
                    results.append(_settle(blobs, p, *put, garbage))
                except WebpacsError as e:
                    results.append(e)
    except StorageError as e:
        log.error("index commit of %d instances failed: %s", len(prepared), e)
        done = results + [e] * (len(prepared) - len(results))
        return [r if isinstance(r, WebpacsError) else e for r in done]
    collect_garbage(index, blobs, garbage)
    return results


def ingest(
    index: Index,
    blobs: Blobs,
    data: bytes,
    *,
    overwrite: bool = False,
    expected_study: str | None = None,
    bulk_threshold: int = DEFAULT_BULK_THRESHOLD,
    recompress: Iterable[str] = (),
) -> IngestResult:
    """Store one instance: ``prepare`` then ``commit``."""
    prepared = prepare(
        data,
        blobs,
        expected_study=expected_study,
        bulk_threshold=bulk_threshold,
        recompress=recompress,
    )
    return commit(index, blobs, prepared, overwrite=overwrite)
