"""Duplicates by meaning: when an instance that arrives again is "already stored".

A SOP Instance UID that is already stored, arriving with the same data set, is already
stored: success, nothing written (STOW-RS lists it in ReferencedSOPSequence, C-STORE
answers Success). "The same data set" ignores File Meta Information, group lengths,
trailing padding, value padding and the transfer syntax, and, when the transfer syntaxes
differ and both are lossless, asks for equal pixels after decoding. Only a real difference
is a conflict for the ``ingest.conflict`` policy.

Ingest records a meaning digest per instance (``webpacs.core.meaning``) and the index
compares digests, so the common cases (the same bytes; the same data set re-encoded by
another sender, e.g. dcmtk's ``storescu``; another byte order or VR encoding) are decided
by the index in its own transaction, as before. When the digests differ, :func:`put` and
:func:`put_many` have the index look closer (``same_instance``) before it calls it a
conflict or a replacement (``storage.base.decide``), at a cost paid only then:

- a record written before meaning digests existed (its ``digest`` is the sha256 of the
  stored bytes) has its meaning computed from its stored object;
- two copies that agree in every attribute and differ only in how their pixel data is
  encoded, both losslessly (native and JPEG-LS/RLE/JPEG 2000 lossless, or another planar
  configuration), are decoded and compared frame by frame.

So a compressed copy of a stored native instance is not decoded at every ingest, only when
it meets its native twin. With ``ingest.conflict: overwrite`` the closer look happens
before the index write (an equivalent copy must not replace the stored one), which costs
one index read for each instance that arrives while ``overwrite`` is set, except on an
index that reads what it is about to write anyway (CouchDB).
"""

from __future__ import annotations

import io
import logging
import warnings

import pydicom

from webpacs.core.dicomjson import build_metadata
from webpacs.core.framemap import FrameMap, bulk_spans, frame_spans, native_swap
from webpacs.errors import WebpacsError
from webpacs.meaning import Meaning, meaning
from webpacs.pixels.compare import same_pixels
from webpacs.storage.base import Blobs, Index, InstanceRecord, Outcome, PutResult

log = logging.getLogger("webpacs.ingest")

_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
#: Any threshold will do: inline and bulk binary values give the same meaning digest.
_THRESHOLD = 1024


def stored_meaning(data: bytes) -> Meaning:
    """The meaning digest of a stored Part 10 object, computed from its bytes as ingest
    computes it (the digest a record holds may come from an earlier version)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        study, series, sop = (str(ds.get(k, "")) for k in _UIDS)
        meta, bulk = build_metadata(ds, study, series, sop, threshold=_THRESHOLD)
        frames, aligned = frame_spans(ds, data, meta)
    fmap = FrameMap(frames, bulk_spans(bulk, data), swap=native_swap(ds), aligned=aligned)
    return meaning(meta, data, fmap, str(ds.file_meta.TransferSyntaxUID))


def same_instance(blobs: Blobs, stored: InstanceRecord, incoming: InstanceRecord) -> bool:
    """Whether ``incoming`` holds the data set ``stored`` holds (see the module docstring).

    Both records' objects are in ``blobs`` (ingest writes the incoming one before it
    commits). A record whose object cannot be read is not the same.
    """
    if stored.digest == incoming.digest:
        return True
    new = Meaning.parse(incoming.digest)
    if new is None:
        return False
    try:
        # recomputed: a record written before meaning digests holds the sha256 of its bytes,
        # and one written by an earlier version of them may differ in form, not in meaning
        old = stored_meaning(blobs.get(stored.blob_key))
        if old == new:
            return True
        if old.attributes != new.attributes or not (old.lossless and new.lossless):
            return False
        same = same_pixels(blobs.get(stored.blob_key), blobs.get(incoming.blob_key))
    except Exception as e:  # an unreadable stored object: not provably the same
        log.warning(
            "instance %s: stored copy not compared (%s: %s)", stored.sop_uid, type(e).__name__, e
        )
        return False
    if same:
        log.info(
            "instance %s: same pixels after decoding (%s, %s)",
            stored.sop_uid,
            stored.transfer_syntax,
            incoming.transfer_syntax,
        )
    return same


def put(
    index: Index, blobs: Blobs, record: InstanceRecord, *, overwrite: bool
) -> tuple[Outcome, InstanceRecord | None]:
    """``index.put``, with "the same data set" decided by meaning (module docstring)."""
    result = put_many(index, blobs, [record], overwrite=overwrite)[0]
    if isinstance(result, WebpacsError):
        raise result
    return result


def put_many(
    index: Index, blobs: Blobs, records: list[InstanceRecord], *, overwrite: bool
) -> list[PutResult]:
    """``index.put_many``, with "the same data set" decided by meaning: one result each."""

    def same(stored: InstanceRecord, incoming: InstanceRecord) -> bool:
        return same_instance(blobs, stored, incoming)

    return index.put_many(records, overwrite=overwrite, same=same)
