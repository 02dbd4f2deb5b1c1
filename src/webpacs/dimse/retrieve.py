"""C-MOVE and C-GET SCP handlers: send stored instances as C-STORE sub-operations.

The identifier names what to retrieve by unique keys (PS3.4 C.4.2.2.1): *Patient ID*
at PATIENT level, a list of *Study Instance UID* s at STUDY level, of *Series Instance
UID* s at SERIES level, of *SOP Instance UID* s at IMAGE level, each with the unique
keys of the levels above it. C-MOVE sends them over a new association to a destination
of the ``ae`` table (PS3.4 C.4.2); C-GET over the same association, in the storage
contexts the SCU proposed with the SCP role (PS3.4 C.4.3).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom.presentation import PresentationContext, build_context

from webpacs.core.attributes import Level
from webpacs.core.query import parse_qido
from webpacs.dimse.context import ScpContext, text
from webpacs.dimse.find import check_level
from webpacs.dimse.status import CANCEL, PENDING, Service, failure
from webpacs.dimse.tls import client_context
from webpacs.errors import InvalidRequest, StorageError
from webpacs.storage.base import Blobs, Index, InstanceRecord

log = logging.getLogger("webpacs.dimse")

#: The unique key of each level, outermost first (PS3.4 C.6.1.1, C.6.2.1).
UNIQUE_KEYS = (
    ("PATIENT", "PatientID"),
    ("STUDY", "StudyInstanceUID"),
    ("SERIES", "SeriesInstanceUID"),
    ("IMAGE", "SOPInstanceUID"),
)
_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)
#: At most 128 presentation contexts in one association request (PS3.8 9.3.2.2).
MAX_CONTEXTS = 128


def select(index: Index, identifier: Dataset, sop_class: str) -> list[InstanceRecord]:
    """The stored instances an identifier of a C-MOVE or C-GET names (PS3.4 C.4.2.2.1)."""
    level = check_level(identifier, sop_class)
    params: list[tuple[str, str]] = []
    for lvl, keyword in UNIQUE_KEYS:
        value = text(identifier.get(keyword, ""))
        if lvl == level and not value:
            raise InvalidRequest(f"a {level}-level retrieve needs {keyword}")
        if value:
            if "*" in value or "?" in value:
                raise InvalidRequest(f"{keyword}: wildcards are not allowed in a retrieve")
            params.append((keyword, value))
        if lvl == level:
            break
    rows = index.search(parse_qido(Level.INSTANCE, params)).rows
    records = []
    for row in rows:
        rec = index.get(str(row["00080018"]["Value"][0]))
        if rec is not None:  # deleted meanwhile
            records.append(rec)
    return records


def load(blobs: Blobs, rec: InstanceRecord) -> Dataset:
    """A stored object as a data set to send; its values stay the stored bytes."""
    try:
        data = blobs.get(rec.blob_key)
    except OSError as e:
        raise StorageError(f"cannot read {rec.sop_uid}: {e}") from e
    return pydicom.dcmread(io.BytesIO(data))


def contexts(records: list[InstanceRecord]) -> list[PresentationContext]:
    """Presentation contexts to propose to a C-MOVE destination for ``records``.

    One per SOP Class and stored transfer syntax, so that a destination accepting it
    receives the stored bytes unchanged; and for uncompressed ones a second context
    offering the little endian syntaxes, into which pynetdicom may convert. Past
    ``MAX_CONTEXTS`` (PS3.8 9.3.2.2) the rest are dropped and their sub-operations fail.
    """
    wanted: dict[tuple[str, str], None] = {}
    for rec in records:
        wanted[(rec.sop_class_uid, rec.transfer_syntax)] = None
        if rec.transfer_syntax in _UNCOMPRESSED:
            wanted[(rec.sop_class_uid, "")] = None
    out = []
    for sop_class, ts in wanted:
        syntaxes: list[str] = [ts] if ts else [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        out.append(build_context(sop_class, syntaxes))
    if len(out) > MAX_CONTEXTS:
        log.warning("C-MOVE: %d presentation contexts needed, %d proposed", len(out), MAX_CONTEXTS)
    return out[:MAX_CONTEXTS]


def _send(ctx: ScpContext, event: Any, records: list[InstanceRecord]) -> Iterator[Any]:
    for rec in records:
        if event.is_cancelled:
            yield CANCEL, None
            return
        try:
            ds = load(ctx.store.blobs, rec)
        except Exception as exc:  # a failed sub-operation, not a failed retrieve
            log.error("cannot send %s: %s", rec.sop_uid, exc)
            ds = Dataset()  # pynetdicom counts a C-STORE it cannot send as failed
            ds.SOPInstanceUID = rec.sop_uid
        yield PENDING, ds


def handle_move(event: Any, ctx: ScpContext) -> Iterator[Any]:
    """C-MOVE SCP (PS3.4 C.4.2): the destination, the number of sub-operations, the data sets.

    An unknown *Move Destination* yields ``(None, None)``, which pynetdicom answers with
    A801 *Move Destination unknown*. Other errors are answered with the status of
    ``status.py``; pynetdicom counts them as one failed sub-operation, after opening
    (and releasing) an association with the destination.
    """
    title = str(event.move_destination or "").strip()
    dest = ctx.destination(title)
    if dest is None:
        log.warning("C-MOVE to unknown destination %r (not in the ae table)", title)
        yield None, None
        return
    try:
        ctx.allow(event, "move")
        records = select(ctx.store.index, event.identifier, str(event.request.AffectedSOPClassUID))
        kwargs = {"ae_title": dest.title, "contexts": contexts(records)}
        if dest.tls:  # PS3.15 B.1: the destination's entry asks for TLS
            kwargs["tls_args"] = (client_context(ctx.settings.dimse.tls), dest.host)
    except Exception as exc:  # handler exceptions never escape (status.py)
        yield dest.host, dest.port
        yield 1
        yield failure(Service.MOVE, exc), None
        return
    log.info("C-MOVE %d instances to %s (%s:%s)", len(records), title, dest.host, dest.port)
    yield dest.host, dest.port, kwargs
    yield len(records)
    yield from _send(ctx, event, records)


def handle_get(event: Any, ctx: ScpContext) -> Iterator[Any]:
    """C-GET SCP (PS3.4 C.4.3): the number of sub-operations, then the data sets."""
    try:
        ctx.allow(event, "get")
        records = select(ctx.store.index, event.identifier, str(event.request.AffectedSOPClassUID))
    except Exception as exc:  # handler exceptions never escape (status.py)
        yield 1
        yield failure(Service.GET, exc), None
        return
    log.info("C-GET %d instances to %s", len(records), event.assoc.requestor.ae_title)
    yield len(records)
    yield from _send(ctx, event, records)
