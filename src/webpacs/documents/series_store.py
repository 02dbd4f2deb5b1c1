"""Where a series' derived documents live and how one is read or built: one rule for all.

A document of a series at one version is the blob
``derived/<study>/<series>/<version>-<name>`` (``name`` says what it is: ``<base>.json.gz``
for metadata, ``thumbnail.jpg`` for the thumbnail). It is read when it exists; otherwise it
is built from the series' records, stored, and every document of an earlier version under
the same prefix is deleted. Every node sharing the blob store serves the same bytes and only
one build per version is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from webpacs.errors import NotFound
from webpacs.storage.base import Blobs, Index, InstanceRecord

log = logging.getLogger("webpacs.documents")


def prefix(study: str, series: str) -> str:
    """The blob key prefix of a series' derived documents."""
    return f"derived/{study}/{series}/"


def version_of(key: str) -> str:
    """The series version a derived document's key names."""
    return key.rsplit("/", 1)[-1].split("-")[0]


def series_document(
    index: Index,
    blobs: Blobs,
    study: str,
    series: str,
    name: str,
    build: Callable[[list[InstanceRecord]], bytes],
) -> tuple[bytes, str]:
    """The document ``name`` of a series at its current version, and that version; built
    with ``build(records)`` when it is not stored yet."""
    version = index.series_version(study, series)
    if version is None:
        raise NotFound(f"series {series} of study {study} not found")
    where = prefix(study, series)
    key = f"{where}{version}-{name}"
    try:
        return blobs.get(key), version
    except NotFound:
        pass
    records = index.instances(study, series)
    if not records:
        raise NotFound(f"series {series} of study {study} not found")
    data = build(records)
    blobs.put(key, data)
    for old in list(blobs.keys(where)):
        if version_of(old) != version:
            blobs.delete(old)  # documents of earlier versions, whatever they are
    log.debug("built %s of series %s/%s version %s", name, study, series, version)
    return data, version
