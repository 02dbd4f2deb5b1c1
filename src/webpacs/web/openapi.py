"""The HTTP API described once: the OpenAPI 3.1 document (``/openapi.json``), its HTML page
(``/docs``) and, from the same table, the DICOMweb Capabilities Description (``capabilities``).

``OPERATIONS`` lists every route the server has, relative to ``server.rootPath`` for the
DICOMweb API (``root=True``) and to the origin for the rest; the document holds the entries
whose route the running app has (a viewer that is off, say, is not described). A route
without an entry here is missing from the document, and a test fails.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from webpacs import __version__

QIDO_PARAMS = ("limit", "offset", "includefield", "fuzzymatching")
_JSON = "application/dicom+json"
_MULTIPART = "multipart/related"


@dataclass(frozen=True)
class Op:
    method: str
    path: str  # the route's template ({study}; {path:path} becomes {path} in the document)
    id: str
    summary: str
    tag: str
    media: tuple[str, ...] = (_JSON,)  # what a 2xx answer may be
    query: tuple[str, ...] = ()  # query parameters
    root: bool = True  # under server.rootPath
    standard: str = ""  # the PS3.18 section


def _dicomweb() -> list[Op]:
    s, x, i = "/studies/{study}", "/series/{series}", "/instances/{instance}"
    ops = [
        Op("GET", "", "capabilities", "Capabilities (WADL or JSON)", "DICOMweb",
           ("application/vnd.sun.wadl+xml", "application/json"), standard="8.9"),
        Op("OPTIONS", "", "capabilitiesOptions", "Capabilities (WADL or JSON)", "DICOMweb",
           ("application/vnd.sun.wadl+xml", "application/json"), standard="8.9"),
        Op("GET", "/", "capabilitiesSlash", "Capabilities (WADL or JSON)", "DICOMweb",
           ("application/vnd.sun.wadl+xml", "application/json"), standard="8.9"),
        Op("OPTIONS", "/", "capabilitiesSlashOptions", "Capabilities (WADL or JSON)",
           "DICOMweb", ("application/vnd.sun.wadl+xml", "application/json"), standard="8.9"),
        Op("POST", "/studies", "storeInstances", "Store instances (STOW-RS)", "STOW-RS",
           standard="10.5"),
        Op("POST", s, "storeStudyInstances", "Store instances of one study (STOW-RS)",
           "STOW-RS", standard="10.5"),
        Op("GET", "/wado", "wadoUri", "WADO-URI: an instance, or a rendered image", "WADO-URI",
           ("application/dicom", "image/jpeg", "image/png"),
           ("requestType", "studyUID", "seriesUID", "objectUID", "contentType"),
           standard="9"),
        Op("GET", "/webpacs/studies/{study}/conflicts", "studyConflicts",
           "Patient/study attributes that disagreed between instances", "webpacs",
           ("application/json",)),
        Op("POST", "/webpacs/studies/{study}/deidentify", "deidentifyStudy",
           "De-identify a study (PS3.15 E.1)", "webpacs", ("application/json",)),
        Op("POST", "/webpacs/patients/{patient}/update", "updatePatient",
           "Correct the attributes of a patient's studies", "webpacs", ("application/json",)),
        Op("GET", "/webpacs/proxy", "proxyStatus", "The remote PACS (queryAe/proxyAe) status",
           "webpacs", ("application/json",)),
    ]  # fmt: skip
    for level, path in (
        ("Studies", "/studies"),
        ("Series", "/series"),
        ("Instances", "/instances"),
    ):
        ops.append(Op("GET", path, f"search{level}", f"Search for {level.lower()} (QIDO-RS)",
                      "QIDO-RS", query=QIDO_PARAMS, standard="10.6"))  # fmt: skip
    for path, what in ((f"{s}/series", "StudySeries"), (f"{s}/instances", "StudyInstances"),
                       (f"{s}{x}/instances", "SeriesInstances")):  # fmt: skip
        ops.append(Op("GET", path, f"search{what}", f"Search for {what} (QIDO-RS)", "QIDO-RS",
                      query=QIDO_PARAMS, standard="10.6"))  # fmt: skip
    for name, path in (("Study", s), ("Series", s + x), ("Instance", s + x + i)):
        ops += [
            Op("GET", path, f"retrieve{name}", f"Retrieve the {name.lower()} (WADO-RS)",
               "WADO-RS", (f"{_MULTIPART}; type=application/dicom", "application/zip"),
               ("accept",), standard="10.4"),
            Op("GET", f"{path}/metadata", f"retrieve{name}Metadata",
               f"Retrieve the {name.lower()}'s metadata (WADO-RS)", "WADO-RS",
               standard="10.4"),
            Op("GET", f"{path}/rendered", f"retrieve{name}Rendered",
               f"Retrieve the {name.lower()} rendered (WADO-RS)", "WADO-RS",
               ("image/jpeg", "image/png", "image/gif", _MULTIPART),
               ("window", "viewport", "quality", "accept"), standard="10.4"),
            Op("GET", f"{path}/thumbnail", f"retrieve{name}Thumbnail",
               f"A thumbnail of the {name.lower()} (WADO-RS)", "WADO-RS",
               ("image/jpeg", "image/png", "image/gif"), ("viewport",), standard="10.4"),
            Op("DELETE", path, f"delete{name}", f"Delete the {name.lower()}", "Delete",
               ()),
            Op("POST", f"/webpacs{path}/update", f"update{name}",
               f"Correct the {name.lower()}'s attributes", "webpacs", ("application/json",)),
        ]  # fmt: skip
    for name, path in (("Study", s), ("Series", s + x)):
        labels = f"/webpacs{path}/labels"
        ops += [
            Op("GET", labels, f"list{name}Labels", f"The {name.lower()}'s labels", "webpacs",
               ("application/json",)),
            Op("PUT", f"{labels}/{{label}}", f"add{name}Label",
               f"Label the {name.lower()} (201 created, 204 already there)", "webpacs", ()),
            Op("DELETE", f"{labels}/{{label}}", f"remove{name}Label",
               f"Take a label off the {name.lower()}", "webpacs", ()),
        ]  # fmt: skip
    for name, path in (("Study", s), ("Series", s + x)):
        ops.append(Op("POST", f"/webpacs{path}/send", f"send{name}",
                      f"Send the {name.lower()} to an AE of the `ae` table (C-STORE); progress as"
                      " NDJSON lines", "webpacs", ("application/x-ndjson",)))  # fmt: skip
    ops.append(Op("GET", "/webpacs/browser", "browserSettings", "What the study browser may"
                  " offer (delete, viewer, AEs to send to)", "webpacs",
                  ("application/json",)))  # fmt: skip
    frames = f"{s}{x}{i}/frames/{{frames}}"
    ops += [
        Op("GET", frames, "retrieveFrames", "Retrieve frames (WADO-RS)", "WADO-RS",
           (f"{_MULTIPART}; type=application/octet-stream",), standard="10.4"),
        Op("GET", f"{frames}/rendered", "retrieveFramesRendered",
           "Retrieve frames rendered (WADO-RS)", "WADO-RS", ("image/jpeg", "image/png"),
           ("window", "viewport", "quality", "accept"), standard="10.4"),
        Op("GET", f"{frames}/thumbnail", "retrieveFramesThumbnail",
           "A thumbnail of a frame (WADO-RS)", "WADO-RS", ("image/jpeg", "image/png"),
           ("viewport",), standard="10.4"),
        Op("GET", f"{s}{x}{i}/bulkdata/{{path:path}}", "retrieveBulkdata",
           "Retrieve a bulk data value (WADO-RS)", "WADO-RS",
           (f"{_MULTIPART}; type=application/octet-stream",), standard="10.4"),
    ]  # fmt: skip
    return ops


def _origin() -> list[Op]:
    return [
        Op("GET", "/", "home", "The study browser (HTML); name, version and where the DICOMweb"
           " API is (JSON)", "Server", ("text/html", "application/json"), root=False),
        Op("GET", "/ui/dictionary.json", "dictionary", "Attribute keywords and UID names for"
           " the study browser", "Study browser", ("application/json",), root=False),
        Op("GET", "/healthz", "healthz", "Liveness: 200 while the process answers", "Operations",
           ("application/json",), root=False),
        Op("GET", "/readyz", "readyz", "Readiness: 200 when the index and blobs answer, else 503",
           "Operations", ("application/json",), root=False),
        Op("GET", "/metrics", "metrics", "Prometheus metrics (every worker process)",
           "Operations", ("text/plain",), root=False),
        Op("GET", "/openapi.json", "openapi", "This document", "Operations",
           ("application/json",), root=False),
        Op("GET", "/docs", "docs", "This document as a web page", "Operations", ("text/html",),
           root=False),
        Op("GET", "/viewer", "viewerRedirect", "Redirect to /viewer/", "Viewer", (),
           root=False),
        Op("GET", "/viewer/app-config.js", "viewerConfig", "OHIF's configuration, for this server",
           "Viewer", ("text/javascript",), root=False),
        Op("GET", "/viewer/{path:path}", "viewer", "The hosted OHIF 3 viewer (its files, and its"
           " page for every other path)", "Viewer", ("text/html",), root=False),
    ]  # fmt: skip


OPERATIONS: list[Op] = _origin() + _dicomweb()
_CONVERTER = re.compile(r"\{(\w+):\w+\}")


def full_path(op: Op, root: str) -> str:
    """The operation's path as the app routes it (``root`` is ``server.rootPath``, no
    trailing slash)."""
    return (root + op.path) if op.root else op.path


def app_routes(routes: list[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    """(method, path template) of every route, mounts walked (HEAD left out: GET has it)."""
    out: set[tuple[str, str]] = set()
    for r in routes:
        if isinstance(r, Mount):
            out |= app_routes(list(r.routes), prefix + r.path)
        elif isinstance(r, Route):
            out |= {(m, prefix + r.path) for m in (r.methods or ()) if m != "HEAD"}
    return out


def document(routes: list[BaseRoute], root: str, server_url: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the operations the app ``routes`` has."""
    have = app_routes(routes)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        path = full_path(op, root)
        if (op.method, path) not in have:
            continue
        template = _CONVERTER.sub(r"{\1}", path) or "/"
        if op.method.lower() in paths.get(template, {}):
            continue  # rootPath "/": GET / is the home page
        params: list[dict[str, Any]] = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in re.findall(r"\{(\w+)\}", template)
        ]
        params += [{"name": q, "in": "query", "schema": {"type": "string"}} for q in op.query]
        ok = "204" if op.method == "DELETE" else "200"
        response: dict[str, Any] = {"description": "success"}
        if op.media:
            response["content"] = {m: {} for m in op.media}
        entry: dict[str, Any] = {
            "operationId": op.id,
            "summary": op.summary,
            "tags": [op.tag],
            "responses": {ok: response, "default": {"description": "an error"}},
        }
        if params:
            entry["parameters"] = params
        if op.standard:
            entry["description"] = f"DICOM PS3.18 section {op.standard}."
        paths.setdefault(template, {})[op.method.lower()] = entry
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "webpacs", "version": __version__},
        "paths": paths,
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


def _origin_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host') or request.url.netloc}"


async def openapi_json(request: Request) -> Response:
    root = request.app.state.settings.server.root_path.rstrip("/")
    return JSONResponse(document(request.app.routes, root, _origin_url(request)))


async def docs(request: Request) -> Response:
    root = request.app.state.settings.server.root_path.rstrip("/")
    return HTMLResponse(render_html(document(request.app.routes, root)))


def render_html(doc: dict[str, Any]) -> str:
    """A plain page of the document: operations by tag, with parameters and media types."""
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            by_tag.setdefault(op["tags"][0], []).append((method.upper(), path, op))
    e = html.escape
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(doc['info']['title'])} HTTP API</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}",
        "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;",
        "padding:.3em;text-align:left;vertical-align:top}code{font-size:.95em}",
        ".m{font-weight:bold}</style></head><body>",
        f"<h1>{e(doc['info']['title'])} {e(doc['info']['version'])}: HTTP API</h1>",
        "<p>The same as <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p>",
    ]
    for tag, ops in by_tag.items():
        out.append(f"<h2>{e(tag)}</h2><table><tr><th>method</th><th>path</th>"
                   "<th>what</th><th>query</th><th>answers</th></tr>")  # fmt: skip
        for method, path, op in ops:
            query = ", ".join(p["name"] for p in op.get("parameters", []) if p["in"] == "query")
            media = [m for r in op["responses"].values() for m in r.get("content", {})]
            out.append(
                f"<tr><td class='m'>{method}</td><td><code>{e(path)}</code></td>"
                f"<td>{e(op['summary'])}</td><td>{e(query)}</td>"
                f"<td>{e(', '.join(media))}</td></tr>"
            )
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


routes = [
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/docs", docs, methods=["GET"]),
]
