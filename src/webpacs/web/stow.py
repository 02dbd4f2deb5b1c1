"""STOW-RS (PS3.18 10.5): store instances sent as Part 10 or as metadata + bulk data.

The body is streamed to spooled temporary files (memory up to a threshold, then disk)
and checked to be a complete multipart body before anything is stored, so a malformed
request stores nothing. Each instance then goes through ``ingest``.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from tempfile import SpooledTemporaryFile
from typing import Any

import orjson
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webpacs import errors
from webpacs.core.multipart import parse_media_type
from webpacs.ingest import IngestResult, ingest_many
from webpacs.web.common import DICOM_JSON, base_url, path_uids, settings, store, threaded
from webpacs.web.multipart_reader import read_multipart

log = logging.getLogger("webpacs.stow")

DICOM = "application/dicom"

#: FailureReason values (PS3.18 Table 10.5.3-? / PS3.4 Annex B and C statuses).
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP = 0x0111
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
STUDY_MISMATCH = 0xC409  # as dcm4chee: Referenced Study Instance UID mismatch


@dataclass
class _Body:
    content_type: str
    params: dict[str, str]
    headers: dict[str, str]
    file: SpooledTemporaryFile[bytes]

    def read(self) -> bytes:
        self.file.seek(0)
        return self.file.read()


@dataclass
class _Failure:
    reason: int
    message: str
    sop_class_uid: str | None = None
    sop_uid: str | None = None


def _reason(exc: errors.WebpacsError) -> int:
    if isinstance(exc, errors.Conflict):
        return DUPLICATE_SOP
    if isinstance(exc, errors.StorageError):
        return OUT_OF_RESOURCES
    if isinstance(exc, errors.InvalidDicom):
        return CANNOT_UNDERSTAND
    if isinstance(exc, errors.WrongStudy):
        return STUDY_MISMATCH
    return PROCESSING_FAILURE


def _failure(exc: errors.WebpacsError) -> _Failure:
    sop_class, sop = (exc.details.get(k) for k in ("sop_class_uid", "sop_uid"))
    return _Failure(
        _reason(exc), str(exc), str(sop_class) if sop_class else None, str(sop) if sop else None
    )


async def _spool(request: Request, max_body: int) -> tuple[str, list[_Body]]:
    bodies: list[_Body] = []
    try:
        async for part in read_multipart(request, max_body=max_body):
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


def _dataset_from_json(obj: Any, bulk: dict[str, _Body], index: int) -> bytes:
    """Part 10 bytes for one metadata object whose BulkDataURIs name parts of the request."""
    if not isinstance(obj, dict):
        raise errors.InvalidDicom(f"metadata item {index} is not a DICOM JSON object")
    pixel_ts: list[str] = []

    def handler(tag: str, vr: str, uri: str) -> bytes:
        body = bulk.get(uri) or bulk.get(uri.rsplit("/", 1)[-1])
        if body is None:
            raise errors.InvalidDicom(f"bulk data {uri!r} is not a part of the request")
        if tag.upper() == "7FE00010" and body.content_type not in ("application/octet-stream", ""):
            ts = body.params.get("transfer-syntax")
            if not ts:
                raise errors.InvalidDicom(
                    f"pixel data part {uri!r} of type {body.content_type} has no transfer-syntax"
                )
            pixel_ts.append(ts)
        return body.read()

    try:
        ds = Dataset.from_json(obj, bulk_data_uri_handler=handler)
    except errors.WebpacsError:
        raise
    except Exception as e:
        raise errors.InvalidDicom(f"metadata item {index} is not valid DICOM JSON: {e}") from e
    for kw in ("SOPClassUID", "SOPInstanceUID"):
        if kw not in ds:
            raise errors.InvalidDicom(f"metadata item {index} has no {kw}")
    ts = UID(pixel_ts[0]) if pixel_ts else ExplicitVRLittleEndian
    if pixel_ts:
        ds.PixelData = encapsulate([ds.PixelData])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    buf = io.BytesIO()
    try:
        ds.save_as(buf, enforce_file_format=True)
    except Exception as e:
        raise errors.InvalidDicom(f"metadata item {index} cannot be encoded: {e}") from e
    return buf.getvalue()


def _instances(media_type: str, bodies: list[_Body]) -> list[bytes | errors.WebpacsError]:
    """The Part 10 objects of the request (or, per instance, why there is none)."""
    out: list[bytes | errors.WebpacsError] = []
    if media_type == DICOM_JSON:
        meta = [b for b in bodies if b.content_type in (DICOM_JSON, "application/json")]
        bulk: dict[str, _Body] = {}
        for b in bodies:
            loc = b.headers.get("content-location") or b.headers.get("content-id", "").strip("<>")
            if b not in meta and loc:
                bulk[loc] = b
        if not meta:
            raise errors.InvalidRequest("no application/dicom+json metadata part in the request")
        n = 0
        for m in meta:
            try:
                items = orjson.loads(m.read())
            except orjson.JSONDecodeError as e:
                raise errors.InvalidRequest(f"metadata part is not valid JSON: {e}") from e
            for obj in items if isinstance(items, list) else [items]:
                try:
                    out.append(_dataset_from_json(obj, bulk, n))
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
        _instances(media_type, bodies),
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
    limit = settings(request).get("server", "maxBodyBytes")
    media_type, bodies = await _spool(request, limit)
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
    status = 200 if not failed else 202 if referenced else 409
    headers = {}
    if messages:
        text = messages[0].replace('"', "'").replace("\n", " ")[:300]
        headers["Warning"] = f'299 webpacs "{text}"'
    return Response(orjson.dumps(body), status_code=status, media_type=DICOM_JSON, headers=headers)


routes = [
    Route("/studies", store_instances, methods=["POST"]),
    Route("/studies/{study}", store_instances, methods=["POST"]),
]
