"""What a stored instance means, as a digest: "the same instance" is the same data set.

Two copies of one SOP Instance are the same when their data sets are, whatever bytes
encode them (issue 12, point 3). The digest is computed once, at ingest, from what ingest
builds anyway (the DICOM JSON of the instance and the map of its stored bytes), so equal
meaning gives equal digests and the index compares them as strings. DICOM JSON (PS3.18 F.2)
is already the data set without its encoding: values decoded, text padding stripped,
numbers as numbers, sequences as lists of items whatever their lengths. On top of it:

- left out: File Meta Information (group 0002), group lengths (gggg,0000), Data Set
  Trailing Padding (FFFC,FFFC) and, in the attribute part, the pixel data and how it is
  encoded (Photometric Interpretation, Planar Configuration, Extended Offset Table);
- binary values (inline or bulk, which depends on a size threshold only) as the sha256 of
  their little-endian bytes: OW/OL/OF/OD/OV swapped back when the data set is big endian.

A private element that one copy gives with its VR and the other as UN (implicit VR without a
private dictionary entry) differs in form, and so counts as a difference.

The pixel data is a separate part: its kind (native, lossless compressed, lossy compressed)
and a hash of Photometric Interpretation, Planar Configuration and the bytes (native, little
endian) or the compressed fragments (offset tables and fragment boundaries aside). The
digest reads ``m1:<attributes>:<kind><pixels>``. Copies whose attribute parts agree and
whose pixel parts are both lossless but differ are compared decoded (``webpacs.duplicates``):
only then, never at every ingest.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
    JPEG2000MCLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pydicom.uid import JPEGLossless as JPEGLosslessP14

from webpacs.core.framemap import FrameMap

#: The version of the canonical form; a digest of another version (or a plain sha256 of
#: the stored bytes, as records written before this existed hold) is recomputed to compare.
VERSION = "m1"

#: Compressed transfer syntaxes that lose nothing (PS3.5 A.4, A.4.4, A.4.7, A.4.8).
LOSSLESS_COMPRESSED = frozenset(
    str(u)
    for u in (
        JPEGLosslessP14,
        JPEGLosslessSV1,
        JPEGLSLossless,
        JPEG2000Lossless,
        JPEG2000MCLossless,
        HTJ2KLossless,
        HTJ2KLosslessRPCL,
        RLELossless,
        UID("1.2.840.10008.1.2.4.110"),  # JPEG XL Lossless
    )
)

NATIVE = "n"
LOSSLESS = "c"
LOSSY = "l"  # or of unknown kind
NO_PIXELS = "-"

PIXEL_DATA = 0x7FE00010
#: How pixel data is encoded, not what it holds: part of the pixel part, not the attributes.
PIXEL_ENCODING = frozenset(
    {
        0x00280004,  # Photometric Interpretation (JPEG 2000 copies say YBR_RCT for RGB)
        0x00280006,  # Planar Configuration
        0x7FE00001,  # Extended Offset Table
        0x7FE00002,  # Extended Offset Table Lengths
    }
)
#: DICOM JSON keys left out (besides group lengths): Data Set Trailing Padding, and at the
#: top level the pixel data and its encoding.
_SKIP = frozenset({"FFFCFFFC"})
_SKIP_TOP = _SKIP | {f"{t:08X}" for t in PIXEL_ENCODING | {PIXEL_DATA}}
#: Part of the pixel part: what the decoded pixels are compared as.
_PIXEL_DESCRIPTION = ("00280004", "00280006")
#: Word size of the binary VRs that a big-endian data set stores swapped.
_WORDS = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}


@dataclass(frozen=True)
class Meaning:
    """The two parts of an instance's meaning digest."""

    attributes: str  # hex sha256 of every element but the pixel data and its encoding
    kind: str  # NATIVE, LOSSLESS, LOSSY or NO_PIXELS
    pixels: str  # hex sha256 of the pixel data (with its encoding attributes); "" if none

    def __str__(self) -> str:
        return f"{VERSION}:{self.attributes}:{self.kind}{self.pixels}"

    @classmethod
    def parse(cls, digest: str) -> Meaning | None:
        """The parts of a digest of this version; None for any other digest."""
        version, _, rest = digest.partition(":")
        attributes, _, pixels = rest.partition(":")
        if version != VERSION or not attributes or not pixels:
            return None
        return cls(attributes, pixels[0], pixels[1:])

    @property
    def lossless(self) -> bool:
        """Whether the pixel data, decoded, is exactly what was encoded (or there is none)."""
        return self.kind in (NATIVE, LOSSLESS, NO_PIXELS)


def _swapped(data: bytes, width: int) -> bytes:
    """``data`` with each ``width``-byte word reversed (a trailing odd byte kept)."""
    if width < 2 or len(data) < width:
        return data
    whole = len(data) - len(data) % width
    out = bytearray(data)
    for i in range(width):
        out[i:whole:width] = data[width - 1 - i : whole : width]
    return bytes(out)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


class _Canonical:
    """DICOM JSON rewritten so that equal data sets give equal JSON (module docstring)."""

    def __init__(self, stored: bytes, fmap: FrameMap, big_endian: bool) -> None:
        self.stored = memoryview(stored)
        self.fmap = fmap
        self.big_endian = big_endian

    def dataset(self, meta: dict[str, Any], path: str, top: bool) -> dict[str, Any]:
        skip = _SKIP_TOP if top else _SKIP
        out = {}
        for key, value in meta.items():
            if key < "0003" or key[4:] == "0000" or key in skip:  # groups 0000-0002, lengths
                continue
            if "Value" in value and value.get("vr") != "SQ" or len(value) == 1:
                out[key] = value  # a plain value, or an empty one: as it is
            else:
                out[key] = self.element(value, path + key)
        return out

    def element(self, value: dict[str, Any], path: str) -> Any:
        vr = value.get("vr", "")
        if "InlineBinary" in value:
            data = base64.b64decode(value["InlineBinary"])
        elif "BulkDataURI" in value:
            spans = self.fmap.bulk.get(path, [])
            data = b"".join(bytes(self.stored[o : o + n]) for o, n in spans)
        elif vr == "SQ":
            items = value.get("Value") or []
            return [self.dataset(item, f"{path}/{i}/", False) for i, item in enumerate(items)]
        else:
            return value
        if self.big_endian:
            data = _swapped(data, _WORDS.get(vr, 0))
        return {"vr": vr, "sha256": hashlib.sha256(data).hexdigest()}


def attributes_digest(meta: dict[str, Any], stored: bytes, fmap: FrameMap, big_endian: bool) -> str:
    """The hex digest of every element but the pixel data and its encoding attributes."""
    canonical = _Canonical(stored, fmap, big_endian).dataset(meta, "", True)
    return hashlib.sha256(_dumps(canonical)).hexdigest()


def pixels_digest(
    meta: dict[str, Any], stored: bytes, fmap: FrameMap, transfer_syntax: str
) -> tuple[str, str]:
    """The kind and hex digest of the pixel data (with its encoding attributes)."""
    if f"{PIXEL_DATA:08X}" not in meta:
        return NO_PIXELS, ""
    h = hashlib.sha256()
    h.update(_dumps({k: meta[k] for k in _PIXEL_DESCRIPTION if k in meta}))
    view = memoryview(stored)
    if UID(transfer_syntax).is_encapsulated:
        kind = LOSSLESS if transfer_syntax in LOSSLESS_COMPRESSED else LOSSY
        for frame in fmap.frames:  # each frame's fragments (offset tables aside)
            for offset, length in frame:
                h.update(view[offset : offset + length])
        return kind, h.hexdigest()
    for offset, length in fmap.bulk.get(f"{PIXEL_DATA:08X}", []):
        data = view[offset : offset + length]
        h.update(_swapped(bytes(data), fmap.swap) if fmap.swap else data)
    return NATIVE, h.hexdigest()


def meaning(meta: dict[str, Any], stored: bytes, fmap: FrameMap, transfer_syntax: str) -> Meaning:
    """The meaning digest of a stored object: ``meta`` is its DICOM JSON (bulk values as
    ``BulkDataURI``s whose bytes ``fmap.bulk`` locates in ``stored``)."""
    big_endian = transfer_syntax == ExplicitVRBigEndian
    kind, pixels = pixels_digest(meta, stored, fmap, transfer_syntax)
    return Meaning(attributes_digest(meta, stored, fmap, big_endian), kind, pixels)
