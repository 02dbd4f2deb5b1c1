"""What every DIMSE handler is given: the settings, the store and the access rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from webpacs.config import AeEntry, Settings
from webpacs.errors import Forbidden
from webpacs.storage.registry import Store


@dataclass
class ScpContext:
    """The state the event handlers share (bound to them as an extra argument)."""

    settings: Settings
    store: Store

    @property
    def ae_title(self) -> str:
        """Our own AE title (``dimse.aeTitle``)."""
        return self.settings.dimse.ae_title

    def allow(self, event: Any, service: str) -> None:
        """Raise ``Forbidden`` when the calling AE may not use ``service``.

        Only with ``dimse.restrictCallingAe``: unknown calling AEs are then refused when
        they associate (PS3.8 7.1.1.9, reason 3 *calling AE title not recognized*), and
        a known one may use only the services its ``ae`` table entry lists.
        """
        if not self.settings.dimse.restrict_calling_ae:
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
