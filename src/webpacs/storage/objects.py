"""Where stored objects live in the blob store, and how their keys are read back.

Ingest writes every instance under a content-addressed key,
``objects/<study>/<series>/<sop>.<first 20 hex digits of the sha256>.dcm``, the sha256
taken over the stored bytes after the File Meta Information (so a new File Meta header
alone does not make a new object). ``webpacs check`` reads the key back to tell which
instance a file nothing references belongs to, and recomputes the byte digest to tell
whether a stored object still holds the bytes it was written with.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from webpacs.core import part10

#: The prefix of every stored object's key.
PREFIX = "objects/"
#: How many hex digits of the byte digest the key carries.
KEY_DIGEST = 20

_KEY = re.compile(
    rf"^{PREFIX}(?P<study>[0-9.]+)/(?P<series>[0-9.]+)/(?P<sop>[0-9.]+?)"
    rf"\.(?P<digest>[0-9a-f]{{{KEY_DIGEST}}})\.dcm$"
)


def byte_digest(stored: bytes) -> str:
    """The sha256 (hex) of a stored Part 10 object's bytes after its File Meta group."""
    return hashlib.sha256(memoryview(stored)[part10.skip_meta(stored, 132) :]).hexdigest()


def object_key(study: str, series: str, sop: str, digest: str) -> str:
    """The key of a stored object, from its UIDs and :func:`byte_digest`."""
    return f"{PREFIX}{study}/{series}/{sop}.{digest[:KEY_DIGEST]}.dcm"


@dataclass(frozen=True)
class ObjectKey:
    """What a stored object's key says."""

    study_uid: str
    series_uid: str
    sop_uid: str
    digest: str  # the first KEY_DIGEST hex digits of byte_digest


def parse_key(key: str) -> ObjectKey | None:
    """The UIDs and digest prefix in ``key``; None when it is not an object key."""
    m = _KEY.match(key)
    if m is None:
        return None
    return ObjectKey(m["study"], m["series"], m["sop"], m["digest"])
