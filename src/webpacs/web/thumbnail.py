"""Thumbnail resources (PS3.18 8.3.5, 10.4.1.1.3): study, series, instance and frame.

``image/jpeg`` by default, ``image/png`` on request; 128 pixels on the long side unless
``viewport`` says otherwise (the rendered resources' ``window``, ``viewport`` and
``quality`` parameters apply). A study or series thumbnail asked with no parameters is the
series' derived thumbnail (``documents.thumbnails``: built once per series version, then a
blob read); any other is rendered on request.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webpacs.core.media import negotiate
from webpacs.documents import thumbnails
from webpacs.errors import NotFound
from webpacs.pixels import render as rd
from webpacs.pixels.frames import frame_count, parse_frame_numbers
from webpacs.pixels.thumbnail import DEFAULT, middle_frame, thumbnail, thumbnail_rendering
from webpacs.web.common import path_uids, store, threaded
from webpacs.web.rendered import SINGLE, image_etag, not_modified, rendering_from_query

#: Parameters that change a thumbnail; without them the derived one is served.
_SHAPING = ("window", "viewport", "quality")


def _rendering(request: Request) -> rd.Rendering | None:
    """What the request asks for; None for the default thumbnail (a JPEG, no parameters)."""
    rep = negotiate(
        request.headers.get("accept"), SINGLE, query_accept=request.query_params.get("accept")
    )
    if rep.media_type == DEFAULT.media_type and not any(
        request.query_params.get(k) for k in _SHAPING
    ):
        return None
    return rendering_from_query(request.query_params, rep.media_type)


async def group_thumbnail(request: Request) -> Response:
    """Study or series: the representative frame, from the derived document when it can."""
    study, series, _ = path_uids(request)
    assert study is not None
    r = _rendering(request)
    st = store(request)
    if r is None:
        if series is not None:
            body, etag = await threaded(
                thumbnails.series_thumbnail, st.index, st.blobs, study, series
            )
        else:
            body, etag = await threaded(thumbnails.study_thumbnail, st.index, st.blobs, study)
        if (cached := not_modified(request, etag)) is not None:
            return cached
        return Response(body, media_type=DEFAULT.media_type, headers={"ETag": etag})
    rec, number = await threaded(thumbnails.representative_of, st.index, study, series)
    body = await threaded(thumbnail, st.blobs, rec, number, r)
    return Response(body, media_type=(r or DEFAULT).media_type)


async def instance_thumbnail(request: Request) -> Response:
    """An instance's middle frame, or the first frame a frames path names."""
    study, series, sop = path_uids(request)
    assert sop is not None  # the route names the instance
    st = store(request)
    rec = await threaded(st.index.get, sop)
    if rec is None or rec.study_uid != study or rec.series_uid != series:
        raise NotFound(f"instance {sop} not found")
    if frame_count(rec) == 0:
        raise NotFound(f"instance {sop} has no pixel data")
    if "frames" in request.path_params:
        number = parse_frame_numbers(request.path_params["frames"], rec)[0]
    else:
        number = middle_frame(rec)
    r = _rendering(request)
    etag = image_etag(rec, [number], thumbnail_rendering(r))
    if (cached := not_modified(request, etag)) is not None:
        return cached
    body = await threaded(thumbnail, st.blobs, rec, number, r)
    return Response(body, media_type=(r or DEFAULT).media_type, headers={"ETag": etag})


INSTANCE = "/studies/{study}/series/{series}/instances/{instance}"
routes = [
    Route("/studies/{study}/thumbnail", group_thumbnail, methods=["GET"]),
    Route("/studies/{study}/series/{series}/thumbnail", group_thumbnail, methods=["GET"]),
    Route(f"{INSTANCE}/thumbnail", instance_thumbnail, methods=["GET"]),
    Route(f"{INSTANCE}/frames/{{frames}}/thumbnail", instance_thumbnail, methods=["GET"]),
]
