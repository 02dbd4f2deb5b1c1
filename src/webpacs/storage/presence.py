"""Whether the stored objects the index names are in the blob store.

A response that streams stored objects (WADO-RS retrieve of an instance, series or
study, its ZIP form) is committed once its headers are sent: a missing object found
half-way can only break the body off. So every object is known to exist before the
first byte goes out. A few objects are asked for one by one (``exists``); more are
checked with one listing per series folder (``keys``: one or a few calls on S3 where
a ``HEAD`` per object would be hundreds). An object missing raises ``ObjectMissing``
(``503`` with the reason) and is logged as a finding for ``webpacs check``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from webpacs.errors import NotFound, ObjectMissing
from webpacs.storage.base import Blobs, InstanceRecord

log = logging.getLogger("webpacs.integrity")

#: Up to this many objects are checked one by one rather than by listing their folders.
FEW = 4


def missing(blobs: Blobs, records: list[InstanceRecord]) -> list[InstanceRecord]:
    """The records whose stored object is not in ``blobs``."""
    if len(records) <= FEW:
        return [r for r in records if not blobs.exists(r.blob_key)]
    present: set[str] = set()
    for folder in sorted({r.blob_key.rpartition("/")[0] + "/" for r in records}):
        present.update(blobs.keys(folder))
    return [r for r in records if r.blob_key not in present]


def ensure_stored(blobs: Blobs, records: list[InstanceRecord]) -> None:
    """Raise ``ObjectMissing`` (and log it) unless every record's object is stored."""
    gone = missing(blobs, records)
    if gone:
        raise report(gone)


def report(gone: Iterable[InstanceRecord]) -> ObjectMissing:
    """Log the records whose object is missing; the error to answer with."""
    gone = list(gone)
    for rec in gone:
        log.warning(
            "stored object %s of instance %s is missing (run `webpacs check`)",
            rec.blob_key, rec.sop_uid,
            extra={"study": rec.study_uid, "series": rec.series_uid, "sop": rec.sop_uid,
                   "finding": "missing"},
        )  # fmt: skip
    first = gone[0]
    more = f" and {len(gone) - 1} more" if len(gone) > 1 else ""
    return ObjectMissing(
        f"the stored object of instance {first.sop_uid}{more} is missing from the object"
        " store (not replicated yet, or lost); `webpacs check` lists it"
    )


@contextmanager
def reading(rec: InstanceRecord) -> Iterator[None]:
    """Reads of ``rec``'s object inside: one that finds nothing is ``ObjectMissing``, logged."""
    try:
        yield
    except NotFound as e:
        raise report([rec]) from e
