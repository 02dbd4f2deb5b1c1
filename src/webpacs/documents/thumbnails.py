"""Series thumbnails kept as derived documents, like series metadata (see ``documents.metadata``).

A series' default thumbnail (``pixels.thumbnail.DEFAULT``) is built once per series
version and kept in the blob store as ``derived/<study>/<series>/<version>-thumbnail.jpg``;
later requests, on any node sharing the blob store, cost one blob read. Thumbnails of
earlier versions are deleted when a new one is built (and by the series metadata build,
which removes every document of an earlier version under the same prefix).
"""

from __future__ import annotations

import logging

from webpacs.documents.series_store import series_document
from webpacs.errors import NotFound, WebpacsError
from webpacs.pixels.thumbnail import representative, thumbnail
from webpacs.storage.base import Blobs, Index, InstanceRecord

log = logging.getLogger("webpacs.documents")

NAME = "thumbnail.jpg"


def series_thumbnail(index: Index, blobs: Blobs, study: str, series: str) -> tuple[bytes, str]:
    """The default JPEG thumbnail of a series and its ETag; builds it when stale."""

    def build(records: list[InstanceRecord]) -> bytes:
        rec, number = representative(records)
        return thumbnail(blobs, rec, number)

    data, version = series_document(index, blobs, study, series, NAME, build)
    return data, f'W/"t{version}"'


def study_thumbnail(index: Index, blobs: Blobs, study: str) -> tuple[bytes, str]:
    """The study's thumbnail: that of its first series (series number order) with pixel data."""
    series_uids = index.study_series(study)
    if not series_uids:
        raise NotFound(f"study {study} not found")
    for series in series_uids:
        try:
            return series_thumbnail(index, blobs, study, series)
        except NotFound:
            continue
    raise NotFound(f"no series of study {study} has pixel data")


def representative_of(index: Index, study: str, series: str | None) -> tuple[InstanceRecord, int]:
    """The frame a series (or, with ``series`` None, a study) is represented by."""
    series_uids = [series] if series is not None else index.study_series(study)
    for uid in series_uids:
        try:
            return representative(index.instances(study, uid))
        except NotFound:
            continue
    what = f"series {series}" if series else f"study {study}"
    raise NotFound(f"{what} not found or without pixel data")


def prebuild(index: Index, blobs: Blobs, study: str, series: str) -> None:
    """Build a series' thumbnail ahead of the first request (the deriver calls this)."""
    try:
        series_thumbnail(index, blobs, study, series)
    except WebpacsError as e:  # no pixel data, no codec, a storage hiccup: built on read
        log.debug("no thumbnail for %s/%s: %s", study, series, e)
