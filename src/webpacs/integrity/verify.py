"""One stored object against the index record that names it.

The record's ``digest`` is the "same content" test of ingest, which may become a digest
of the data set's meaning rather than of its bytes; so an object is judged by what it is,
not by that field alone. It is intact when

- it has the size the record says,
- its bytes after the File Meta group hash to the digest its content-addressed key
  carries (``storage.objects``), or to the record's digest,
- it parses as DICOM, with the SOP Instance, series, study and SOP Class UIDs and the
  transfer syntax of the record,
- and every frame and bulk data span of the record's frame map lies inside it.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import pydicom

from webpacs.storage.base import Blobs, InstanceRecord
from webpacs.storage.objects import byte_digest, parse_key

_UIDS = (
    ("SOPInstanceUID", "sop_uid"),
    ("SeriesInstanceUID", "series_uid"),
    ("StudyInstanceUID", "study_uid"),
    ("SOPClassUID", "sop_class_uid"),
)


def _spans(framemap: dict[str, Any]) -> list[tuple[int, int]]:
    spans = [tuple(s) for frame in framemap.get("frames", []) for s in frame]
    spans += [tuple(s) for value in framemap.get("bulk", {}).values() for s in value]
    return [(int(s[0]), int(s[1])) for s in spans]


def _identity(data: bytes, rec: InstanceRecord) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            found = {attr: str(ds.get(kw, "")) for kw, attr in _UIDS}
            ts = str(ds.file_meta.get("TransferSyntaxUID", ""))
    except Exception as e:  # anything pydicom raises on a broken object
        return f"does not parse as DICOM: {type(e).__name__}: {e}"
    for kw, attr in _UIDS:
        if found[attr] != getattr(rec, attr):
            return f"{kw} is {found[attr]!r}, the index says {getattr(rec, attr)!r}"
    if ts != rec.transfer_syntax:
        return f"transfer syntax is {ts!r}, the index says {rec.transfer_syntax!r}"
    return None


def problem(blobs: Blobs, rec: InstanceRecord, *, full: bool, size: int | None) -> str | None:
    """What is wrong with ``rec``'s stored object (None: intact).

    ``size`` is the object's size from a listing (None: not listed). Without ``full`` only
    the existence and the size are checked. Raises ``NotFound`` when the object is missing.
    """
    if size is None:
        size = blobs.size(rec.blob_key)  # NotFound: missing
    if size != rec.size:
        return f"{size} bytes, the index says {rec.size}"
    for offset, length in _spans(rec.framemap):
        if offset < 0 or offset + length > size:
            return f"its frame map points past its end ({offset}+{length} > {size})"
    if not full:
        return None
    data = blobs.get(rec.blob_key)
    if len(data) != rec.size:
        return f"{len(data)} bytes, the index says {rec.size}"
    digest = byte_digest(data)
    key = parse_key(rec.blob_key)
    if not (digest == rec.object_digest or (key is not None and digest.startswith(key.digest))):
        return f"its bytes changed (sha256 {digest[:20]}..., its key says {_expected(rec)}...)"
    return _identity(data, rec)


def _expected(rec: InstanceRecord) -> str:
    key = parse_key(rec.blob_key)
    return key.digest if key is not None else rec.object_digest[:20]
