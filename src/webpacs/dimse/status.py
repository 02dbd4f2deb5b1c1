"""The one map from typed errors to DIMSE statuses.

Handlers never let an exception escape: they catch it and return (or yield) the
status ``failure`` builds here, so that a peer always receives a status defined by
the standard for the service it used, with an *Error Comment* (0000,0902) telling why.

Statuses by service (PS3.7 Annex C for the general ones):

==============================  =======  =======  =======  =======
error                           C-STORE  C-FIND   C-MOVE   C-GET
==============================  =======  =======  =======  =======
StorageError (out of resources) A700     A700     A701     A701
InvalidDicom (cannot understand) C000    A900     A900     A900
InvalidRequest (bad identifier)  A900    A900     A900     A900
Conflict (other content stored)  0111    C000     C000     C000
Forbidden (service not allowed)  0124    0124     0124     0124
NotImplementedFeature            0122    C000     C000     C000
anything else (cannot process)   C000    C000     C000     C000
==============================  =======  =======  =======  =======

* C-STORE: PS3.4 B.2.3 (A7xx *Refused: Out of Resources*, A9xx *Error: Data Set does
  not match SOP Class*, Cxxx *Error: Cannot understand*); 0111 is PS3.7 C.5 *Duplicate
  SOP Instance*: the SOP Instance UID is stored with other content and the conflict
  policy is ``reject``.
* C-FIND: PS3.4 C.4.1.1.4 (A700 *Refused: Out of Resources*, A900 *Identifier does
  not match SOP Class*, Cxxx *Unable to process*).
* C-MOVE / C-GET: PS3.4 C.4.2.1.5 and C.4.3.1.4 (A701 *Out of Resources - Unable to
  calculate number of matches*, A801 *Move Destination unknown*, A900, Cxxx).
* 0122 *Refused: SOP Class not supported* and 0124 *Refused: Not Authorized*: PS3.7 C.5.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from pydicom.dataset import Dataset

from webpacs import errors

log = logging.getLogger("webpacs.dimse")

SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
#: PS3.7 C.5: the same SOP Instance UID is stored with other content.
DUPLICATE_SOP_INSTANCE = 0x0111
#: PS3.7 C.5.
SOP_CLASS_NOT_SUPPORTED = 0x0122
#: PS3.7 C.5: the calling AE may not use this service.
NOT_AUTHORIZED = 0x0124
#: PS3.4 B.2.3: stored, but the data set's SOP Class is not the one of the request.
WARNING_SOP_CLASS_MISMATCH = 0xB007
#: PS3.4 C.4.2.1.5: the C-MOVE destination is not in the ``ae`` table.
MOVE_DESTINATION_UNKNOWN = 0xA801
#: PS3.4 B.2.3 / C.4.x: ``Cannot understand`` / ``Unable to process``.
CANNOT_PROCESS = 0xC000
#: PS3.4 C.4.x: ``Identifier does not match SOP Class``.
IDENTIFIER_INVALID = 0xA900


class Service(StrEnum):
    """The DIMSE-C services webpacs provides as an SCP."""

    STORE = "C-STORE"
    FIND = "C-FIND"
    MOVE = "C-MOVE"
    GET = "C-GET"


_RETRIEVE: dict[type[errors.WebpacsError], int] = {
    errors.StorageError: 0xA701,
    errors.InvalidRequest: IDENTIFIER_INVALID,
    errors.Forbidden: NOT_AUTHORIZED,
}

STATUS: dict[Service, dict[type[errors.WebpacsError], int]] = {
    Service.STORE: {
        errors.StorageError: 0xA700,
        errors.InvalidDicom: CANNOT_PROCESS,
        errors.InvalidRequest: 0xA900,
        errors.Conflict: DUPLICATE_SOP_INSTANCE,
        errors.Forbidden: NOT_AUTHORIZED,
        errors.NotImplementedFeature: SOP_CLASS_NOT_SUPPORTED,
    },
    Service.FIND: {
        errors.StorageError: 0xA700,
        errors.InvalidRequest: IDENTIFIER_INVALID,
        errors.Forbidden: NOT_AUTHORIZED,
    },
    Service.MOVE: _RETRIEVE,
    Service.GET: _RETRIEVE,
}


def status_for(service: Service, exc: BaseException) -> int:
    """The failure status of ``service`` for ``exc`` (its nearest class in ``STATUS``)."""
    table = STATUS[service]
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return CANNOT_PROCESS


def status_dataset(status: int, comment: str = "") -> Dataset:
    """A status data set: *Status* (0000,0900) and, if given, *Error Comment* (0000,0902)."""
    ds = Dataset()
    ds.Status = status
    if comment:
        # LO: at most 64 characters, no backslash (PS3.5 6.2)
        ds.ErrorComment = comment.replace("\\", "/")[:64]
    return ds


def failure(service: Service, exc: BaseException) -> Dataset:
    """The status data set a handler answers with when ``exc`` stopped it; logs it."""
    status = status_for(service, exc)
    if isinstance(exc, errors.WebpacsError):
        message = str(exc) or type(exc).__name__
        level = logging.ERROR if isinstance(exc, errors.StorageError) else logging.WARNING
        log.log(level, "%s failed (0x%04X): %s", service.value, status, message)
    else:
        message = f"internal error: {type(exc).__name__}"
        log.error("%s failed (0x%04X)", service.value, status, exc_info=exc)
    return status_dataset(status, message)
