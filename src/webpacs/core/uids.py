"""UID syntax (PS3.5 9.1): the one check every door uses before a UID reaches storage.

PS3.5 forbids leading zeros in UID components, but instances with such UIDs exist in
the wild and refusing them would lose images; webpacs accepts them (they are as safe in
paths and queries as any other digits). Everything else -- letters, slashes, ``..``,
``%2e``, empty components, more than 64 characters -- is refused.
"""

from __future__ import annotations

import re

from webpacs.errors import InvalidRequest

_UID_RE = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def is_valid_uid(value: str) -> bool:
    """True when ``value`` is a syntactically valid UID of at most 64 characters."""
    return 0 < len(value) <= 64 and _UID_RE.fullmatch(value) is not None


def check_uid(value: object, name: str = "UID") -> str:
    """Return ``value`` if it is a valid UID, else raise ``InvalidRequest`` naming ``name``."""
    if not isinstance(value, str) or not is_valid_uid(value):
        shown = value[:80] + "..." if isinstance(value, str) and len(value) > 80 else value
        raise InvalidRequest(
            f"{name}: invalid UID {shown!r} (expected digits and dots,"
            " at most 64 characters; wildcards are not allowed)"
        )
    return value
