"""The study browser: the page at ``/``, its files under ``/ui/``, and what it asks the
server beyond DICOMweb.

The browser is plain HTML, CSS and JavaScript modules (``ui/``, package data; no build
step, no framework). It talks to the server only through the DICOMweb API (QIDO-RS,
WADO-RS, STOW-RS, DELETE) and these non-standard resources:

* ``GET {rootPath}/webpacs/browser``: what the page may offer on this server (whether
  DELETE is allowed, the hosted viewer's URL, the AEs a study can be sent to);
* ``POST {rootPath}/webpacs/studies/{s}[/series/{x}]/send`` (``web.send``);
* ``GET /ui/dictionary.json``: attribute keywords by tag and UID names, from pydicom's
  dictionaries, for the metadata view.

``GET /`` answers the page, or the server's name and version as JSON to a client that
prefers ``application/json``.
"""

from __future__ import annotations

import gzip
import html
import json
from collections.abc import Awaitable, Callable
from functools import lru_cache
from pathlib import Path

from pydicom import datadict
from pydicom import uid as uids
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from webpacs import __version__
from webpacs.core.media import accepts_gzip, parse_accept
from webpacs.web import viewer
from webpacs.web.common import settings

UI = Path(__file__).parent / "ui"
#: Roles (once access control exists): the page and its files are public, what it asks
#: of the server needs ``read`` (DESIGN, Access control).
ROLE_PAGE = None
ROLE_SETTINGS = "read"
_UID_KINDS = ("SOP Class", "Transfer Syntax", "Meta SOP Class")


def prefers_json(accept: str | None) -> bool:
    """Whether the client's first choice is JSON rather than a page (``*/*`` is a page)."""
    ranges = [r for r in parse_accept(accept) if r[2] > 0]
    return bool(ranges) and ranges[0][0] in ("application/json", "application/*+json")


def page_html(root: str) -> bytes:
    """``index.html`` with the DICOMweb root the page's requests use (its files are named
    relative to the page, so that a proxy may serve it under a prefix)."""
    text = (UI / "index.html").read_text("utf-8")
    return text.replace("{{ROOT}}", html.escape(root, quote=True)).encode()


@lru_cache(maxsize=1)
def dictionary_gz() -> bytes:
    """Keywords by tag (``"00100010": "PatientName"``) and names of SOP Classes and
    transfer syntaxes by UID, gzip'd (the data dictionaries pydicom ships)."""
    # pydicom's dictionaries (public names, not re-exported for type checkers)
    tag_table = datadict.DicomDictionary  # type: ignore[attr-defined]
    uid_table = uids.UID_dictionary  # type: ignore[attr-defined]
    tags = {f"{tag:08X}": entry[4] for tag, entry in tag_table.items() if entry[4]}
    names = {uid: entry[0] for uid, entry in uid_table.items() if entry[1] in _UID_KINDS}
    body = json.dumps({"tags": tags, "uids": names}, separators=(",", ":")).encode()
    return gzip.compress(body, 6, mtime=0)


async def dictionary(request: Request) -> Response:
    headers = {"Cache-Control": "public, max-age=86400", "Vary": "Accept-Encoding"}
    body = dictionary_gz()
    if accepts_gzip(request.headers.get("accept-encoding", "")):
        headers["Content-Encoding"] = "gzip"
    else:
        body = gzip.decompress(body)
    return Response(body, media_type="application/json", headers=headers)


async def browser_settings(request: Request) -> Response:
    """What the page may offer here: delete, the viewer, the send destinations."""
    the_settings = settings(request)
    dist, reason = viewer.ohif_dist(the_settings)
    return JSONResponse(
        {
            "version": __version__,
            "allowDelete": the_settings.server.allow_delete,
            "viewer": f"{viewer.PREFIX}/" if dist is not None else None,
            "viewerReason": reason or ("" if dist else "the viewer is off (viewer.ohifPath)"),
            "aeTitle": the_settings.dimse.ae_title,
            "aes": [
                {
                    "name": name,
                    "title": entry.title,
                    "host": entry.host,
                    "port": entry.port,
                    "description": entry.description,
                }
                for name, entry in sorted(the_settings.ae_table.items())
            ],
        }
    )


def routes(home: Callable[[Request], Awaitable[Response]]) -> list[Route | Mount]:
    """The page at ``/`` (``home`` answers clients that prefer JSON) and its files."""

    async def page(request: Request) -> Response:
        if prefers_json(request.headers.get("accept")):
            return await home(request)
        server = settings(request).server
        # the DICOMweb root as clients reach it: server.publicUrl (behind a proxy) when set
        root = (server.public_url or server.root_path).rstrip("/")
        return Response(
            page_html(root), media_type="text/html", headers={"Cache-Control": "no-cache"}
        )

    return [
        Route("/", page, methods=["GET", "HEAD"]),
        Route("/ui/dictionary.json", dictionary, methods=["GET", "HEAD"]),
        Mount("/ui", StaticFiles(directory=UI), name="ui"),
    ]


#: Under ``rootPath``, beside the DICOMweb routes.
api_routes = [Route("/webpacs/browser", browser_settings, methods=["GET"])]
