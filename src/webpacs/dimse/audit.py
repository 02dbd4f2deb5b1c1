"""DIMSE lines of the audit log (``audit.path``, see ``webpacs.audit``): one per final
response the SCP sends to C-STORE, C-FIND, C-MOVE and C-GET (not C-ECHO)::

    {"time": "...", "who": "MODALITY1", "from": "10.0.0.9", "what": "C-STORE",
     "uids": {"instance": "1.2.3.4"}, "status": "0x0000"}

``who`` is the calling AE title. A C-STORE names the stored SOP Instance UID; the query or
retrieve keys of C-FIND/C-MOVE/C-GET are not written (yet).
"""

from __future__ import annotations

from typing import Any

from pynetdicom import evt

from webpacs.audit import AuditLog

_AUDITED = {"C_STORE_RSP", "C_FIND_RSP", "C_MOVE_RSP", "C_GET_RSP"}
_PENDING = (0xFF00, 0xFF01)


def on_sent(event: Any, log: AuditLog) -> None:
    name = type(event.message).__name__
    if name not in _AUDITED:
        return
    cs = event.message.command_set
    status = int(getattr(cs, "Status", 0xC000))
    if status in _PENDING:
        return
    requestor = event.assoc.requestor
    uid = getattr(cs, "AffectedSOPInstanceUID", None) if name == "C_STORE_RSP" else None
    log.write({
        "who": requestor.ae_title,
        "from": requestor.address,
        "what": name[: -len("_RSP")].replace("_", "-"),
        "uids": {"instance": str(uid)} if uid else {},
        "status": f"0x{status:04X}",
    })  # fmt: skip


def handlers(path: str) -> list[tuple[Any, ...]]:
    """The handlers that write the DIMSE lines to ``path`` (none when ``path`` is "")."""
    return [(evt.EVT_DIMSE_SENT, on_sent, [AuditLog(path)])] if path else []
