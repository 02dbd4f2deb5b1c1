"""What a stored instance means, as a digest: "the same instance" is the same data set.

Two copies of one SOP Instance are the same when their data sets are, whatever bytes
encode them (issue 12, point 3). The digest is computed once, at ingest, over the data set's
elements decoded and normalised, so that equal meaning gives equal digests and the index
compares them as strings:

- left out: File Meta Information (group 0002), group lengths (gggg,0000), Data Set
  Trailing Padding (FFFC,FFFC) and, in the attribute part, how pixel data is encoded
  (see below);
- text values (PS3.5 6.2) as decoded text, their padding stripped (trailing spaces and
  NULs; leading spaces too where the VR makes them insignificant), several values joined
  by ``\\``;
- every other value as its little-endian bytes: numbers packed, OW/OL/OF/OD/OV swapped
  when the data set is big endian, so that explicit/implicit VR and either byte order
  give the same bytes (and a ``US or OW`` value is the same either way);
- sequences as the digests of their items, in order, so item lengths (defined or not)
  do not count.

The pixel data is a separate part: its kind (native, lossless compressed, lossy compressed),
with *Photometric Interpretation* and *Planar Configuration*, and a hash of its bytes
(native, little endian) or of its compressed fragments (offset tables and fragment
boundaries aside). The digest reads ``m1:<attributes>:<kind><pixels>``; two copies whose
attribute parts agree and whose pixel parts are both lossless but differ are compared by
decoding (``webpacs.duplicates``), which ingest does only then, never for every instance.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments
from pydicom.multival import MultiValue
from pydicom.uid import (
    UID,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
    JPEG2000MCLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pydicom.uid import JPEGLossless as JPEGLosslessP14

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
_TRAILING_PADDING = 0xFFFCFFFC
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM"}
    | {"UC", "UI", "UR", "UT"}
)
#: Text VRs whose leading spaces are significant (PS3.5 Table 6.2-1).
_LEADING_KEPT = frozenset({"LT", "ST", "UT", "UC", "UR", "PN"})
_NUMBER_FORMATS = {
    "US": "H",
    "SS": "h",
    "UL": "I",
    "SL": "i",
    "UV": "Q",
    "SV": "q",
    "FL": "f",
    "FD": "d",
}
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
        return self.kind in (NATIVE, LOSSLESS)


def _swapped(data: bytes, width: int) -> bytes:
    """``data`` with each ``width``-byte word reversed (a trailing odd byte kept)."""
    if width < 2 or len(data) < width:
        return data
    whole = len(data) - len(data) % width
    out = bytearray(data)
    for i in range(width):
        out[i:whole:width] = data[width - 1 - i : whole : width]
    return bytes(out)


def _many(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple | MultiValue) else [value]


def _text(vr: str, value: object) -> bytes:
    keep_leading = vr in _LEADING_KEPT
    parts = []
    for v in _many(value):
        t = "" if v is None else str(v)
        parts.append(t.rstrip(" \0") if keep_leading else t.strip(" \0"))
    return "\\".join(parts).encode("utf-8", "surrogateescape")


def _value(elem: DataElement, big_endian: bool) -> bytes:
    """The canonical bytes of one non-sequence value."""
    value, vr = elem.value, elem.VR
    if value is None or (isinstance(value, str | bytes | list | MultiValue) and not value):
        return b""
    if vr in _TEXT_VRS:
        return _text(vr, value)
    if isinstance(value, bytes | bytearray):
        if vr == "UN":  # a private value whose VR one copy knew and the other did not
            return bytes(value).rstrip(b" \0")
        return _swapped(bytes(value), _WORDS.get(vr, 0)) if big_endian else bytes(value)
    values = _many(value)
    if vr == "AT":
        return b"".join(struct.pack("<HH", int(v) >> 16, int(v) & 0xFFFF) for v in values)  # type: ignore[call-overload]
    fmt = _NUMBER_FORMATS.get(vr)
    if fmt is not None:
        return struct.pack(f"<{len(values)}{fmt}", *values)
    return _text(vr, value)  # anything else: as text


def _walk(ds: Dataset, big_endian: bool, top: bool) -> bytes:
    """The digest of the elements of ``ds`` (a data set or a sequence item)."""
    h = hashlib.sha256()
    for tag in sorted(ds.keys()):
        t = int(tag)
        if t >> 16 in (0x0000, 0x0002) or t & 0xFFFF == 0 or t == _TRAILING_PADDING:
            continue
        if top and (t == PIXEL_DATA or t in PIXEL_ENCODING):
            continue
        elem = ds[t]
        if elem.VR == "SQ":
            items = b"".join(_walk(item, big_endian, False) for item in elem.value or [])
            body = b"SQ" + items
        else:
            body = _value(elem, big_endian)
        h.update(struct.pack("<IQ", t, len(body)))
        h.update(body)
    return h.digest()


def _big_endian(ds: Dataset) -> bool:
    little = ds.original_encoding[1]
    return little is False


def attributes_digest(ds: Dataset) -> str:
    """The hex digest of every element but the pixel data and its encoding attributes."""
    return _walk(ds, _big_endian(ds), top=True).hex()


def pixels_digest(ds: Dataset, transfer_syntax: str, swap: int) -> tuple[str, str]:
    """The kind and hex digest of the pixel data; ``swap`` is the word size a big-endian
    native value is stored swapped with (``FrameMap.swap``), 0 for none."""
    if PIXEL_DATA not in ds:
        return NO_PIXELS, ""
    h = hashlib.sha256()
    for tag in sorted(PIXEL_ENCODING & {0x00280004, 0x00280006}):
        body = _value(ds[tag], False) if tag in ds else b""
        h.update(struct.pack("<IQ", tag, len(body)) + body)
    data = ds[PIXEL_DATA].value or b""
    if getattr(ds[PIXEL_DATA], "is_undefined_length", False):
        kind = LOSSLESS if transfer_syntax in LOSSLESS_COMPRESSED else LOSSY
        fragments = generate_fragments(data)
        next(fragments, None)  # the Basic Offset Table item
        for fragment in fragments:
            h.update(fragment)
        return kind, h.hexdigest()
    h.update(_swapped(data, swap) if swap else data)
    return NATIVE, h.hexdigest()


def meaning(ds: Dataset, transfer_syntax: str, swap: int = 0) -> Meaning:
    """The meaning digest of a data set read from a stored object in ``transfer_syntax``."""
    kind, pixels = pixels_digest(ds, transfer_syntax, swap)
    return Meaning(attributes_digest(ds), kind, pixels)
