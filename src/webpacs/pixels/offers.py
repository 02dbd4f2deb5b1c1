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

__all__ = [
    "EXPLICIT_LE",
    "decodes_as_described",
    "description",
    "instance_offers",
    "is_as_stored",
    "pixel_offers",
]

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


def decodes_as_described(desc: PixelDescription | None) -> bool:
    """Whether decoded frames match the instance's own pixel description: a frame response
    cannot carry a new Photometric Interpretation (decoding makes YBR data RGB) or Planar
    Configuration (decoded colour frames are interleaved), so only these may be sent decoded
    where the client did not ask for it (``server.decodeForAny``)."""
    if desc is None or desc.photometric_interpretation.startswith("YBR"):
        return False
    return desc.samples_per_pixel == 1 or desc.planar_configuration == 0


@functools.lru_cache(maxsize=4096)
def pixel_offers(
    stored: str, desc: PixelDescription | None, single: bool, decoded_first: bool = False
) -> tuple[Representation, ...]:
    """What frames (or the pixel data bulk value) stored in ``stored`` can be sent as.

    ``decoded_first`` (``server.decodeForAny``) puts Explicit VR Little Endian before the
    stored syntax, so that a client leaving the choice to the server gets decoded frames.
    """
    native = stored in UNCOMPRESSED
    first = EXPLICIT_LE if native else stored
    syntaxes = [first]
    if desc is not None:
        for ts in NATIVE_FRAME_SYNTAXES + encodable_syntaxes():
            if ts in syntaxes:
                continue
            if (native and ts in NATIVE_FRAME_SYNTAXES) or can_produce(stored, ts, desc):
                syntaxes.append(ts)
        if decoded_first and EXPLICIT_LE in syntaxes:
            syntaxes.remove(EXPLICIT_LE)
            syntaxes.insert(0, EXPLICIT_LE)
    offers = [
        Representation(
            frame_media_type(ts), ts, True, named_only=ts in LOSSY_OUTPUT and ts != first
        )
        for ts in syntaxes
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
