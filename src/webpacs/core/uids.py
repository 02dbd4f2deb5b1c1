"""UID syntax (PS3.5 9.1): the one check every door uses before a UID reaches storage."""

from __future__ import annotations

import re

from webpacs.errors import InvalidRequest

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def is_valid_uid(value: str) -> bool:
    """True when ``value`` is a syntactically valid UID of at most 64 characters."""
    return 0 < len(value) <= 64 and _UID.match(value) is not None


def check_uid(value: object, what: str = "UID") -> str:
    """Return ``value`` if it is a valid UID, else raise ``InvalidRequest`` naming ``what``."""
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{what} is missing")
    if len(value) > 64:
        raise InvalidRequest(f"{what} {value[:70]!r}... is longer than 64 characters")
    if not _UID.match(value):
        raise InvalidRequest(
            f"{what} {value!r} is not a valid UID (digits and dots only, no leading zeros)"
        )
    return value
