"""WADO-URI (PS3.18 9): ``GET /wado?requestType=WADO&studyUID=&seriesUID=&objectUID=``.

``transferSyntax=`` (PS3.18 9.1.2.5.6 / Table 9.1.2-3) asks for the instance transcoded, with the
same choices and refusals as WADO-RS (:func:`webpacs.web.wado.negotiate_instance`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from webpacs.core.uids import check_uid
from webpacs.errors import InvalidRequest, NotAcceptable, NotFound
from webpacs.web import rendered
from webpacs.web.common import store, threaded
from webpacs.web.wado import (
    _as_stored,
    _first_then_rest,
    _instance_chunks,
    negotiate_instance,
    stored_object,
)

DICOM = "application/dicom"


async def wado(request: Request) -> Response:
    q = request.query_params
    if q.get("requestType") != "WADO":
        raise InvalidRequest("requestType must be WADO")
    study = check_uid(q.get("studyUID"), "studyUID")
    series = check_uid(q.get("seriesUID"), "seriesUID")
    sop = check_uid(q.get("objectUID"), "objectUID")
    wanted = [t.strip().split(";")[0] for t in q.get("contentType", DICOM).split(",")]
    image = next((t for t in wanted if t in rendered.IMAGE_TYPES), None)
    if DICOM not in wanted and "*/*" not in wanted and image is None:
        raise NotAcceptable(
            f"contentType {q.get('contentType')} is not available; use contentType={DICOM},"
            f" {', '.join(rendered.IMAGE_TYPES)}"
        )
    ts = q.get("transferSyntax")
    rec = await threaded(store(request).index.get, sop)
    if rec is None or rec.study_uid != study or rec.series_uid != series:
        raise NotFound(f"instance {sop} not found")
    if image is not None and (DICOM not in wanted or wanted.index(image) < wanted.index(DICOM)):
        return await rendered.wado_uri_rendered(request, rec, image)
    if ts and ts.strip() not in ("*", rec.transfer_syntax):
        rep = await threaded(
            negotiate_instance,
            rec,
            f'multipart/related; type="{DICOM}"; transfer-syntax={ts.strip()}',
        )
        chunks = await _first_then_rest(
            _instance_chunks(store(request).blobs, rec, rep), _as_stored(rec)
        )
        return StreamingResponse(chunks, media_type=DICOM)
    return await stored_object(store(request).blobs, rec, DICOM)


routes = [Route("/wado", wado, methods=["GET"])]
