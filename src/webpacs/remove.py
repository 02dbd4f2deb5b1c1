"""The one delete path, twin of ``ingest``: every removal goes through here.

Whoever asks (``DELETE`` over DICOMweb, the proxy cache evicting what it retrieved), a
removal takes the instances out of the index first (the change feed records it, reads
stop seeing them), then deletes their stored objects and the derived documents of every
series and study they belonged to. A crash in between leaves at most unreferenced
blobs, never an index row without its object.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from webpacs.documents import metadata
from webpacs.storage.base import Blobs, InstanceRecord
from webpacs.storage.registry import Store

log = logging.getLogger("webpacs.remove")

#: A study, a series of it or one instance: (study UID, series UID or None, SOP UID or None).
Target = tuple[str, str | None, str | None]


def remove(
    store: Store, study: str, series: str | None = None, sop: str | None = None
) -> list[InstanceRecord]:
    """Remove a study, series or instance; returns the records removed (empty if none)."""
    return remove_many(store, [(study, series, sop)])


def remove_many(store: Store, targets: Iterable[Target]) -> list[InstanceRecord]:
    """Remove several studies, series or instances; returns the records removed."""
    records: list[InstanceRecord] = []
    for study, series, sop in targets:
        records += store.index.delete(study, series, sop)
    forget(store.blobs, records)
    return records


def forget(blobs: Blobs, records: list[InstanceRecord]) -> None:
    """Delete the stored objects of removed ``records`` and the derived documents of their
    series and studies (rebuilt by the deriver if anything of them is left)."""
    for rec in records:
        blobs.delete(rec.blob_key)
        log.info(
            "deleted instance %s of series %s, study %s",
            rec.sop_uid, rec.series_uid, rec.study_uid,
            extra={"study": rec.study_uid, "series": rec.series_uid, "sop": rec.sop_uid,
                   "change": "deleted"},
        )  # fmt: skip
    for study, series in sorted({(r.study_uid, r.series_uid) for r in records}):
        metadata.drop_series(blobs, study, series)
    for study in sorted({r.study_uid for r in records}):
        metadata.drop_study(blobs, study)
