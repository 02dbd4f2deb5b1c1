"""DICOM JSON (PS3.18 F.2) straight from the raw elements pydicom read, for speed.

pydicom's ``Dataset.to_json_dict`` converts every element into a ``DataElement``
(validation, hooks, ``MultiValue``s) before encoding it; on a typical CT header that is
most of the time an ingest takes. Here the elements pydicom left raw are encoded from
their bytes for the common cases: binary numbers, and the string VRs in a single-byte or
UTF-8 character set, mirroring pydicom's own value conversion. Everything else (sequences,
bulk data, implicit-VR ambiguity, code extensions, values that do not parse simply) goes
through pydicom, element by element, so the output is pydicom's, only sooner; a test
compares the two on every test file pydicom ships.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from functools import cache
from typing import Any

from pydicom.charset import python_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.valuerep import AMBIGUOUS_VR, BYTES_VR, VR

#: What pydicom's ``to_json_dict`` encodes as binary (InlineBinary or BulkDataURI).
_BINARY = frozenset((BYTES_VR | AMBIGUOUS_VR) - {VR.US_SS})

_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}
_SIZES = {vr: struct.calcsize("<" + f) for vr, f in _NUMBERS.items()}
#: split on backslash after stripping the whole value (pydicom's ``multi_string``)
_MULTI = frozenset({"AS", "CS", "DA", "DT", "TM", "UI"})
#: split on backslash, each value stripped (pydicom's ``convert_text``); charset-dependent
_TEXT = frozenset({"SH", "LO", "UC"})
#: one value, backslash included (pydicom's ``convert_single_string``); charset-dependent
_SINGLE = frozenset({"ST", "LT", "UT"})
#: single-byte (or UTF-8) character sets, where a 0x5C byte is always a backslash
_SIMPLE_CHARSETS = frozenset(
    {"", "ISO_IR 6", "ISO_IR 192"}
    | {f"ISO_IR {n}" for n in (100, 101, 109, 110, 126, 127, 138, 144, 148, 166, 203)}
)
_INT = re.compile(r"\s*[+-]?\d+\s*\Z")
_DECIMAL = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*\Z")
_CHARSET = BaseTag(0x00080005)


class _Slow(Exception):
    """This element needs pydicom's conversion."""


def _charset(ds: Dataset, parent: str | None) -> str | None:
    """Python codec for the text of ``ds`` (``None``: only pydicom can decode it)."""
    raw = ds._dict.get(_CHARSET)
    if raw is None:
        return parent
    value = raw.value
    if isinstance(value, bytes):
        value = value.decode("latin_1").strip(" \0")
    elif not isinstance(value, str):
        return None  # several terms: code extensions
    if value not in _SIMPLE_CHARSETS:
        return None
    return python_encoding[value]


def _strings(vr: str, data: bytes, codec: str | None) -> list[Any] | None:
    """The JSON ``Value`` of a string VR, or ``None`` when it is empty."""
    if vr in _TEXT or vr in _SINGLE or vr == "PN":
        if codec is None:
            raise _Slow
        text = data.decode(codec)
    else:
        text = data.decode("latin_1")
    if vr in _SINGLE:
        text = text.rstrip("\0 ")
        return [text] if text else None
    if vr == "UR":
        text = text.rstrip()
        return [text] if text else None
    if vr == "AE":
        values = [s.strip() for s in text.split("\\")]
    elif vr in _TEXT:
        values = [s.rstrip("\0 ") for s in text.split("\\")]
    elif vr == "DS" or vr == "IS":
        values = (text.strip() if vr == "DS" else text).rstrip(" \0").split("\\")
        if len(values) == 1 and not values[0]:
            return None
        if vr == "IS":
            if not all(_INT.match(v) for v in values):
                raise _Slow
            return [int(v) for v in values]
        if not all(_DECIMAL.match(v) for v in values):
            raise _Slow
        return [float(v) for v in values]
    elif vr == "PN":
        text = text.rstrip("\0 ")
        if "=" in text:
            raise _Slow
        values = text.split("\\")
        if len(values) == 1 and not values[0]:
            return None
        return [{"Alphabetic": v} for v in values]
    elif vr in _MULTI:
        values = text.rstrip(" \0").split("\\")
    else:
        raise _Slow
    if len(values) == 1 and not values[0]:
        return None
    return values


def _raw_json(raw: RawDataElement, vr: str, codec: str | None) -> dict[str, Any]:
    """DICOM JSON of a raw, non-binary, non-sequence element (``_Slow`` when unsure)."""
    data = raw.value
    if data is None or not raw.is_little_endian:
        raise _Slow
    out: dict[str, Any] = {"vr": vr}
    fmt = _NUMBERS.get(vr)
    if fmt is not None:
        size = _SIZES[vr]
        if len(data) % size:
            raise _Slow
        if data:
            out["Value"] = list(struct.unpack(f"<{len(data) // size}{fmt}", data))
        return out
    value = _strings(vr, data, codec)
    if value is not None:
        out["Value"] = value
    return out


@cache
def _implicit_vr(tag: int) -> str | None:
    """The dictionary VR of ``tag`` when it is unambiguous (implicit VR transfer syntaxes)."""
    if tag >> 16 & 1:  # private
        return None
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return None
    return None if " " in vr else vr


def uid_value(ds: Dataset, tag: int) -> str | None:
    """A UI element's value as a string (several values joined by backslashes), or ``None``.

    Read from the raw bytes when pydicom left the element raw, without converting it.
    """
    elem = ds._dict.get(BaseTag(tag))
    if elem is None:
        return None
    if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes):
        return elem.value.decode("latin_1").rstrip("\0 ")
    value = ds[tag].value
    if value is None or isinstance(value, str):
        return value or ""
    return "\\".join(str(v) for v in value)  # MultiValue


#: Called with the element's tag path (``00540016/0/00181072``) and the element; returns
#: the JSON of a binary element (``{"vr": ..., "BulkDataURI" | "InlineBinary": ...}``).
BinaryHandler = Callable[[str, DataElement], dict[str, Any]]


def dataset_json(
    ds: Dataset, binary: BinaryHandler, *, prefix: str = "", codec: str | None = ""
) -> dict[str, Any]:
    """The DICOM JSON of ``ds``; binary VRs and pixel data are encoded by ``binary``."""
    codec = _charset(ds, python_encoding[""] if codec == "" else codec)
    out: dict[str, Any] = {}
    elements = ds._dict  # pydicom keeps read elements raw until first accessed
    for tag in sorted(elements):
        key = f"{tag:08X}"
        raw = elements[tag]
        if isinstance(raw, RawDataElement):
            vr = raw.VR or _implicit_vr(tag)
            if vr is not None and vr not in _BINARY and vr != "SQ":
                try:
                    out[key] = _raw_json(raw, vr, codec)
                    continue
                except (_Slow, UnicodeError, ValueError, struct.error):
                    pass  # pydicom decides, below
        elem = ds[tag]
        if elem.VR == "SQ":
            out[key] = {
                "vr": "SQ",
                "Value": [
                    dataset_json(item, binary, prefix=f"{prefix}{key}/{i}/", codec=codec)
                    for i, item in enumerate(elem.value)
                ],
            }
        elif elem.VR in _BINARY:
            out[key] = binary(prefix + key, elem)
        else:
            out[key] = elem.to_json_dict(None, 0)
    return out
