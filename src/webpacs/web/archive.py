"""A study, series or instance as a ZIP of its stored Part 10 files, streamed.

``GET .../studies/{s}`` (or ``.../series/{x}``, ``.../instances/{i}``) with ``Accept:
application/zip``, or ``?accept=application/zip`` for a browser link (PS3.18 8.3.3.1: the
query parameter takes precedence over the header), answers a ZIP instead of a multipart
body; PS3.18 8.7.3.4 lists ``application/zip`` among the media types of a retrieve.

The archive is written as it is sent (zipstream-ng, entries stored uncompressed: DICOM
pixel data is either compressed already or gains little, and a stored entry's size is
known before it is read, so the response has a ``Content-Length``). Entries are the stored
objects as they are, named for people who unpack them::

    <study folder>/S<series number> <modality> <series description>/IM00001.dcm

numbered in the order of the index (series number, then instance number).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from zipstream import ZIP_STORED, ZipStream

from webpacs.core.media import parse_accept
from webpacs.storage.base import Blobs, InstanceRecord
from webpacs.web.common import store

ZIP = "application/zip"
CHUNK = 1 << 20
_UNSAFE = re.compile(r'[\x00-\x1f<>:"/\\|?*]+')


def wants_zip(accept: str | None, query_accept: str | None = None) -> bool:
    """Whether the client's first choice (by ``q``, then its own order) is ``application/zip``.

    The ``accept`` query parameter, when given, replaces the header (PS3.18 8.3.3.1). Any
    other range ranked first (``*/*`` included) keeps the multipart answer."""
    asked = query_accept if query_accept and query_accept.strip() else accept
    if not asked or ZIP not in asked.lower():
        return False
    ranges = [r for r in parse_accept(asked) if r[2] > 0]
    return bool(ranges) and ranges[0][0] == ZIP


def _value(meta: dict[str, Any], tag: str) -> str:
    """The first value of a DICOM JSON attribute as text ("" when absent)."""
    values = meta.get(tag, {}).get("Value") or [""]
    first = values[0]
    if isinstance(first, dict):  # PN
        first = first.get("Alphabetic", "")
    return str(first)


def _clean(text: str, limit: int = 64) -> str:
    """``text`` as a file or folder name on every common file system."""
    return " ".join(_UNSAFE.sub(" ", text).split())[:limit].strip(" .")


def study_folder(meta: dict[str, Any]) -> str:
    """``<PatientID> <StudyDate> <StudyDescription>``, or the Study Instance UID."""
    parts = [_value(meta, "00100020"), _value(meta, "00080020"), _value(meta, "00081030")]
    return _clean(" ".join(p for p in parts if p)) or _value(meta, "0020000D")


def series_folder(meta: dict[str, Any]) -> str:
    number = _value(meta, "00200011")
    label = " ".join(p for p in (_value(meta, "00080060"), _value(meta, "0008103E")) if p)
    name = _clean(f"S{number.zfill(3)} {label}" if number else label)
    return name or _value(meta, "0020000E")


def entries(records: list[InstanceRecord]) -> Iterator[tuple[str, InstanceRecord]]:
    """Each record and its name in the archive (unique: numbered within its series)."""
    folders: dict[str, str] = {}
    counts: dict[str, int] = {}
    top = study_folder(orjson.loads(records[0].metadata)) if records else ""
    for rec in records:
        if rec.series_uid not in folders:
            name = series_folder(orjson.loads(rec.metadata))
            if name in folders.values():  # two series of one number and label
                name = f"{name} {rec.series_uid}"
            folders[rec.series_uid] = name
        counts[rec.series_uid] = counts.get(rec.series_uid, 0) + 1
        yield f"{top}/{folders[rec.series_uid]}/IM{counts[rec.series_uid]:05d}.dcm", rec


def _chunks(blobs: Blobs, key: str) -> Iterator[bytes]:
    with blobs.open(key) as f:
        while chunk := f.read(CHUNK):
            yield chunk


def archive(blobs: Blobs, records: list[InstanceRecord]) -> ZipStream:
    """The ZIP of ``records`` (read when the stream is iterated)."""
    zs = ZipStream(compress_type=ZIP_STORED, sized=True)
    for name, rec in entries(records):
        zs.add(_chunks(blobs, rec.blob_key), name, size=rec.size)
    return zs


def download_name(records: list[InstanceRecord], series: str | None) -> str:
    name = study_folder(orjson.loads(records[0].metadata)) if records else "study"
    if series is not None:
        name += " " + series_folder(orjson.loads(records[0].metadata))
    return name.replace(" ", "_") + ".zip"


def response(request: Request, records: list[InstanceRecord]) -> Response:
    """The ZIP answer to a retrieve whose client asked for one (``wants_zip``)."""
    zs = archive(store(request).blobs, records)
    series = request.path_params.get("series")
    filename = download_name(records, series)
    plain = filename.encode("ascii", "replace").decode().replace("?", "_")
    disposition = (
        f"attachment; filename=\"{plain}\"; filename*=UTF-8''{urllib.parse.quote(filename)}"
    )
    headers = {"Content-Length": str(len(zs)), "Content-Disposition": disposition}
    body: Iterable[bytes] = zs
    return StreamingResponse(body, media_type=ZIP, headers=headers)
