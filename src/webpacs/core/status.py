"""The one map from typed errors to DICOM status codes, per service kind.

STOW-RS failure reasons (PS3.18 10.5.3, *Failure Reason* (0008,1197)) are the C-STORE
statuses (PS3.4 B.2.3, PS3.7 C.5), so STOW-RS and C-STORE read the same ``STORE`` table;
C-FIND, C-MOVE and C-GET have their own (PS3.4 C.4)::

    error                             STORE (STOW-RS, C-STORE)  FIND   MOVE/GET
    StorageError (out of resources)   A700                      A700   A701
    InvalidDicom (cannot understand)  C000                      A900   A900
    WrongStudy (study UID mismatch)   C409                      A900   A900
    InvalidRequest (bad identifier)   A900                      A900   A900
    Conflict (other content stored)   0111                      C000   C000
    Forbidden (service not allowed)   0124                      0124   0124
    NotImplementedFeature             0122                      C000   C000
    anything else                     0110                      C000   C000

* STORE: A700 *Refused: Out of Resources*, A900 *Error: Data Set does not match SOP
  Class*, C000 *Error: Cannot understand* (PS3.4 B.2.3); 0110 *Processing failure*,
  0111 *Duplicate SOP Instance* (the UID is stored with other content and the conflict
  policy is ``reject``), 0122 *Refused: SOP Class not supported*, 0124 *Refused: Not
  Authorized* (PS3.7 C.5); C409 *Referenced Study Instance UID mismatch* (as dcm4chee).
* FIND: PS3.4 C.4.1.1.4 (A700, A900 *Identifier does not match SOP Class*, C000 *Unable
  to process*); MOVE/GET: PS3.4 C.4.2.1.5, C.4.3.1.4 (A701 *Out of Resources - Unable to
  calculate number of matches*, A801 *Move Destination unknown*, A900, C000).
"""

from __future__ import annotations

from enum import StrEnum

from webpacs import errors

SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
SOP_CLASS_NOT_SUPPORTED = 0x0122
NOT_AUTHORIZED = 0x0124
OUT_OF_RESOURCES = 0xA700
OUT_OF_RESOURCES_MATCHES = 0xA701
MOVE_DESTINATION_UNKNOWN = 0xA801
IDENTIFIER_INVALID = 0xA900
CANNOT_PROCESS = 0xC000
STUDY_MISMATCH = 0xC409
WARNING_SOP_CLASS_MISMATCH = 0xB007


class Service(StrEnum):
    """The service kinds whose failures have a status table."""

    STORE = "C-STORE"  # and STOW-RS
    FIND = "C-FIND"
    MOVE = "C-MOVE"
    GET = "C-GET"


_QUERY: dict[type[errors.WebpacsError], int] = {
    errors.StorageError: OUT_OF_RESOURCES,
    errors.InvalidRequest: IDENTIFIER_INVALID,
    errors.Forbidden: NOT_AUTHORIZED,
}
_RETRIEVE = _QUERY | {errors.StorageError: OUT_OF_RESOURCES_MATCHES}

STATUS: dict[Service, dict[type[errors.WebpacsError], int]] = {
    Service.STORE: {
        errors.StorageError: OUT_OF_RESOURCES,
        errors.InvalidDicom: CANNOT_PROCESS,
        errors.WrongStudy: STUDY_MISMATCH,
        errors.InvalidRequest: IDENTIFIER_INVALID,
        errors.Conflict: DUPLICATE_SOP_INSTANCE,
        errors.Forbidden: NOT_AUTHORIZED,
        errors.NotImplementedFeature: SOP_CLASS_NOT_SUPPORTED,
    },
    Service.FIND: _QUERY,
    Service.MOVE: _RETRIEVE,
    Service.GET: _RETRIEVE,
}

#: The status of an error no table row names.
OTHERWISE = {
    Service.STORE: PROCESSING_FAILURE,
    Service.FIND: CANNOT_PROCESS,
    Service.MOVE: CANNOT_PROCESS,
    Service.GET: CANNOT_PROCESS,
}


def status_for(service: Service, exc: BaseException) -> int:
    """The failure status of ``service`` for ``exc`` (its nearest class in ``STATUS``)."""
    table = STATUS[service]
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return OTHERWISE[service]
