"""Retrieve Capabilities (PS3.18 8.9, Annex H): what ``GET``/``OPTIONS`` on ``{rootPath}``
and ``{rootPath}/`` answer.

The Capabilities Description is a WADL document (the default, ``application/vnd.sun.wadl+xml``;
``application/xml`` gets the same) or, asked for ``application/json``, the same tree as JSON
(``{"application": {"resources": {"base": ..., "resource": [...]}}}``, each resource with its
``path``, ``param``, ``method`` and child ``resource`` lists). Its resources are the DICOMweb
operations of ``web.openapi.OPERATIONS`` that the running app has, as a tree of path
segments (``studies`` > ``{study}`` > ``series`` ...). The Retrieve Capabilities transaction
itself is left out (Table H-1's note: WADL is not self-describing).

A CORS preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) never
gets here: the CORS middleware answers it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webpacs.core.media import Representation, negotiate
from webpacs.web.common import base_url, settings
from webpacs.web.openapi import OPERATIONS, Op, app_routes, full_path

WADL = "application/vnd.sun.wadl+xml"
WADL_NS = "http://wadl.dev.java.net/2009/02"
_OFFERS = [
    Representation(WADL),
    Representation("application/json"),
    Representation("application/xml"),
]
_TEMPLATE = re.compile(r"^\{(\w+)(?::\w+)?\}$")


def _tree(ops: list[Op]) -> dict[str, Any]:
    """Resources by path segment: ``{"methods": [...], "children": {segment: ...}}``."""
    root: dict[str, Any] = {"methods": [], "children": {}}
    for op in ops:
        node = root
        for segment in [s for s in op.path.split("/") if s]:
            node = node["children"].setdefault(segment, {"methods": [], "children": {}})
        node["methods"].append(op)
    return root


def _method(op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {"name": op.method, "id": op.id}
    if op.query:
        out["request"] = {"param": [{"name": q, "style": "query"} for q in op.query]}
    status = "204" if op.method == "DELETE" else "200"
    out["response"] = [{"status": status, "representation": [{"mediaType": m} for m in op.media]}]
    return out


def _resource(segment: str, node: dict[str, Any]) -> dict[str, Any]:
    template = _TEMPLATE.match(segment)
    out: dict[str, Any] = {"path": f"{{{template.group(1)}}}" if template else segment}
    if template:
        out["param"] = [{"name": template.group(1), "style": "template", "required": True}]
    if node["methods"]:
        out["method"] = [_method(op) for op in node["methods"]]
    if node["children"]:
        out["resource"] = [_resource(s, n) for s, n in node["children"].items()]
    return out


def description(request: Request) -> dict[str, Any]:
    """The Capabilities Description as JSON (the WADL's element tree)."""
    root = settings(request).server.root_path.rstrip("/")
    have = app_routes(request.app.routes)
    ops = [
        op
        for op in OPERATIONS
        if op.root and op.path not in ("", "/") and (op.method, full_path(op, root)) in have
    ]
    tree = _tree(ops)
    resources = [_resource(s, n) for s, n in tree["children"].items()]
    return {"application": {"resources": {"base": base_url(request), "resource": resources}}}


def _xml(parent: ET.Element, tag: str, node: dict[str, Any]) -> None:
    attrs = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in node.items()
             if not isinstance(v, list | dict)}  # fmt: skip
    el = ET.SubElement(parent, f"{{{WADL_NS}}}{tag}", attrs)
    for key, value in node.items():
        for child in (
            value if isinstance(value, list) else [value] if isinstance(value, dict) else []
        ):
            _xml(el, key, child)


def wadl(desc: dict[str, Any]) -> bytes:
    """The WADL document of a description."""
    ET.register_namespace("", WADL_NS)
    app = ET.Element(f"{{{WADL_NS}}}application")
    _xml(app, "resources", desc["application"]["resources"])
    ET.indent(app)
    data: bytes = ET.tostring(app, encoding="utf-8", xml_declaration=True)
    return data


async def capabilities(request: Request) -> Response:
    chosen = negotiate(request.headers.get("accept"), _OFFERS)
    desc = description(request)
    if chosen.media_type == "application/json":
        return Response(
            orjson.dumps(desc, option=orjson.OPT_INDENT_2), media_type=chosen.media_type
        )
    return Response(wadl(desc), media_type=chosen.media_type)


def routes(root: str) -> list[Route]:
    """The routes at ``{rootPath}`` and ``{rootPath}/`` (only ``OPTIONS /`` when the API is
    at the origin root, whose ``GET /`` is the server's home)."""
    if not root:
        return [Route("/", capabilities, methods=["OPTIONS"])]
    return [
        Route(root, capabilities, methods=["GET", "OPTIONS"]),
        Route(root + "/", capabilities, methods=["GET", "OPTIONS"]),
    ]
