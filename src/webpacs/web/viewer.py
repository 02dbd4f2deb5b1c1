"""OHIF 3 hosted at ``/viewer/``: its built ``dist/`` with a generated ``app-config.js``.

OHIF's published build (npm ``@ohif/app``, directory ``dist/``) assumes it is served at the
root of a site: ``index.html`` names its scripts as ``/app.bundle.js`` and sets
``window.PUBLIC_URL = "/"``, and webpack's public path (where code chunks, web workers and
WebAssembly codecs are loaded from) is compiled into a few bundles as
``__webpack_require__.p = "/"``. To host it under a prefix, this module serves:

* ``index.html`` (also for every path under the prefix that is not a file: OHIF routes in
  the browser, e.g. ``/viewer/viewer?StudyInstanceUIDs=...``) with those absolute paths and
  ``PUBLIC_URL`` rewritten to the prefix;
* bundles that set webpack's public path, with it rewritten to the prefix;
* ``app-config.js`` generated from the settings: ``routerBasename`` is the prefix and one
  DICOMweb data source points at this server's ``rootPath`` (``dicomweb_source``);
* every other file of ``dist/`` as it is.

``viewer.ohifPath`` names the ``dist/`` directory; left empty, the copy ``make`` installs
into the project's ``.npm-tools`` is used if it is there; ``"off"`` turns the viewer off.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from mimetypes import guess_type
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from webpacs.config import Settings, default_data_dir

log = logging.getLogger("webpacs.web")

PREFIX = "/viewer"
#: Where ``make run``/``make test`` install OHIF's dist (``npm pack @ohif/app``).
PROJECT_DIST = Path(__file__).resolve().parents[3] / ".npm-tools/node_modules/@ohif/app/dist"
#: The OHIF 3 release ``webpacs viewer install`` fetches (the one the tests pin).
OHIF_VERSION = "3.13.2"


def installed_dist(version: str = OHIF_VERSION) -> Path:
    """Where ``webpacs viewer install`` puts OHIF's ``dist/``: beside the default data
    directory, ``$XDG_DATA_HOME/webpacs-viewer/ohif-<version>/dist``."""
    base = Path(default_data_dir()).parent
    return base / "webpacs-viewer" / f"ohif-{version}" / "dist"


#: Root-absolute paths in the files of the dist, by suffix (or name): group 1 precedes the "/".
_REWRITES = {
    ".js": re.compile(rb'(__webpack_require__\.p = ")/(?=";)'),
    ".css": re.compile(rb"(url\()/(?!/)"),
    "manifest.json": re.compile(rb'("(?:src|start_url)"\s*:\s*")/(?!/)'),
}
_ABSOLUTE = re.compile(r'((?:src|href)=")/(?!/)')
_PUBLIC_URL = re.compile(r'window\.PUBLIC_URL\s*=\s*"/"')
#: Names with a content hash (``app.bundle.0f6159c501addfe9.js``, ``0ddf166f7a343eda.wasm``).
_HASHED = re.compile(r"(?:^|\.)[0-9a-f]{16}\.[a-z0-9]+$")
_IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
_TYPES = {".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript"}


def ohif_dist(settings: Settings) -> tuple[Path | None, str]:
    """The OHIF ``dist/`` directory to serve, or None and why not (``""`` when it is off)."""
    configured = settings.viewer.ohif_path
    if configured == "off":
        return None, ""
    if configured:
        path = Path(configured).expanduser()
        if (path / "index.html").is_file():
            return path, ""
        return None, f"viewer.ohifPath {configured!r} is not OHIF's dist/ (it has no index.html)"
    for path in (installed_dist(), PROJECT_DIST):
        if (path / "index.html").is_file():
            return path, ""
    return None, (
        "OHIF is not installed: `webpacs viewer install` (or `make viewer`) fetches it with"
        " npm, or set viewer.ohifPath to the dist/ directory of OHIF 3 (npm package @ohif/app)"
    )


def dicomweb_source(root: str, *, static: bool = False, name: str = "webpacs") -> dict[str, Any]:
    """OHIF 3's DICOMweb data source for a webpacs server (or, ``static``, a static tree)
    whose DICOMweb root is ``root``: the configuration the README shows."""
    config: dict[str, Any] = {
        "friendlyName": name,
        "name": name,
        "wadoUriRoot": f"{root}/wado" if not static else root,
        "qidoRoot": root,
        "wadoRoot": root,
        "qidoSupportsIncludeField": not static,
        "supportsFuzzyMatching": not static,
        "supportsWildcard": True,
        "imageRendering": "wadors",
        "thumbnailRendering": "wadors",
        "enableStudyLazyLoad": True,
        "omitQuotationForMultipartRequest": True,
    }
    if static:
        config |= {
            "staticWado": True,
            "supportsReject": False,
            "singlepart": "bulkdata,video,pdf",
            "bulkDataURI": {"enabled": True, "relativeResolution": "series"},
        }
    return {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": name,
        "configuration": config,
    }


def app_config(source: dict[str, Any], prefix: str = PREFIX) -> str:
    """The ``app-config.js`` of a viewer at ``prefix`` with one data source."""
    config = {
        "routerBasename": prefix,
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "showStudyList": True,
        "maxNumberOfWebWorkers": 3,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "defaultDataSourceName": source["sourceName"],
        "dataSources": [source],
    }
    return f"window.config = {json.dumps(config, indent=2)};\n"


class _Dist:
    """The files of one ``dist/``, with the rewritten ones kept in memory."""

    def __init__(self, root: Path, prefix: str) -> None:
        self.root = root.resolve()
        self.prefix = prefix
        self._rewritten: dict[Path, tuple[float, bytes]] = {}

    def file(self, rel: str) -> Path | None:
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path

    def index_html(self) -> bytes:
        html = (self.root / "index.html").read_text("utf-8")
        html = _PUBLIC_URL.sub(f'window.PUBLIC_URL="{self.prefix}/"', html)
        return _ABSOLUTE.sub(rf"\g<1>{self.prefix}/", html).encode()

    def rewritten(self, path: Path) -> bytes | None:
        """The file with its root-absolute paths moved under the prefix, or None when it
        has none: webpack's public path in scripts, ``url(/...)`` in style sheets, the
        icons of the web app manifest."""
        pattern = _REWRITES.get(path.name if path.suffix == ".json" else path.suffix)
        if pattern is None:
            return None
        mtime = path.stat().st_mtime
        cached = self._rewritten.get(path)
        if cached is None or cached[0] != mtime:
            data = path.read_bytes()
            new = pattern.sub(rb"\g<1>" + self.prefix.encode() + b"/", data)
            self._rewritten[path] = cached = (mtime, new if new != data else b"")
        return cached[1] or None


def viewer_routes(
    dist: Path, source: Callable[[Request], dict[str, Any]], prefix: str = PREFIX
) -> list[Route]:
    """Routes serving OHIF's ``dist`` at ``prefix``; ``source(request)`` is its data source."""
    files = _Dist(dist, prefix)

    async def redirect(request: Request) -> Response:
        return RedirectResponse(f"{prefix}/", 308)

    async def config(request: Request) -> Response:
        return Response(
            app_config(source(request), prefix),
            media_type="text/javascript",
            headers={"Cache-Control": "no-cache"},
        )

    async def serve(request: Request) -> Response:
        rel = request.path_params.get("path", "")
        path = files.file(rel) if rel and rel != "index.html" else None
        if path is None:  # OHIF's own routes (study list, /viewer?...): the page
            return Response(
                files.index_html(), media_type="text/html", headers={"Cache-Control": "no-cache"}
            )
        media = _TYPES.get(path.suffix)
        headers = _IMMUTABLE if _HASHED.search(path.name) else None
        body = files.rewritten(path)
        if body is not None:
            return Response(body, media_type=media or guess_type(path.name)[0], headers=headers)
        return FileResponse(path, media_type=media, headers=headers)

    return [
        Route(prefix, redirect, methods=["GET", "HEAD"]),
        Route(f"{prefix}/app-config.js", config, methods=["GET", "HEAD"]),
        Route(f"{prefix}/{{path:path}}", serve, methods=["GET", "HEAD"]),
    ]


def routes(settings: Settings) -> list[Route]:
    """The hosted viewer of ``webpacs serve``: OHIF, or a 404 that says how to get it (none
    when ``viewer.ohifPath`` is ``"off"``)."""
    from webpacs.web.common import base_url  # the app's modules: not in serve's supervisor

    dist, reason = ohif_dist(settings)
    if dist is not None:
        return viewer_routes(dist, lambda request: dicomweb_source(base_url(request)))
    if not reason:
        return []
    if settings.viewer.ohif_path:  # named, but wrong: say so where operators look
        log.warning("/viewer/ is off: %s", reason)

    async def not_installed(request: Request) -> Response:
        return PlainTextResponse(reason + "\n", 404)

    return [Route(PREFIX, not_installed), Route(f"{PREFIX}/{{path:path}}", not_installed)]
