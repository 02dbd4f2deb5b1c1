"""STOW-RS (PS3.18 10.5): store instances sent as Part 10 or as metadata + bulk data.

The body is streamed to spooled temporary files (memory up to a threshold, then disk)
and checked to be a complete multipart body before anything is stored, so a malformed
request stores nothing. Each instance then goes through ``ingest``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from tempfile import SpooledTemporaryFile
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webpacs import errors, metrics
from webpacs.config import ServerSettings
from webpacs.core import part10
from webpacs.core.media import DICOM, DICOM_JSON
from webpacs.core.multipart import parse_media_type
from webpacs.core.status import Service, status_for
from webpacs.ingest import IngestResult, ingest_many
from webpacs.web.common import base_url, path_uids, settings, store, threaded, warning_header
from webpacs.web.limits import check_json_size, load_json
from webpacs.web.multipart_reader import read_multipart

log = logging.getLogger("webpacs.stow")


@dataclass
class _Body:
    content_type: str
    params: dict[str, str]
    headers: dict[str, str]
    file: SpooledTemporaryFile[bytes]

    def read(self) -> bytes:
        self.file.seek(0)
        return self.file.read()

    def size(self) -> int:
        return self.file.seek(0, 2)


@dataclass
class _Failure:
    reason: int
    message: str
    sop_class_uid: str | None = None
    sop_uid: str | None = None


def _failure(exc: errors.WebpacsError) -> _Failure:
    sop_class, sop = (exc.details.get(k) for k in ("sop_class_uid", "sop_uid"))
    return _Failure(
        status_for(Service.STORE, exc),
        str(exc),
        str(sop_class) if sop_class else None,
        str(sop) if sop else None,
    )


async def _spool(request: Request, srv: ServerSettings) -> tuple[str, list[_Body]]:
    bodies: list[_Body] = []
    parts = read_multipart(
        request,
        max_body=srv.max_body_bytes,
        max_parts=srv.max_parts,
        max_part_bytes=srv.max_part_bytes,
    )
    try:
        async for part in parts:
            f = part.file
            part.file = SpooledTemporaryFile(max_size=1)  # noqa: SIM115  (we take the body)
            bodies.append(_Body(part.content_type, part.params, part.headers, f))
    except BaseException:
        for b in bodies:
            b.file.close()
        raise
    _, params = parse_media_type(request.headers.get("content-type", ""))
    media_type = params.get("type", "").lower()
    if not bodies:
        raise errors.InvalidRequest("the multipart body has no parts")
    return media_type, bodies


def _instances(
    media_type: str, bodies: list[_Body], srv: ServerSettings
) -> list[bytes | errors.WebpacsError]:
    """The Part 10 objects of the request (or, per instance, why there is none)."""
    out: list[bytes | errors.WebpacsError] = []
    if media_type == DICOM_JSON:
        meta = [b for b in bodies if b.content_type in (DICOM_JSON, "application/json")]
        bulk: dict[str, part10.BulkPart] = {}
        for b in bodies:
            loc = b.headers.get("content-location") or b.headers.get("content-id", "").strip("<>")
            if b not in meta and loc:
                bulk[loc] = part10.BulkPart(b.content_type, b.params, b.read)
        if not meta:
            raise errors.InvalidRequest("no application/dicom+json metadata part in the request")
        n = 0
        for m in meta:
            check_json_size(m.size(), srv, "metadata part")  # before it is read
            items = load_json(m.read(), srv, "metadata part")
            for obj in items if isinstance(items, list) else [items]:
                try:
                    out.append(part10.from_json(obj, bulk, n))
                except errors.WebpacsError as e:
                    out.append(e)
                n += 1
        return out
    for i, b in enumerate(bodies):
        if b.content_type != DICOM:
            out.append(
                errors.InvalidDicom(f"part {i + 1} is {b.content_type or 'untyped'}, not {DICOM}")
            )
        else:
            out.append(b.read())
            b.file.close()  # one copy of the body in memory, not two
    return out


def _store_all(
    request: Request, media_type: str, bodies: list[_Body], study: str | None
) -> list[IngestResult | _Failure]:
    st = store(request)
    results = ingest_many(
        st.index,
        st.blobs,
        _instances(media_type, bodies, settings(request).server),
        overwrite=st.overwrite,
        expected_study=study,
        bulk_threshold=st.bulk_threshold,
        recompress=st.recompress,
    )
    return [r if isinstance(r, IngestResult) else _failure(r) for r in results]


def _ui(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]}


async def store_instances(request: Request) -> Response:
    study, _, _ = path_uids(request)
    media_type, bodies = await _spool(request, settings(request).server)
    received = sum(b.size() for b in bodies)
    try:
        if media_type not in (DICOM, DICOM_JSON, ""):
            raise errors.UnsupportedMediaType(
                f"multipart/related type {media_type!r} is not supported;"
                f" send {DICOM} or {DICOM_JSON}"
            )
        if not media_type:
            media_type = bodies[0].content_type or DICOM
        results = await threaded(_store_all, request, media_type, bodies, study)
    finally:
        for b in bodies:
            b.file.close()
    base = base_url(request)
    referenced, failed, studies = [], [], set()
    messages = []
    for r in results:
        if isinstance(r, _Failure):
            item = {"00081197": {"vr": "US", "Value": [r.reason]}}
            if r.sop_class_uid:
                item["00081150"] = _ui(r.sop_class_uid)
            if r.sop_uid:
                item["00081155"] = _ui(r.sop_uid)
            item["00000902"] = {"vr": "LO", "Value": [r.message[:64]]}
            failed.append(item)
            messages.append(r.message)
            log.warning("STOW-RS refused an instance: %s", r.message)
        else:
            studies.add(r.study_uid)
            url = f"{base}/studies/{r.study_uid}/series/{r.series_uid}/instances/{r.sop_uid}"
            referenced.append(
                {
                    "00081150": _ui(r.sop_class_uid),
                    "00081155": _ui(r.sop_uid),
                    "00081190": {"vr": "UR", "Value": [url]},
                }
            )
    body: dict[str, Any] = {}
    target = study or (next(iter(studies)) if len(studies) == 1 else None)
    if target:
        body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{target}"]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}
    outcomes = Counter(r.outcome.value for r in results if isinstance(r, IngestResult))
    metrics.stow({**outcomes, "failed": len(failed)}, received)
    status = 200 if not failed else 202 if referenced else 409
    headers = {"Warning": warning_header(request, messages[0])} if messages else {}
    return Response(orjson.dumps(body), status_code=status, media_type=DICOM_JSON, headers=headers)


routes = [
    Route("/studies", store_instances, methods=["POST"]),
    Route("/studies/{study}", store_instances, methods=["POST"]),
]
