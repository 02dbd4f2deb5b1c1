"""``webpacs static serve``: the static subset of DICOMweb, answered from a tree's files.

A web app beside the main one (``web.app``), with its error map (``web.errors``: a
malformed UID is 400, a missing study 404, both as the JSON error body) and its
``Accept-Encoding`` rule (``core.media.accepts_gzip``). The tree is written by
``webpacs.static``. Supported (everything else is 404):

* ``GET /studies``, ``/studies/{S}/series``, ``/studies/{S}/series/{X}/instances`` and
  ``/studies/{S}/instances``: the ``index.json.gz`` files. Query parameters are ignored except
  equality on ``PatientID`` and ``StudyInstanceUID`` (studies), ``SeriesInstanceUID`` and
  ``Modality`` (series), ``SOPInstanceUID`` (instances), plus ``limit`` and ``offset``.
  Results carry no ``RetrieveURL``.
* ``GET .../series/{X}/metadata`` and ``.../instances/{I}/metadata``: ``metadata.gz``.
* ``GET .../instances/{I}/frames/{n[,m...]}``: the ``.mht``/``.mht.gz`` files, as
  ``multipart/related`` (several frames are joined into one multipart body).
* ``GET /studies/{S}/bulkdata/...``: bulk data files (relative ``BulkDataURI``s resolve here).

Unfiltered gzip'd files are sent as they are, with ``Content-Encoding: gzip``, to clients
that accept gzip, and decompressed for the others.

Access follows the same settings as ``webpacs serve``: every route needs ``ROLE`` (``auth.mode``
decides who has it), CORS follows ``auth.corsOrigins`` (open to every origin with
``auth.mode: none``, as in the nginx configuration) and ``audit.path`` gets a line per request.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webpacs.audit import AuditLog
from webpacs.auth import Authenticator, cors_origins
from webpacs.config import Settings, isolated
from webpacs.core import numbers
from webpacs.core.media import DICOM_JSON
from webpacs.core.multipart import iter_multipart, multipart_content_type, new_boundary
from webpacs.errors import NotFound, WebpacsError
from webpacs.static.tree import read_part
from webpacs.web import access
from webpacs.web.audit import Audit
from webpacs.web.common import accepts_gzip, path_uids
from webpacs.web.errors import handle_unexpected, handle_webpacs_error

JSON = DICOM_JSON
_FILTERS = {
    "studies": {"PatientID": "00100020", "StudyInstanceUID": "0020000D"},
    "series": {"SeriesInstanceUID": "0020000E", "Modality": "00080060"},
    "instances": {"SOPInstanceUID": "00080018"},
}
_BULK = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{60}\.mht\.gz$")


def _not_found(what: str) -> NotFound:
    return NotFound(f"{what} not found")


def _uids(request: Request) -> list[str]:
    """The path's UIDs, checked as the main server checks them (400 when malformed)."""
    return [u for u in path_uids(request) if u is not None]


def _gz_response(request: Request, path: Path, media_type: str) -> Response:
    data = path.read_bytes()
    if accepts_gzip(request):
        return Response(data, media_type=media_type, headers={"Content-Encoding": "gzip"})
    return Response(gzip.decompress(data), media_type=media_type)


def _filtered(request: Request, kind: str, files: list[Path]) -> Response:
    params = request.query_params
    wanted = {tag: params[k] for k, tag in _FILTERS[kind].items() if k in params}
    paging = "limit" in params or "offset" in params
    if len(files) == 1 and not wanted and not paging:
        return _gz_response(request, files[0], JSON)
    rows: list[dict[str, Any]] = []
    for f in files:
        rows += orjson.loads(gzip.decompress(f.read_bytes()))
    rows = [
        r
        for r in rows
        if all((r.get(t, {}).get("Value") or [None])[0] == v for t, v in wanted.items())
    ]
    offset = numbers.whole("offset", params["offset"]) if params.get("offset") else 0
    limit = numbers.whole("limit", params["limit"]) if params.get("limit") else None
    rows = rows[offset : offset + limit if limit is not None else None]
    return Response(orjson.dumps(rows), media_type=JSON)


#: The role every route of the static app needs (all are reads).
ROLE = "read"


def create_static_app(root: str | Path, settings: Settings | None = None) -> Starlette:
    """A Starlette app answering the static subset of DICOMweb from the tree at ``root``;
    ``settings`` (default: the defaults) give its ``auth`` and ``audit``."""
    base = Path(root).expanduser()
    settings = settings if settings is not None else isolated()

    async def studies(request: Request) -> Response:
        f = base / "studies/index.json.gz"
        return (
            _filtered(request, "studies", [f]) if f.exists() else Response(b"[]", media_type=JSON)
        )

    async def series(request: Request) -> Response:
        uids = _uids(request)
        f = base / f"studies/{uids[0]}/series/index.json.gz" if uids else None
        if f is None or not f.exists():
            raise _not_found("study")
        return _filtered(request, "series", [f])

    async def instances(request: Request) -> Response:
        uids = _uids(request)
        if len(uids) == 2:
            f = base / f"studies/{uids[0]}/series/{uids[1]}/instances/index.json.gz"
            if not f.exists():
                raise _not_found("series")
            return _filtered(request, "instances", [f])
        if not uids or not (base / f"studies/{uids[0]}").exists():
            raise _not_found("study")
        files = sorted((base / f"studies/{uids[0]}/series").glob("*/instances/index.json.gz"))
        return _filtered(request, "instances", files)

    async def metadata(request: Request) -> Response:
        uids = _uids(request)
        if len(uids) < 2:
            raise _not_found("series")
        rel = f"studies/{uids[0]}/series/{uids[1]}"
        if len(uids) == 3:
            rel += f"/instances/{uids[2]}"
        f = base / rel / "metadata.gz"
        if not f.exists():
            raise _not_found("metadata")
        return _gz_response(request, f, JSON)

    async def frames(request: Request) -> Response:
        uids = _uids(request)
        if len(uids) != 3:
            raise _not_found("instance")
        fdir = base / f"studies/{uids[0]}/series/{uids[1]}/instances/{uids[2]}/frames"
        files = []
        for text in request.path_params["frames"].split(","):
            n = numbers.whole("frame number", text, low=1)
            found = [p for p in (fdir / f"{n}.mht", fdir / f"{n}.mht.gz") if p.exists()]
            if not found:
                raise _not_found(f"frame {n}")
            files.append(found[0])
        parts = []
        for f in files:
            data = f.read_bytes()
            parts.append(read_part(gzip.decompress(data) if f.name.endswith(".gz") else data))
        ctype = parts[0][2]
        part_type, _, param = ctype.partition(";")
        ts = param.split("=", 1)[1].strip() if "=" in param else None
        if len(files) == 1:
            boundary = parts[0][0]
            headers = {"Content-Encoding": "gzip"} if files[0].name.endswith(".gz") else {}
            if headers and accepts_gzip(request):
                body = files[0].read_bytes()
            else:
                body, headers = (
                    b"".join(iter_multipart([({"Content-Type": ctype}, [parts[0][1]])], boundary)),
                    {},
                )
            return Response(
                body, headers=headers, media_type=multipart_content_type(part_type, boundary, ts)
            )
        boundary = new_boundary()
        body = b"".join(iter_multipart([({"Content-Type": p[2]}, [p[1]]) for p in parts], boundary))
        return Response(body, media_type=multipart_content_type(part_type, boundary, ts))

    async def bulkdata(request: Request) -> Response:
        uids = _uids(request)
        path = request.path_params["path"]
        f = base / f"studies/{uids[0]}/bulkdata/{path}" if uids and _BULK.match(path) else None
        if f is None or not f.exists():
            raise _not_found("bulk data")
        boundary, _body, ctype = read_part(gzip.decompress(f.read_bytes()))
        return _gz_response(request, f, multipart_content_type(ctype, boundary))

    s, x, i = "/studies/{study}", "/series/{series}", "/instances/{instance}"
    routes = [
        Route("/studies", studies),
        Route(f"{s}/series", series),
        Route(f"{s}{x}/instances", instances),
        Route(f"{s}/instances", instances),
        Route(f"{s}{x}/metadata", metadata),
        Route(f"{s}{x}{i}/metadata", metadata),
        Route(f"{s}{x}{i}/frames/{{frames}}", frames),
        Route(f"{s}/bulkdata/{{path:path}}", bulkdata),
    ]
    cors = Middleware(
        CORSMiddleware,
        allow_origins=cors_origins(settings),
        allow_credentials=settings.auth.mode != "none",
        allow_methods=["GET"],
        allow_headers=["*"],
    )
    audit = [Middleware(Audit, log=AuditLog(settings.audit.path))] if settings.audit.path else []
    return Starlette(
        routes=access.protect_all(routes, ROLE, Authenticator(settings)),
        middleware=[cors, *audit],
        exception_handlers={
            WebpacsError: handle_webpacs_error,
            Exception: handle_unexpected,
        },
    )
