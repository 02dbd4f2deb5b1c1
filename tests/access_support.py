"""Helpers of the access-control tests: the protected routes of an app, as requests."""

from __future__ import annotations

import re

from webpacs.web import access

_VALUES = {"study": "1.2.3", "series": "1.2.4", "instance": "1.2.5", "frames": "1",
           "label": "x", "patient": "p", "path": "x"}  # fmt: skip


def protected(app: object, root: str) -> list[tuple[str, str]]:
    """(method, concrete path) of every route the app's table declares non-public."""
    roles = access.route_roles(list(app.routes), root)  # type: ignore[attr-defined]
    out = []
    for (method, template), role in sorted(roles.items()):
        if role == access.PUBLIC:
            continue
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: _VALUES[m.group(1)], template)
        out.append((method, path))
    return out


def declared(app: object, root: str) -> dict[tuple[str, str], str]:
    return access.route_roles(list(app.routes), root)  # type: ignore[attr-defined]
