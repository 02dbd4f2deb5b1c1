"""The audit log (``audit.path``): one JSON line per access to patient data and per change.

An HTTP request is audited when its route needs a role (``webpacs.web.access`` leaves the
role and the caller in the scope); public routes (health, the browser's files) are not::

    {"time": "2026-12-04T19:20:00.123Z", "who": "reader", "from": "127.0.0.1",
     "what": "GET /dicomweb/studies/{study}", "role": "read",
     "uids": {"study": "1.2.3"}, "status": 200}

``who`` is the user name or the token's subject (``anonymous`` with ``auth.mode: none``,
``-`` when the credentials did not check out). The line holds no header, query string,
token or password. ``path: "-"`` writes to standard output.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webpacs.audit import AuditLog
from webpacs.web.observe import route_template

_UID_PARAMS = ("patient", "study", "series", "instance", "frames", "label")


class Audit:
    """The middleware: one line per request whose route needed a role."""

    def __init__(self, app: ASGIApp, log: AuditLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"status": 500}

        async def noting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_send)
        finally:
            role = scope.get("webpacs.role")
            if role not in (None, "public"):
                params = scope.get("path_params") or {}
                client = scope.get("client")
                self.log.write({
                    "who": scope.get("webpacs.user", "-"),
                    "from": client[0] if client else "-",
                    "what": f"{scope['method']} {route_template(scope)}",
                    "role": role,
                    "uids": {k: str(params[k]) for k in _UID_PARAMS if k in params},
                    "status": state["status"],
                })  # fmt: skip
