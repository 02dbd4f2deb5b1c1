"""Which role each route needs, and the one check that enforces it (DESIGN rule 10).

``ROLE_OF`` gives every operation of ``webpacs.web.openapi.OPERATIONS`` its role:
``read`` < ``write`` (STOW, labels, send) < ``admin`` (DELETE, update and de-identify,
configuration views, ``/metrics``), or ``PUBLIC`` (health, and the study browser's and the
viewer's files; their data requests need ``read``). ``protect`` walks the app's route
table when the app is built and wraps every route in a ``Guard`` for its role; a route
(or mounted app) without a declared role stops the app from being built, so a new route
cannot be served unprotected. A test walks the table as well.
"""

from __future__ import annotations

import copy

from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from webpacs.auth import Authenticator
from webpacs.errors import NotAllowed
from webpacs.web.openapi import OPERATIONS, full_path

PUBLIC = "public"
_LEVELS = ("Study", "Series", "Instance")

_PUBLIC = {"home", "dictionary", "healthz", "readyz", "viewerRedirect", "viewerConfig", "viewer"}
_WRITE = {
    "storeInstances",
    "storeStudyInstances",
    *(f"{verb}{n}Label" for verb in ("add", "remove") for n in ("Study", "Series")),
    "sendStudy",
    "sendSeries",
}
_ADMIN = {
    "metrics",
    "proxyStatus",
    "deidentifyStudy",
    "updatePatient",
    *(f"delete{n}" for n in _LEVELS),
    *(f"update{n}" for n in _LEVELS),
}
#: The role of every operation id: the ones above, ``read`` for the rest (the searches,
#: retrieves, metadata, rendered, thumbnails, labels lists, capabilities, the API document).
ROLE_OF: dict[str, str] = {
    op.id: PUBLIC if op.id in _PUBLIC else "write" if op.id in _WRITE else
    "admin" if op.id in _ADMIN else "read"
    for op in OPERATIONS
}  # fmt: skip
#: Mounted apps (no routes of their own) by path: the study browser's files.
MOUNT_ROLE = {"/ui": PUBLIC}


class MissingRole(RuntimeError):
    """A route without a declared role (a programming error: the app is not built)."""


class Guard:
    """The route's app behind the check of its roles by method (``HEAD`` as ``GET``)."""

    def __init__(self, app: ASGIApp, roles: dict[str, str], auth: Authenticator) -> None:
        self.app = app
        self.roles = roles
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method = "GET" if scope["method"] == "HEAD" else scope["method"]
            role = self.roles.get(method, PUBLIC)  # another method: the route answers 405
            scope["webpacs.role"] = role
            if role != PUBLIC:
                headers = dict(scope.get("headers") or [])
                header = headers.get(b"authorization")
                client = scope.get("client")
                principal = await self.auth.authenticate(
                    header.decode("latin-1") if header else None, client[0] if client else "-"
                )
                scope["webpacs.user"] = principal.name
                if not principal.may(role):
                    raise NotAllowed(f"this needs the role {role!r}")
        await self.app(scope, receive, send)


def route_roles(routes: list[BaseRoute], root: str) -> dict[tuple[str, str], str]:
    """(method, path template) -> role of every route (HEAD left out), for the app's ``root``."""
    by_path = {(op.method, full_path(op, root)): ROLE_OF[op.id] for op in OPERATIONS}
    out: dict[tuple[str, str], str] = {}

    def walk(rs: list[BaseRoute], prefix: str) -> None:
        for r in rs:
            if isinstance(r, Mount) and r.routes:
                walk(list(r.routes), prefix + r.path)
            elif isinstance(r, Mount):
                if prefix + r.path not in MOUNT_ROLE:
                    raise MissingRole(f"mount {prefix + r.path} has no declared role")
                out[("*", prefix + r.path)] = MOUNT_ROLE[prefix + r.path]
            elif isinstance(r, Route):
                for m in sorted((r.methods or {"GET"}) - {"HEAD"}):
                    if (m, prefix + r.path) not in by_path:
                        raise MissingRole(f"{m} {prefix + r.path} has no declared role")
                    out[(m, prefix + r.path)] = by_path[(m, prefix + r.path)]

    walk(routes, "")
    return out


def protect(
    routes: list[BaseRoute],
    auth: Authenticator,
    roles: dict[tuple[str, str], str],
    prefix: str = "",
) -> list[BaseRoute]:
    """Copies of ``routes`` with a ``Guard`` in front of each app (``roles`` from
    ``route_roles``); the module-level route lists are left as they are."""
    out: list[BaseRoute] = []
    for r in routes:
        if isinstance(r, Mount) and r.routes:
            inner = protect(list(r.routes), auth, roles, prefix + r.path)
            out.append(Mount(r.path, routes=inner, name=r.name))
            continue
        if isinstance(r, Mount):
            mount = copy.copy(r)
            mount.app = Guard(r.app, {"GET": roles[("*", prefix + r.path)]}, auth)
            out.append(mount)
        elif isinstance(r, Route):
            route = copy.copy(r)
            mine = {m: role for (m, p), role in roles.items() if p == prefix + r.path}
            route.app = Guard(r.app, mine, auth)
            out.append(route)
        else:
            raise MissingRole(f"{r!r} is neither a route nor a mount")
    return out


def protect_all(routes: list[Route], role: str, auth: Authenticator) -> list[BaseRoute]:
    """Copies of ``routes``, every one behind ``role`` (an app whose routes all need it)."""
    out: list[BaseRoute] = []
    for r in routes:
        guarded = copy.copy(r)
        guarded.app = Guard(r.app, {m: role for m in (r.methods or {"GET"})}, auth)
        out.append(guarded)
    return out
