"""What the SCP's associations leave behind: metrics and log lines (pynetdicom notification
events, bound next to the service handlers in ``scp.handlers``).

* ``webpacs_dimse_associations_total{event}``: accepted, rejected, released, aborted; a
  rejection is also logged as a warning with the calling AE and address (with
  ``dimse.restrictCallingAe`` it is usually an AE missing from the ``ae`` table);
* ``webpacs_dimse_operations_total{operation,status}``: each final response the SCP sends
  (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET), by status class; pending responses of a C-FIND,
  C-MOVE or C-GET are not operations of their own.
"""

from __future__ import annotations

import logging
from typing import Any

from pynetdicom import evt

from webpacs import metrics
from webpacs.core.status import CANCEL, SUCCESS

log = logging.getLogger("webpacs.dimse")

_PENDING = (0xFF00, 0xFF01)
#: Warning statuses besides the B000-BFFF range (PS3.7 C.4, PS3.4 C.4.2.1.5).
_WARNINGS = frozenset({0x0001, 0x0107, 0x0116})


def status_class(status: int) -> str | None:
    """``success``, ``warning``, ``failure`` or ``cancel``; None for a pending status."""
    if status in _PENDING:
        return None
    if status == SUCCESS:
        return "success"
    if status == CANCEL:
        return "cancel"
    if status in _WARNINGS or 0xB000 <= status <= 0xBFFF:
        return "warning"
    return "failure"


def _peer(event: Any) -> str:
    r = event.assoc.requestor
    return f"{r.ae_title} ({r.address}:{r.port})"


def on_accepted(event: Any) -> None:
    metrics.dimse_association("accepted")


def on_rejected(event: Any) -> None:
    metrics.dimse_association("rejected")
    log.warning("association from %s rejected", _peer(event))


def on_released(event: Any) -> None:
    metrics.dimse_association("released")


def on_aborted(event: Any) -> None:
    metrics.dimse_association("aborted")


def on_sent(event: Any) -> None:
    """Count a final response (``C_STORE_RSP`` -> ``C-STORE``)."""
    name = type(event.message).__name__
    if not name.endswith("_RSP"):
        return
    status = getattr(event.message.command_set, "Status", None)
    kind = status_class(int(status)) if status is not None else "failure"
    if kind is not None:
        metrics.dimse_operation(name[: -len("_RSP")].replace("_", "-"), kind)


HANDLERS: list[tuple[Any, ...]] = [
    (evt.EVT_ACCEPTED, on_accepted),
    (evt.EVT_REJECTED, on_rejected),
    (evt.EVT_RELEASED, on_released),
    (evt.EVT_ABORTED, on_aborted),
    (evt.EVT_DIMSE_SENT, on_sent),
]
