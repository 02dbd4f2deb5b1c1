"""DIMSE status data sets: what a handler answers when an exception stopped it.

Handlers never let an exception escape: they catch it and return (or yield) the
status ``failure`` builds here, so that a peer always receives a status defined by
the standard for the service it used, with an *Error Comment* (0000,0902) telling why.
The statuses themselves come from ``webpacs.core.status``, the table STOW-RS shares.
"""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset

from webpacs import errors
from webpacs.core.status import (
    CANCEL,
    PENDING,
    SOP_CLASS_NOT_SUPPORTED,
    SUCCESS,
    WARNING_SOP_CLASS_MISMATCH,
    Service,
    status_for,
)

__all__ = [
    "CANCEL", "PENDING", "SOP_CLASS_NOT_SUPPORTED", "SUCCESS", "WARNING_SOP_CLASS_MISMATCH",
    "Service", "failure", "status_dataset", "status_for",
]  # fmt: skip

log = logging.getLogger("webpacs.dimse")


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
