"""WADO-RS (PS3.18 10.4): instances, metadata, frames and bulk data.

Frames and bulk data are range reads of the stored object at offsets recorded by
ingest; series metadata is a pre-computed gzip'd document served as is to clients
that accept gzip.
"""

from __future__ import annotations

import functools
import gzip
import itertools
import os
from collections.abc import Iterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from webpacs.core.dicomjson import PIXEL_DATA, render
from webpacs.core.framemap import FrameMap, Span, frame_numbers
from webpacs.core.media import (
    DICOM_JSON,
    UNCOMPRESSED,
    Representation,
    negotiate,
    swap_bytes,
)
from webpacs.core.media import EXPLICIT_VR_LITTLE_ENDIAN as EXPLICIT_LE
from webpacs.core.multipart import iter_multipart, multipart_content_type, new_boundary
from webpacs.documents import metadata as documents
from webpacs.errors import NotAcceptable, NotFound, NotImplementedFeature
from webpacs.pixels.codecs import PixelDescription
from webpacs.pixels.families import decode_syntaxes
from webpacs.pixels.offers import (
    decodes_as_described,
    description,
    instance_offers,
    is_as_stored,
    pixel_offers,
)
from webpacs.pixels.transcode import transcode_frames, transcode_instance
from webpacs.storage import presence
from webpacs.storage.base import Blobs, Index, InstanceRecord
from webpacs.web import archive, zerocopy
from webpacs.web.common import accepts_gzip, base_url, path_uids, settings, store, threaded

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


def _stored_as_is(rec: InstanceRecord, rep: Representation) -> bool:
    return rep.transfer_syntax is None or rep.transfer_syntax == rec.transfer_syntax


def _instance_chunks(blobs: Blobs, rec: InstanceRecord, rep: Representation) -> Iterator[bytes]:
    """The stored object as is, or transcoded to ``rep``'s transfer syntax when it differs."""
    if _stored_as_is(rec, rep):
        yield from _file_chunks(blobs, rec.blob_key)
        return
    assert rep.transfer_syntax is not None
    desc = description(rec.metadata)
    yield transcode_instance(
        blobs.get(rec.blob_key), rec.transfer_syntax, rep.transfer_syntax, desc
    )


def _as_stored(rec: InstanceRecord) -> Representation:
    return Representation("application/dicom", rec.transfer_syntax, True)


def negotiate_instance(
    rec: InstanceRecord, accept: str | None, query_accept: str | None = None
) -> Representation:
    """How to send one instance: as stored, or transcoded (PS3.18 8.7.3.5).

    As for frames, a single range the stored form satisfies is answered without reading
    the pixel description."""
    asked = query_accept if query_accept and query_accept.strip() else accept
    if asked is None or "," not in asked:
        try:
            return negotiate(accept, (_as_stored(rec),), query_accept=query_accept)
        except NotAcceptable:
            pass
    offers = instance_offers(rec.transfer_syntax, description(rec.metadata))
    return negotiate(accept, offers, query_accept=query_accept)


async def _first_then_rest(chunks: Iterator[bytes], stored: Representation) -> Iterator[bytes]:
    """Produce the first chunk now, so that a codec failing on this data is a 406 naming what
    can still be served (the stored representation), not a cut stream."""
    try:
        first = await threaded(next, chunks, b"")
    except (ValueError, RuntimeError, NotImplementedError) as e:
        raise NotAcceptable(
            f"the installed codecs cannot decode this data"
            f" ({(str(e).splitlines() or [type(e).__name__])[0]});"
            f" available: {stored.describe()}"
        ) from e
    return itertools.chain([first], chunks)


def _stored_files(
    blobs: Blobs, records: list[InstanceRecord], boundary: str
) -> list[zerocopy.Piece] | None:
    """The multipart body of ``records``' stored objects as pieces of their local files
    (sent by ``sendfile``); ``None`` when the blob store has no local files. Each file's
    size is read now, which also proves that it exists (``ObjectMissing`` otherwise)."""
    parts = []
    gone = []
    for rec in records:
        path = blobs.local_path(rec.blob_key)
        if path is None:
            return None
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            gone.append(rec)
            continue
        headers = {"Content-Type": f"application/dicom; transfer-syntax={rec.transfer_syntax}"}
        parts.append((headers, [zerocopy.Span(path, 0, size)]))
    if gone:
        raise presence.report(gone)
    return zerocopy.joined(iter_multipart(parts, boundary))


async def stored_object(blobs: Blobs, rec: InstanceRecord, media_type: str) -> Response:
    """One stored object as its whole body, known to exist before the first byte."""
    with presence.reading(rec):
        path = _local_file(blobs, rec)
    if path is not None:
        size = os.stat(path).st_size
        return zerocopy.PiecesResponse([zerocopy.Span(path, 0, size)], media_type)
    await threaded(presence.ensure_stored, blobs, [rec])
    return StreamingResponse(
        _file_chunks(blobs, rec.blob_key),
        media_type=media_type,
        headers={"Content-Length": str(rec.size)},
    )


async def retrieve(request: Request) -> Response:
    records = await _records(request)
    blobs = store(request).blobs
    accept = request.headers.get("accept")
    query_accept = request.query_params.get("accept")
    if archive.wants_zip(accept, query_accept):  # a ZIP of the Part 10 files (archive.py)
        await threaded(presence.ensure_stored, blobs, records)
        return archive.response(request, records)

    def choose() -> list[Representation]:
        return [negotiate_instance(r, accept, query_accept) for r in records]

    reps = await threaded(choose)
    boundary = new_boundary()
    syntaxes = {rep.transfer_syntax for rep in reps}
    if all(_stored_as_is(r, rep) for r, rep in zip(records, reps, strict=True)):
        pieces = await threaded(_stored_files, blobs, records, boundary)
        if pieces is not None:
            ts = reps[0].transfer_syntax if len(syntaxes) == 1 else None
            ctype = multipart_content_type("application/dicom", boundary, ts)
            return zerocopy.PiecesResponse(pieces, ctype)
    await threaded(presence.ensure_stored, blobs, records)
    first = await _first_then_rest(
        _instance_chunks(blobs, records[0], reps[0]), _as_stored(records[0])
    )
    parts = (
        (
            {"Content-Type": f"application/dicom; transfer-syntax={rep.transfer_syntax}"},
            first if i == 0 else _instance_chunks(blobs, r, rep),
        )
        for i, (r, rep) in enumerate(zip(records, reps, strict=True))
    )
    ts_param = reps[0].transfer_syntax if len(syntaxes) == 1 else None
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
        body, zipped = b"[" + render(rec.metadata, base) + b"]", False
    else:
        body, etag, zipped = await threaded(_document, st.index, st.blobs, study, series, base, gz)
    headers["ETag"] = etag
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    if zipped and not gz:  # too large to decompress whole: a chunk at a time
        chunks = documents.gunzipped(body)
        return StreamingResponse(chunks, media_type=rep.media_type, headers=headers)
    if zipped:
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=rep.media_type, headers=headers)


def _document(
    index: Index, blobs: Blobs, study: str, series: str | None, base: str, gz: bool
) -> tuple[bytes, str, bool]:
    """Series or study metadata as stored (gzip'd) and its ETag, decompressed here when the
    client does not take gzip and the document is small (``documents.WHOLE_UP_TO``);
    the third value says whether the bytes are still gzip'd."""
    if series is not None:
        body, etag = documents.series_metadata_gz(index, blobs, study, series, base)
    else:
        body, etag = documents.study_metadata_gz(index, blobs, study, base)
    if gz or documents.plain_size(body) > documents.WHOLE_UP_TO:
        return body, etag, True
    return gzip.decompress(body), etag, False


# -- frames and bulk data --------------------------------------------------------
def _read_spans(blobs: Blobs, key: str, spans: list[Span], swap: int, origin: int = 0) -> bytes:
    """The bytes of ``spans``; with ``swap`` > 1, big-endian words of that size (counted from
    ``origin``, where the value starts) made little endian, even where a span cuts a word."""
    if swap <= 1:
        return b"".join(blobs.get_range(key, off, n) for off, n in spans)
    out = []
    for off, n in spans:
        lead = (off - origin) % swap
        tail = -(off + n - origin) % swap  # values are padded to an even length
        data = blobs.get_range(key, off - lead, lead + n + tail)
        out.append(swap_bytes(data, swap)[lead : lead + n])
    return b"".join(out)


#: Spans closer than this are read together (item headers between fragments are 8 bytes).
_GAP = 64 << 10


def _read_items(blobs: Blobs, key: str, items: list[list[Span]]) -> list[bytes]:
    """The bytes of each item (a list of spans), reading runs of neighbouring spans (in file
    order, gaps below ``_GAP``) with one range read each: a whole multi-frame pixel data
    value is one read, not one per fragment."""
    flat = [span for spans in items for span in spans]
    got: dict[Span, bytes] = {}
    i = 0
    while i < len(flat):
        start, end, j = flat[i][0], flat[i][0] + flat[i][1], i + 1
        while j < len(flat) and end <= flat[j][0] <= end + _GAP:
            end, j = flat[j][0] + flat[j][1], j + 1
        data = blobs.get_range(key, start, end - start)
        for off, n in flat[i:j]:
            got[(off, n)] = data[off - start : off - start + n]
        i = j
    return [b"".join(got[(off, n)] for off, n in spans) for spans in items]


def _local_file(blobs: Blobs, rec: InstanceRecord) -> str | None:
    """The local file holding ``rec``'s object (``None`` when the blob store has none);
    ``NotFound`` when it is gone, before any byte of the response is sent. (A ``stat`` of
    a local file, made on the event loop as nginx makes its ``open``.)"""
    path = blobs.local_path(rec.blob_key)
    if path is not None and not os.path.isfile(path):
        raise NotFound(f"blob {rec.blob_key} not found")
    return path


async def _instance(request: Request) -> InstanceRecord:
    study, series, sop = path_uids(request)
    assert sop is not None
    rec = await threaded(store(request).index.get, sop)
    if rec is None or rec.study_uid != study or rec.series_uid != series:
        raise NotFound(f"instance {sop} not found")
    return rec


async def _parts_response(
    blobs: Blobs,
    rec: InstanceRecord,
    rep: Representation,
    items: list[list[Span]],
    swap: int,
    desc: PixelDescription | None,
    origin: int = 0,
    instead: Representation | None = None,
) -> Response:
    """Frames or bulk values as one response body: range reads of the stored object, as
    stored (built in one threadpool call: frames are small next to a hop per chunk), or
    decoded and re-encoded one at a time, streamed (PS3.18 8.7.3.5). ``instead`` is sent
    when the codecs cannot decode the data (the server chose to decode it)."""
    ctype = rep.media_type
    if rep.transfer_syntax:
        ctype += f"; transfer-syntax={rep.transfer_syntax}"
    if rep.transfer_syntax is not None and not is_as_stored(
        rec.transfer_syntax, rep.transfer_syntax
    ):
        assert desc is not None
        # native frames are read as little endian (swapped as needed), like native responses
        stored = EXPLICIT_LE if rec.transfer_syntax in UNCOMPRESSED else rec.transfer_syntax
        raw = (_read_spans(blobs, rec.blob_key, spans, swap, origin) for spans in items)
        try:
            frames = await _first_then_rest(
                transcode_frames(raw, stored, rep.transfer_syntax, desc),
                pixel_offers(rec.transfer_syntax, desc, False)[0],
            )
        except NotAcceptable:
            if instead is None:
                raise
            return await _parts_response(blobs, rec, instead, items, swap, desc, origin)
        if not rep.multipart:
            return StreamingResponse(frames, media_type=ctype)
        boundary = new_boundary()
        parts = (({"Content-Type": ctype}, [frame]) for frame in frames)
        content_type = multipart_content_type(rep.media_type, boundary, rep.transfer_syntax)
        return StreamingResponse(iter_multipart(parts, boundary), media_type=content_type)
    local = _local_file(blobs, rec) if swap <= 1 else None
    if local is not None:  # as stored, from a local file: sent by sendfile
        files = [[zerocopy.Span(local, off, n) for off, n in spans] for spans in items]
        if not rep.multipart:
            return zerocopy.PiecesResponse(zerocopy.joined(files[0]), ctype)
        boundary = new_boundary()
        pieces = zerocopy.joined(
            iter_multipart(((({"Content-Type": ctype}, f) for f in files)), boundary)
        )
        return zerocopy.PiecesResponse(
            pieces, multipart_content_type(rep.media_type, boundary, rep.transfer_syntax)
        )
    if not rep.multipart:
        body = await threaded(_read_spans, blobs, rec.blob_key, items[0], swap, origin)
        return Response(body, media_type=ctype)
    boundary = new_boundary()

    def build() -> bytes:
        if swap <= 1:  # several frames: neighbouring spans in one read (one GET on S3)
            bodies = _read_items(blobs, rec.blob_key, items)
        else:
            bodies = [_read_spans(blobs, rec.blob_key, spans, swap, origin) for spans in items]
        parts = (({"Content-Type": ctype}, [body]) for body in bodies)
        return b"".join(iter_multipart(parts, boundary))

    return Response(
        await threaded(build),
        media_type=multipart_content_type(rep.media_type, boundary, rep.transfer_syntax),
    )


def _negotiate_pixels(
    request: Request, rec: InstanceRecord, accept: str | None, single: bool
) -> tuple[Representation, PixelDescription | None, Representation | None]:
    """The representation of frames to send, when needed the pixel description, and what to
    send instead when decoding fails (the client's choice without ``server.decodeForAny``).

    A single media range that the stored form satisfies gets it without reading the pixel
    description (the hot path of viewers): with one range, the first matching offer wins and
    the stored form is always the first offer -- unless the stored syntax is one of
    ``server.decodeForAny``, whose frames a client leaving the choice gets decoded.
    """
    query_accept = request.query_params.get("accept")
    decode = rec.transfer_syntax in _decode_for_any(settings(request).server.decode_for_any)
    asked = query_accept if query_accept and query_accept.strip() else accept
    if not decode and (asked is None or "," not in asked):
        try:
            stored = pixel_offers(rec.transfer_syntax, None, single)
            return negotiate(accept, stored, query_accept=query_accept), None, None
        except NotAcceptable:
            pass
    desc = description(rec.metadata)
    decoded_first = decode and decodes_as_described(desc)
    offers = pixel_offers(rec.transfer_syntax, desc, single, decoded_first)
    rep = negotiate(accept, offers, query_accept=query_accept)
    if not decoded_first or rep.transfer_syntax != EXPLICIT_LE:
        return rep, desc, None
    usual = negotiate(
        accept, pixel_offers(rec.transfer_syntax, desc, single), query_accept=query_accept
    )
    return rep, desc, usual if usual != rep else None


@functools.lru_cache(maxsize=8)
def _decode_for_any(aliases: tuple[str, ...]) -> frozenset[str]:
    return decode_syntaxes(aliases)


async def frames(request: Request) -> Response:
    rec = await _instance(request)
    fmap = FrameMap.from_json(rec.framemap)
    if not fmap.frames:
        raise NotFound(f"instance {rec.sop_uid} has no pixel data frames")
    if not fmap.aligned:
        raise NotImplementedFeature(
            "frames of this instance are not byte aligned (1-bit pixel data); retrieve the instance"
        )
    numbers = frame_numbers(request.path_params["frames"], len(fmap.frames))
    rep, desc, instead = _negotiate_pixels(
        request, rec, request.headers.get("accept"), len(numbers) == 1
    )
    items = [fmap.frames[n - 1] for n in numbers]
    origin = fmap.frames[0][0][0]
    with presence.reading(rec):
        return await _parts_response(
            store(request).blobs, rec, rep, items, fmap.swap, desc, origin, instead
        )


async def bulkdata(request: Request) -> Response:
    rec = await _instance(request)
    fmap = FrameMap.from_json(rec.framemap)
    path = request.path_params["path"].strip("/")
    spans = fmap.bulk.get(path)
    if spans is None:
        raise NotFound(f"no bulk data {path!r} in instance {rec.sop_uid}")
    with presence.reading(rec):
        return await _bulk_response(request, rec, fmap, path, spans)


async def _bulk_response(
    request: Request, rec: InstanceRecord, fmap: FrameMap, path: str, spans: list[Span]
) -> Response:
    blobs = store(request).blobs
    if path == f"{PIXEL_DATA:08X}" and rec.transfer_syntax not in UNCOMPRESSED:
        accept = request.headers.get("accept")
        rep, desc, instead = _negotiate_pixels(request, rec, accept, len(fmap.frames) == 1)
        return await _parts_response(blobs, rec, rep, fmap.frames, 0, desc, 0, instead)
    offers_native = [
        Representation("application/octet-stream", EXPLICIT_LE, True),
        Representation("application/octet-stream", EXPLICIT_LE, False),
    ]
    accept = request.headers.get("accept")
    try:
        rep = negotiate(accept, offers_native)
    except NotAcceptable:
        if path != f"{PIXEL_DATA:08X}" or not fmap.frames or not fmap.aligned:
            raise
        # native pixel data asked in another syntax: its frames, transcoded, one part each
        rep, desc, _ = _negotiate_pixels(request, rec, accept, len(fmap.frames) == 1)
        origin = fmap.frames[0][0][0]
        return await _parts_response(blobs, rec, rep, fmap.frames, fmap.swap, desc, origin)
    swap = fmap.swap if path == f"{PIXEL_DATA:08X}" else 0
    return await _parts_response(blobs, rec, rep, [spans], swap, None, spans[0][0] if spans else 0)


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
