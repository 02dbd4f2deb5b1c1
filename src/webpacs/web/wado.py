"""WADO-RS (PS3.18 10.4): instances, metadata, frames and bulk data.

Frames and bulk data are range reads of the stored object at offsets recorded by
ingest; series metadata is a pre-computed gzip'd document served as is to clients
that accept gzip.
"""

from __future__ import annotations

from collections.abc import Iterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from webpacs.core.dicomjson import PIXEL_DATA, render
from webpacs.core.framemap import FrameMap, Span
from webpacs.core.media import (
    DICOM_JSON,
    UNCOMPRESSED,
    Representation,
    frame_media_type,
    negotiate,
    swap_bytes,
)
from webpacs.core.media import EXPLICIT_VR_LITTLE_ENDIAN as EXPLICIT_LE
from webpacs.core.multipart import iter_multipart, multipart_content_type, new_boundary
from webpacs.documents import metadata as documents
from webpacs.errors import InvalidRequest, NotFound, NotImplementedFeature
from webpacs.storage.base import Blobs, InstanceRecord
from webpacs.web.common import accepts_gzip, base_url, path_uids, store, threaded

CHUNK = 8 << 20
_JSON_OFFERS = [
    Representation(DICOM_JSON, None, False),
    Representation("application/json", None, False),
]


# -- retrieve instances ----------------------------------------------------------
def _file_chunks(blobs: Blobs, key: str) -> Iterator[bytes]:
    """A stored object in chunks of up to ``CHUNK`` (most objects: one read, one hop)."""
    with blobs.open(key) as f:
        while chunk := f.read(CHUNK):
            yield chunk


async def _records(request: Request) -> list[InstanceRecord]:
    study, series, sop = path_uids(request)
    assert study is not None
    records = await threaded(store(request).index.instances, study, series, sop)
    if not records:
        what = f"instance {sop}" if sop else f"series {series}" if series else f"study {study}"
        raise NotFound(f"{what} not found")
    return records


async def retrieve(request: Request) -> Response:
    records = await _records(request)
    accept = request.headers.get("accept")
    query_accept = request.query_params.get("accept")
    for ts in sorted({r.transfer_syntax for r in records}):
        negotiate(
            accept, [Representation("application/dicom", ts, True)], query_accept=query_accept
        )
    boundary = new_boundary()
    blobs = store(request).blobs
    parts = (
        (
            {"Content-Type": f"application/dicom; transfer-syntax={r.transfer_syntax}"},
            _file_chunks(blobs, r.blob_key),
        )
        for r in records
    )
    ts_param = (
        records[0].transfer_syntax if len({r.transfer_syntax for r in records}) == 1 else None
    )
    return StreamingResponse(
        iter_multipart(parts, boundary),
        media_type=multipart_content_type("application/dicom", boundary, ts_param),
    )


# -- metadata --------------------------------------------------------------------
def _not_modified(request: Request, etag: str) -> bool:
    inm = request.headers.get("if-none-match")
    if not inm:
        return False
    tags = {t.strip() for t in inm.split(",")}
    return etag in tags or "*" in tags or etag.removeprefix("W/") in tags


async def metadata(request: Request) -> Response:
    """Instance, series or study metadata; the derived documents are served gzip'd as stored."""
    rep = negotiate(request.headers.get("accept"), _JSON_OFFERS)
    study, series, sop = path_uids(request)
    assert study is not None
    st = store(request)
    base = base_url(request)
    headers = {"Vary": "Accept-Encoding"}
    gz = accepts_gzip(request)
    if request.app.state.deriver is not None:
        request.app.state.deriver.remember(base)  # keep this host's documents warm
    if sop is not None:
        rec = await threaded(st.index.get, sop)
        if rec is None or rec.study_uid != study or rec.series_uid != series:
            raise NotFound(f"instance {sop} not found")
        etag = f'W/"{rec.digest[:20]}"'
        body, gz = b"[" + render(rec.metadata, base) + b"]", False
    elif series is not None:
        build = documents.series_metadata_gz if gz else documents.series_metadata
        body, etag = await threaded(build, st.index, st.blobs, study, series, base)
    else:
        study_build = documents.study_metadata_gz if gz else documents.study_metadata
        body, etag = await threaded(study_build, st.index, st.blobs, study, base)
    headers["ETag"] = etag
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    if gz:
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=rep.media_type, headers=headers)


# -- frames and bulk data --------------------------------------------------------
def _read_spans(blobs: Blobs, key: str, spans: list[Span], swap: int) -> bytes:
    data = b"".join(blobs.get_range(key, off, n) for off, n in spans)
    if swap > 1:
        data = swap_bytes(data, swap)
    return data


def _frame_numbers(text: str, count: int) -> list[int]:
    numbers = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) < 1:
            raise InvalidRequest(
                f"frame number {item!r} is not a positive integer (frames count from 1)"
            )
        n = int(item)
        if n > count:
            raise NotFound(f"frame {n} does not exist (the instance has {count} frame(s))")
        numbers.append(n)
    return numbers


async def _instance(request: Request) -> InstanceRecord:
    study, series, sop = path_uids(request)
    assert sop is not None
    rec = await threaded(store(request).index.get, sop)
    if rec is None or rec.study_uid != study or rec.series_uid != series:
        raise NotFound(f"instance {sop} not found")
    return rec


def _pixel_offers(rec: InstanceRecord, single: bool) -> list[Representation]:
    ts = rec.transfer_syntax
    if ts in UNCOMPRESSED:
        offers = [Representation("application/octet-stream", EXPLICIT_LE, True)]
    else:
        offers = [Representation(frame_media_type(ts), ts, True)]
    if single:
        offers.append(Representation(offers[0].media_type, offers[0].transfer_syntax, False))
    return offers


async def _parts_response(
    blobs: Blobs, rec: InstanceRecord, rep: Representation, items: list[list[Span]], swap: int
) -> Response:
    """Frames or bulk values (range reads of the stored object) as one response body.

    The body is built in one threadpool call: frames are small next to a hop per chunk.
    """
    ctype = rep.media_type
    if rep.transfer_syntax:
        ctype += f"; transfer-syntax={rep.transfer_syntax}"
    if not rep.multipart:
        body = await threaded(_read_spans, blobs, rec.blob_key, items[0], swap)
        return Response(body, media_type=ctype)
    boundary = new_boundary()

    def build() -> bytes:
        parts = (
            ({"Content-Type": ctype}, [_read_spans(blobs, rec.blob_key, spans, swap)])
            for spans in items
        )
        return b"".join(iter_multipart(parts, boundary))

    return Response(
        await threaded(build),
        media_type=multipart_content_type(rep.media_type, boundary, rep.transfer_syntax),
    )


async def frames(request: Request) -> Response:
    rec = await _instance(request)
    fmap = FrameMap.from_json(rec.framemap)
    if not fmap.frames:
        raise NotFound(f"instance {rec.sop_uid} has no pixel data frames")
    if not fmap.aligned:
        raise NotImplementedFeature(
            "frames of this instance are not byte aligned (1-bit pixel data); retrieve the instance"
        )
    numbers = _frame_numbers(request.path_params["frames"], len(fmap.frames))
    rep = negotiate(
        request.headers.get("accept"),
        _pixel_offers(rec, len(numbers) == 1),
        query_accept=request.query_params.get("accept"),
    )
    items = [fmap.frames[n - 1] for n in numbers]
    return await _parts_response(store(request).blobs, rec, rep, items, fmap.swap)


async def bulkdata(request: Request) -> Response:
    rec = await _instance(request)
    fmap = FrameMap.from_json(rec.framemap)
    path = request.path_params["path"].strip("/")
    spans = fmap.bulk.get(path)
    if spans is None:
        raise NotFound(f"no bulk data {path!r} in instance {rec.sop_uid}")
    blobs = store(request).blobs
    if path == f"{PIXEL_DATA:08X}" and rec.transfer_syntax not in UNCOMPRESSED:
        rep = negotiate(request.headers.get("accept"), _pixel_offers(rec, len(fmap.frames) == 1))
        return await _parts_response(blobs, rec, rep, fmap.frames, 0)
    offers = [
        Representation("application/octet-stream", EXPLICIT_LE, True),
        Representation("application/octet-stream", EXPLICIT_LE, False),
    ]
    rep = negotiate(request.headers.get("accept"), offers)
    swap = fmap.swap if path == f"{PIXEL_DATA:08X}" else 0
    return await _parts_response(blobs, rec, rep, [spans], swap)


routes = [
    Route("/studies/{study}", retrieve, methods=["GET"]),
    Route("/studies/{study}/series/{series}", retrieve, methods=["GET"]),
    Route("/studies/{study}/series/{series}/instances/{instance}", retrieve, methods=["GET"]),
    Route("/studies/{study}/metadata", metadata, methods=["GET"]),
    Route("/studies/{study}/series/{series}/metadata", metadata, methods=["GET"]),
    Route(
        "/studies/{study}/series/{series}/instances/{instance}/metadata", metadata, methods=["GET"]
    ),
    Route(
        "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
        frames,
        methods=["GET"],
    ),
    Route(
        "/studies/{study}/series/{series}/instances/{instance}/bulkdata/{path:path}",
        bulkdata,
        methods=["GET"],
    ),
]
