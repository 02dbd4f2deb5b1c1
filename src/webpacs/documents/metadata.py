"""Derived metadata documents: pre-computed, gzip'd series and study metadata.

They are rebuilt lazily when the series' version (the last change-feed sequence number
that touched it) moves, and kept in the blob store under
``derived/<study>/<series>/<version>-<base>.json.gz``, so every node sharing the blob
store serves the same bytes and only one build per version is needed.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import zlib
from collections.abc import Iterator

from webpacs.core.dicomjson import join_array, render
from webpacs.documents.series_store import prefix, series_document
from webpacs.errors import NotFound
from webpacs.storage.base import Blobs, Index, InstanceRecord

log = logging.getLogger("webpacs.documents")


def base_tag(base_url: str) -> str:
    """The short hash of a base URL that the documents built for it carry in their key."""
    return hashlib.sha1(base_url.encode()).hexdigest()[:12]


def series_metadata_gz(
    index: Index, blobs: Blobs, study: str, series: str, base_url: str
) -> tuple[bytes, str]:
    """The gzip'd series metadata (a JSON array) and its ETag; builds it when stale."""

    def build(records: list[InstanceRecord]) -> bytes:
        body = render(join_array(r.metadata for r in records), base_url)
        return gzip.compress(body, compresslevel=6, mtime=0)

    base = base_tag(base_url)
    data, version = series_document(index, blobs, study, series, f"{base}.json.gz", build)
    return data, f'W/"{version}-{base}"'


def series_metadata(
    index: Index, blobs: Blobs, study: str, series: str, base_url: str
) -> tuple[bytes, str]:
    """Uncompressed series metadata (for clients that do not accept gzip) and its ETag."""
    data, etag = series_metadata_gz(index, blobs, study, series, base_url)
    return gzip.decompress(data), etag


#: Documents up to this size (uncompressed) are decompressed whole for an identity
#: response; larger ones (a study of thousands of instances: 57 MB at 5,000) are streamed.
WHOLE_UP_TO = 8 << 20
#: The decompressed size of each chunk of a streamed document.
CHUNK = 1 << 20


def plain_size(data: bytes) -> int:
    """The uncompressed size of a gzip document, from its trailer (ISIZE: modulo 2**32)."""
    return int.from_bytes(data[-4:], "little") if len(data) >= 18 else 0


def gunzipped(data: bytes, chunk: int = CHUNK) -> Iterator[bytes]:
    """The decompressed bytes of the gzip document ``data``, ``chunk`` bytes at a time: an
    identity response holds one chunk of a large document, not all of it."""
    d = zlib.decompressobj(31)
    rest = data
    while rest:
        out = d.decompress(rest, chunk)
        rest = d.unconsumed_tail
        if out:
            yield out
        if d.eof:
            break
    tail = d.flush()
    if tail:
        yield tail


def study_tag(index: Index, study: str, series_uids: list[str] | None = None) -> str:
    """What a study's documents are keyed by: a hash of its series' versions."""
    if series_uids is None:
        series_uids = index.study_series(study)
    versions = [f"{s}={index.series_version(study, s)}" for s in series_uids]
    return hashlib.sha1("|".join(versions).encode()).hexdigest()[:20]


def study_metadata_gz(index: Index, blobs: Blobs, study: str, base_url: str) -> tuple[bytes, str]:
    """The gzip'd study metadata: its series' documents concatenated, built when stale.

    Kept as ``derived/<study>/study-<hash of the series versions>-<base>.json.gz``.
    """
    series_uids = index.study_series(study)
    if not series_uids:
        raise NotFound(f"study {study} not found")
    tag = study_tag(index, study, series_uids)
    key = f"derived/{study}/study-{tag}-{base_tag(base_url)}.json.gz"
    etag = f'W/"s{tag}-{base_tag(base_url)}"'
    try:
        return blobs.get(key), etag
    except NotFound:
        pass
    # compressed series by series: the build holds one series' document, not the study's
    gz = zlib.compressobj(6, zlib.DEFLATED, 31)  # a gzip stream (mtime 0)
    out, sep = [gz.compress(b"[")], b""
    for series in series_uids:
        data, _ = series_metadata(index, blobs, study, series, base_url)
        inner = data.strip()[1:-1].strip()
        if inner:
            out += [gz.compress(sep), gz.compress(inner)]
            sep = b","
    body = b"".join([*out, gz.compress(b"]"), gz.flush()])
    blobs.put(key, body)
    for old in list(blobs.keys(f"derived/{study}/study-")):
        if f"/study-{tag}-" not in old:
            blobs.delete(old)  # built for an earlier state of the study
    return body, etag


def drop_study(blobs: Blobs, study: str) -> None:
    """Remove the study-level derived documents (after the study changed or was deleted)."""
    for key in list(blobs.keys(f"derived/{study}/study-")):
        blobs.delete(key)


def drop_series(blobs: Blobs, study: str, series: str) -> None:
    """Remove the derived documents of a series (after it was deleted)."""
    for key in list(blobs.keys(prefix(study, series))):
        blobs.delete(key)
