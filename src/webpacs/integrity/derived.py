"""Which derived documents are stale, and rebuilding them (``documents`` keeps them).

Keys (see ``documents.series_store`` and ``documents.metadata``):
``derived/<study>/<series>/<version>-<base tag>.json.gz`` (series metadata),
``derived/<study>/<series>/<version>-thumbnail.jpg`` and
``derived/<study>/study-<study tag>-<base tag>.json.gz`` (study metadata). A document is
stale when its version is not the series' (or study's) current one, or its series or
study is no longer stored. Metadata documents are built per base URL, of which the key
holds only a hash: the base is read back from the document's own ``BulkDataURI``s, and
a document without any is simply removed (the next read builds it again).
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass

from webpacs.documents import metadata, thumbnails
from webpacs.errors import NotFound, WebpacsError
from webpacs.storage.base import Blobs, Index

log = logging.getLogger("webpacs.check")

PREFIX = "derived/"
_URI = b'"BulkDataURI":"'
GONE_SERIES = "its series is no longer stored"
GONE_STUDY = "its study is no longer stored"


@dataclass(frozen=True)
class Derived:
    """What a derived document's key says."""

    key: str
    study_uid: str
    series_uid: str  # "" for a study document
    version: str  # the series version, or the study tag
    base: str  # the base URL's tag; "thumbnail" for a thumbnail


def parse(key: str) -> Derived | None:
    """The parts of a derived document's key; None when it is not one."""
    parts = key.split("/")
    if len(parts) == 3 and parts[0] == "derived" and parts[2].startswith("study-"):
        name = parts[2].removeprefix("study-").removesuffix(".json.gz")
        tag, _, base = name.partition("-")
        return Derived(key, parts[1], "", tag, base)
    if len(parts) == 4 and parts[0] == "derived":
        version, _, name = parts[3].partition("-")  # documents.series_store's naming
        if name == thumbnails.NAME:
            return Derived(key, parts[1], parts[2], version, "thumbnail")
        return Derived(key, parts[1], parts[2], version, name.removesuffix(".json.gz"))
    return None


def stale(index: Index, doc: Derived) -> str | None:
    """Why ``doc`` is stale (None: it is current)."""
    if doc.series_uid:
        version = index.series_version(doc.study_uid, doc.series_uid)
        if version is None:
            return GONE_SERIES
        if version != doc.version:
            return f"built for series version {doc.version}, the series is at {version}"
        return None
    series = index.study_series(doc.study_uid)
    if not series:
        return GONE_STUDY
    tag = metadata.study_tag(index, doc.study_uid, series)
    return None if tag == doc.version else "built for an earlier state of the study"


def base_url(blobs: Blobs, doc: Derived) -> str | None:
    """The base URL a metadata document was built for, read from its ``BulkDataURI``s."""
    if doc.base == "thumbnail":
        return None
    try:
        body = gzip.decompress(blobs.get(doc.key))
    except (NotFound, OSError, EOFError):
        return None
    at = body.find(_URI)
    if at < 0:
        return None
    start = at + len(_URI)
    end = body.find(b"/studies/", start)
    if end < 0:
        return None
    base = body[start:end].decode("utf-8", "replace")
    return base if metadata.base_tag(base) == doc.base else None


def rebuild(index: Index, blobs: Blobs, docs: list[Derived]) -> dict[str, str]:
    """Build the current documents in place of the stale ``docs`` and remove those;
    returns what was done for each key."""
    done: dict[str, str] = {}
    bases: dict[tuple[str, str], set[str]] = {}
    for doc in docs:
        base = base_url(blobs, doc)
        bases.setdefault((doc.study_uid, doc.series_uid), set())
        if base is not None:
            bases[(doc.study_uid, doc.series_uid)].add(base)
    for (study, series), urls in sorted(bases.items()):
        try:
            if series:
                thumbnails.prebuild(index, blobs, study, series)
                for url in sorted(urls):
                    metadata.series_metadata_gz(index, blobs, study, series, url)
            else:
                for url in sorted(urls):
                    metadata.study_metadata_gz(index, blobs, study, url)
        except NotFound:
            pass  # gone: its documents are only removed
        except WebpacsError as e:
            log.warning("derived documents of %s/%s not rebuilt: %s", study, series, e)
    for doc in docs:
        why = stale(index, doc)
        if why is None:  # current after all (it changed meanwhile): keep it
            continue
        blobs.delete(doc.key)
        rebuilt = doc.base == "thumbnail" or bases[(doc.study_uid, doc.series_uid)]
        if why in (GONE_SERIES, GONE_STUDY):
            done[doc.key] = "removed"
        elif rebuilt:
            done[doc.key] = "removed; the current version is built"
        else:
            done[doc.key] = "removed; the next read builds the current version"
    return done
