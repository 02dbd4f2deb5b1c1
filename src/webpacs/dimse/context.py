"""What every DIMSE handler is given: the settings, the store and the access rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from webpacs.auth import is_loopback
from webpacs.config import AeEntry, Settings
from webpacs.errors import Forbidden
from webpacs.storage.registry import Store


def restricts_calling_ae(settings: Settings) -> bool:
    """Whether only the AEs of the ``ae`` table may associate, each for its ``services``.

    ``dimse.restrictCallingAe`` when set; unset (``null``), whenever HTTP is protected
    (``auth.mode`` is not ``none``) or the SCP listens on an address other than loopback
    (DESIGN "Access control"). An explicit ``false`` there is the deliberate opening,
    which ``opened_deliberately`` names so that the SCP warns about it.
    """
    explicit = settings.dimse.restrict_calling_ae
    return explicit if explicit is not None else _exposed(settings)


def opened_deliberately(settings: Settings) -> bool:
    """``dimse.restrictCallingAe: false`` where it would otherwise be on."""
    return settings.dimse.restrict_calling_ae is False and _exposed(settings)


def exposure(settings: Settings) -> str:
    """Why the SCP is exposed beyond a single trusted user ("" when it is not): HTTP
    authentication is on, or it listens on an address other than loopback."""
    if settings.auth.mode != "none":
        return f"auth.mode is {settings.auth.mode}"
    if not is_loopback(settings.dimse.host):
        return f"dimse.host {settings.dimse.host} is not loopback"
    return ""


def _exposed(settings: Settings) -> bool:
    return bool(exposure(settings))


@dataclass
class ScpContext:
    """The state the event handlers share (bound to them as an extra argument)."""

    settings: Settings
    store: Store

    def __post_init__(self) -> None:
        self.restricted = restricts_calling_ae(self.settings)

    @property
    def ae_title(self) -> str:
        """Our own AE title (``dimse.aeTitle``)."""
        return self.settings.dimse.ae_title

    def allow(self, event: Any, service: str) -> None:
        """Raise ``Forbidden`` when the calling AE may not use ``service``.

        Only when ``restricts_calling_ae``: unknown calling AEs are then refused when
        they associate (PS3.8 7.1.1.9, reason 3 *calling AE title not recognized*), and
        a known one may use only the services its ``ae`` table entry lists (a refusal
        is answered 0124 *Refused: Not Authorized*, ``webpacs.core.status``).
        """
        if not self.restricted:
            return
        calling = str(event.assoc.requestor.ae_title).strip()
        entry = self.settings.ae_by_title(calling)
        if entry is None or service not in entry.services:
            raise Forbidden(f"AE {calling!r} may not use {service}")

    def destination(self, title: str) -> AeEntry | None:
        """The ``ae`` table entry of a C-MOVE destination, by AE title (PS3.4 C.4.2.1.4.1)."""
        return self.settings.ae_by_title(title)


def text(value: Any) -> str:
    """An identifier value as the string a QIDO parameter would carry (``\\`` joins values)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip(" \x00")
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(text(v) for v in value)
    return str(value).strip()


def level_of(identifier: Dataset) -> str:
    """The *Query/Retrieve Level* (0008,0052) of an identifier, upper case ("" if absent)."""
    return text(identifier.get("QueryRetrieveLevel", "")).upper()
