"""Rendered resources (PS3.18 8.3.5, 10.4.1.1.3) and WADO-URI rendered images (PS3.18 9).

``.../instances/{i}/rendered`` and ``.../frames/{n}/rendered`` answer one image
(``image/jpeg`` by default, ``image/png``, or an animated ``image/gif`` of several frames);
asked as ``multipart/related``, one part per frame. ``.../series/{se}/rendered`` and
``.../studies/{s}/rendered`` answer ``multipart/related; type="image/jpeg"`` (or png) with
the first frame of each instance that has pixel data, in series and instance number order;
a client that accepts only a single image gets the first one.

Query parameters (Table 8.3.5-1): ``window=center,width[,linear|linear-exact|sigmoid]``,
``viewport=vw,vh[,sx,sy,sw,sh]``, ``quality=1..100``, ``accept=``; ``annotation``,
``charset`` and ``iccprofile`` are accepted and ignored (no burnt-in text, no ICC profile).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from webpacs.core import numbers
from webpacs.core.media import Representation, negotiate
from webpacs.core.multipart import iter_multipart, multipart_content_type, new_boundary
from webpacs.errors import InvalidRequest, NotFound, WebpacsError
from webpacs.pixels import render as rd
from webpacs.pixels.frames import (
    check_frame_number,
    decode_frame,
    frame_count,
    parse_frame_numbers,
)
from webpacs.storage import presence
from webpacs.storage.base import Blobs, InstanceRecord
from webpacs.web.common import path_uids, store, threaded

log = logging.getLogger("webpacs.web")

SINGLE = [Representation(rd.JPEG), Representation(rd.PNG)]
MULTI = [Representation(rd.JPEG, multipart=True), Representation(rd.PNG, multipart=True)]
GIF = Representation(rd.GIF)
#: WADO-URI contentType values answered with a rendered image.
IMAGE_TYPES = (rd.JPEG, rd.PNG)
_FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}


# -- query parameters ---------------------------------------------------------------------
def _numbers(name: str, text: str, count: tuple[int, ...]) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if len(items) not in count:
        raise InvalidRequest(f"{name}={text!r}: expected {' or '.join(map(str, count))} values")
    return items


def make_window(name: str, center: str, width: str, function: str = "linear") -> rd.Window:
    """A window from text values; 400 naming ``name`` when one is wrong."""
    func = _FUNCTIONS.get(function.strip().lower())
    if func is None:
        raise InvalidRequest(f"{name}: function {function!r} is not one of {', '.join(_FUNCTIONS)}")
    c, w = numbers.decimal(name, center), numbers.decimal(name, width)
    if w < (1 if func == "LINEAR" else 0) or (func != "LINEAR" and w == 0):
        raise InvalidRequest(f"{name}: width {width} is too small for a {function} window")
    return rd.Window(c, w, func)


def parse_window(text: str) -> rd.Window:
    """``window=center,width[,function]`` (PS3.18 Table 8.3.5-1)."""
    items = _numbers("window", text, (2, 3))
    return make_window("window", *items)


def parse_viewport(text: str) -> tuple[int | None, int | None, rd.Region | None]:
    """``viewport=vw,vh[,sx,sy,sw,sh]``: the output box (either side may be empty) and the
    source region in pixels (a negative width or height flips)."""
    items = _numbers("viewport", text, (2, 6))
    vw = numbers.whole("viewport", items[0], 1, rd.MAX_SIDE) if items[0] else None
    vh = numbers.whole("viewport", items[1], 1, rd.MAX_SIDE) if items[1] else None
    if vw is None and vh is None:
        raise InvalidRequest(f"viewport={text!r}: give the width, the height or both")
    region = None
    if len(items) == 6:
        sx, sy, sw, sh = (numbers.decimal("viewport", t) for t in items[2:])
        if sw == 0 or sh == 0 or sx < 0 or sy < 0:
            raise InvalidRequest(f"viewport={text!r}: empty or negative source region")
        region = rd.Region(sx, sy, sw, sh)
    return vw, vh, region


def rendering_from_query(q: QueryParams, media_type: str) -> rd.Rendering:
    """The rendering a WADO-RS rendered or thumbnail request asks for."""
    window = parse_window(q["window"]) if q.get("window") else None
    vw, vh, region = parse_viewport(q["viewport"]) if q.get("viewport") else (None, None, None)
    quality = (
        numbers.whole("quality", q["quality"], 1, 100) if q.get("quality") else rd.DEFAULT_QUALITY
    )
    return rd.Rendering(media_type, window, region, vw, vh, quality)


def rendering_from_wado_uri(q: QueryParams, media_type: str) -> rd.Rendering:
    """The rendering of WADO-URI parameters (PS3.18 9.1.2.4): ``windowCenter`` and
    ``windowWidth``, ``rows``, ``columns``, ``region=xmin,ymin,xmax,ymax`` (fractions),
    ``imageQuality``."""
    center, width = q.get("windowCenter"), q.get("windowWidth")
    if (center is None) != (width is None):
        raise InvalidRequest("windowCenter and windowWidth go together")
    window = make_window("windowCenter/windowWidth", center, width) if center and width else None
    rows = numbers.whole("rows", q["rows"], 1, rd.MAX_SIDE) if q.get("rows") else None
    columns = numbers.whole("columns", q["columns"], 1, rd.MAX_SIDE) if q.get("columns") else None
    region = None
    if q.get("region"):
        x0, y0, x1, y1 = (
            numbers.decimal("region", t) for t in _numbers("region", q["region"], (4,))
        )
        if not 0 <= x0 < x1 <= 1 or not 0 <= y0 < y1 <= 1:
            raise InvalidRequest(
                f"region={q['region']!r}: expected 0 <= xmin < xmax <= 1 (same for y)"
            )
        region = rd.Region(x0, y0, x1 - x0, y1 - y0, fraction=True)
    q_text = q.get("imageQuality")
    quality = numbers.whole("imageQuality", q_text, 1, 100) if q_text else rd.DEFAULT_QUALITY
    return rd.Rendering(media_type, window, region, columns, rows, quality)


# -- building the bodies ------------------------------------------------------------------
def render_frames(blobs: Blobs, rec: InstanceRecord, numbers: list[int], r: rd.Rendering) -> bytes:
    """One image of frame ``numbers[0]``, or an animated GIF of all of them. A frame the
    instance does not have is ``NotFound`` (404); once the numbers are known good, a
    ``NotFound`` is the stored object missing (503, logged for ``webpacs check``)."""
    for n in numbers:
        check_frame_number(rec, n)
    with presence.reading(rec):
        images = [
            rd.to_image(rd.to_8bit(frame, r.window), r)
            for frame in (decode_frame(blobs, rec, n) for n in numbers)
        ]
    return rd.encode(images, r)


def _parts(
    first: bytes, blobs: Blobs, rest: list[tuple[InstanceRecord, int]], r: rd.Rendering
) -> Iterator[tuple[dict[str, str], list[bytes]]]:
    """The first part, rendered already, then one per (instance, frame); once the status
    line is sent, a frame that cannot be decoded is left out and logged."""
    yield {"Content-Type": r.media_type}, [first]
    for rec, n in rest:
        try:
            body = render_frames(blobs, rec, [n], r)
        except WebpacsError as e:
            log.warning("rendered part left out: %s", e)
            continue
        yield {"Content-Type": r.media_type}, [body]


async def multipart(
    blobs: Blobs, items: list[tuple[InstanceRecord, int]], r: rd.Rendering
) -> Response:
    """``items`` rendered one per part, streamed as they are rendered. The first is rendered
    before the response starts, so an image that cannot be rendered still gets its status."""
    rec, n = items[0]
    first = await threaded(render_frames, blobs, rec, [n], r)
    boundary = new_boundary()
    return StreamingResponse(
        iter_multipart(_parts(first, blobs, items[1:], r), boundary),
        media_type=multipart_content_type(r.media_type, boundary),
    )


def image_etag(rec: InstanceRecord, numbers: list[int], r: rd.Rendering | None) -> str:
    """A validator for an image of ``rec``: its content digest and how it was rendered."""
    key = f"{rec.digest}|{numbers}|{r!r}".encode()
    return f'W/"i{hashlib.sha1(key).hexdigest()[:24]}"'


def not_modified(request: Request, etag: str) -> Response | None:
    """A 304 when the client's ``If-None-Match`` names ``etag``."""
    asked = {t.strip() for t in request.headers.get("if-none-match", "").split(",")}
    return Response(status_code=304, headers={"ETag": etag}) if etag in asked else None


async def single(
    request: Request, rec: InstanceRecord, numbers: list[int], r: rd.Rendering
) -> Response:
    """One image (an animated GIF when several frames are given), rendered on the threadpool;
    a 304 when the client has it already."""
    etag = image_etag(rec, numbers, r)
    if (cached := not_modified(request, etag)) is not None:
        return cached
    body = await threaded(render_frames, store(request).blobs, rec, numbers, r)
    return Response(body, media_type=r.media_type, headers={"ETag": etag})


# -- routes -------------------------------------------------------------------------------
async def _instance(request: Request) -> InstanceRecord:
    study, series, sop = path_uids(request)
    assert sop is not None  # the route names the instance
    rec = await threaded(store(request).index.get, sop)
    if rec is None or rec.study_uid != study or rec.series_uid != series:
        raise NotFound(f"instance {sop} not found")
    if frame_count(rec) == 0:
        raise NotFound(f"instance {sop} has no pixel data to render")
    return rec


def _negotiate(request: Request, offers: list[Representation]) -> Representation:
    return negotiate(
        request.headers.get("accept"), offers, query_accept=request.query_params.get("accept")
    )


async def instance_rendered(request: Request) -> Response:
    rec = await _instance(request)
    if "frames" in request.path_params:
        numbers = parse_frame_numbers(request.path_params["frames"], rec)
    else:
        numbers = list(range(1, frame_count(rec) + 1))
    several = len(numbers) > 1
    rep = _negotiate(request, SINGLE + ([GIF] if several else []) + MULTI)
    r = rendering_from_query(request.query_params, rep.media_type)
    if rep.multipart:
        return await multipart(store(request).blobs, [(rec, n) for n in numbers], r)
    return await single(request, rec, numbers if rep == GIF else numbers[:1], r)


async def group_rendered(request: Request) -> Response:
    """Series or study: the first frame of each instance with pixel data."""
    study, series, _ = path_uids(request)
    assert study is not None
    records = await threaded(store(request).index.instances, study, series)
    if not records:
        raise NotFound(f"series {series} not found" if series else f"study {study} not found")
    with_pixels = [rec for rec in records if frame_count(rec) > 0]
    if not with_pixels:
        raise NotFound("no instance here has pixel data to render")
    rep = _negotiate(request, MULTI + SINGLE)
    r = rendering_from_query(request.query_params, rep.media_type)
    if rep.multipart:
        return await multipart(store(request).blobs, [(rec, 1) for rec in with_pixels], r)
    return await single(request, with_pixels[0], [1], r)


async def wado_uri_rendered(request: Request, rec: InstanceRecord, media_type: str) -> Response:
    """WADO-URI with an image ``contentType``: one frame (``frameNumber``, default 1)."""
    q = request.query_params
    number = numbers.whole("frameNumber", q["frameNumber"], 1) if q.get("frameNumber") else 1
    if frame_count(rec) == 0:
        raise NotFound(f"instance {rec.sop_uid} has no pixel data to render")
    r = rendering_from_wado_uri(q, media_type)
    return await single(request, rec, [number], r)


INSTANCE = "/studies/{study}/series/{series}/instances/{instance}"
routes = [
    Route("/studies/{study}/rendered", group_rendered, methods=["GET"]),
    Route("/studies/{study}/series/{series}/rendered", group_rendered, methods=["GET"]),
    Route(f"{INSTANCE}/rendered", instance_rendered, methods=["GET"]),
    Route(f"{INSTANCE}/frames/{{frames}}/rendered", instance_rendered, methods=["GET"]),
]
