"""The representations pixel data and instances can be retrieved in (PS3.18 8.7.3.5).

The stored representation comes first (range reads of the stored object, no decoding);
after it, in this order, what the installed codecs can produce from it: the native syntaxes
(Explicit VR Little Endian first), then the lossless compressed syntaxes an encoder exists
for, then the lossy ones, which a client gets only by naming them
(:attr:`Representation.named_only`). The lists are computed from pydicom's decoders and
encoders (:mod:`webpacs.pixels.codecs`) and cached per stored syntax and pixel description.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import orjson

from webpacs.core.media import UNCOMPRESSED, Representation, frame_media_type
from webpacs.pixels.codecs import (
    LOSSY_OUTPUT,
    NATIVE_FRAME_SYNTAXES,
    NATIVE_INSTANCE_SYNTAXES,
    PixelDescription,
    can_produce,
    encodable_syntaxes,
)

__all__ = ["EXPLICIT_LE", "description", "instance_offers", "is_as_stored", "pixel_offers"]

EXPLICIT_LE = "1.2.840.10008.1.2.1"
DICOM = "application/dicom"


def description(metadata: bytes | Mapping[str, Any]) -> PixelDescription | None:
    """The pixel description of an instance from its DICOM JSON (bytes or parsed)."""
    if isinstance(metadata, bytes | bytearray | memoryview):
        if b'"7FE00010"' not in bytes(metadata):
            return None
        metadata = orjson.loads(metadata)
    assert isinstance(metadata, Mapping)
    return PixelDescription.from_json(metadata)


def is_as_stored(stored: str, wanted: str | None) -> bool:
    """Whether frames in ``wanted`` are the stored bytes (no decoding needed)."""
    if wanted == stored:
        return True
    return stored in UNCOMPRESSED and wanted in NATIVE_FRAME_SYNTAXES


@functools.lru_cache(maxsize=4096)
def pixel_offers(
    stored: str, desc: PixelDescription | None, single: bool
) -> tuple[Representation, ...]:
    """What frames (or the pixel data bulk value) stored in ``stored`` can be sent as."""
    native = stored in UNCOMPRESSED
    first = EXPLICIT_LE if native else stored
    syntaxes = [first]
    if desc is not None:
        for ts in NATIVE_FRAME_SYNTAXES + encodable_syntaxes():
            if ts in syntaxes:
                continue
            if (native and ts in NATIVE_FRAME_SYNTAXES) or can_produce(stored, ts, desc):
                syntaxes.append(ts)
    offers = [
        Representation(frame_media_type(ts), ts, True, named_only=ts in LOSSY_OUTPUT and i > 0)
        for i, ts in enumerate(syntaxes)
    ]
    if single:
        offers += [
            Representation(o.media_type, o.transfer_syntax, False, o.named_only) for o in offers
        ]
    return tuple(offers)


@functools.lru_cache(maxsize=4096)
def instance_offers(stored: str, desc: PixelDescription | None) -> tuple[Representation, ...]:
    """What an instance stored in ``stored`` can be sent as (``application/dicom``)."""
    offers = [Representation(DICOM, stored, True)]
    for ts in NATIVE_INSTANCE_SYNTAXES + encodable_syntaxes():
        if ts != stored and can_produce(stored, ts, desc):
            offers.append(Representation(DICOM, ts, True, named_only=ts in LOSSY_OUTPUT))
    return tuple(offers)
