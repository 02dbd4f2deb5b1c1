"""Byte maps of frames and bulk values inside a stored Part 10 object.

Ingest records where each frame (PS3.5 A.4 for encapsulated fragments, PS3.5 8.1.1 for
native pixel data) and each bulk value lies in the stored bytes, so that WADO-RS frames
and bulkdata are range reads of one file, never a re-parse.

A *span* is ``(offset, length)``; a frame is a list of spans (several for an
encapsulated frame split into fragments). ``swap`` > 1 means the stored value is
big endian with that word size and must be byte-swapped for little-endian clients.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragmented_frames

from webpacs.core import numbers
from webpacs.errors import NotFound

Span = tuple[int, int]

_ITEM = 0xFFFEE000
_SEQ_DELIM = 0xFFFEE0DD


@dataclass
class FrameMap:
    """Where the frames and bulk values of one stored instance are."""

    frames: list[list[Span]] = field(default_factory=list)
    bulk: dict[str, list[Span]] = field(default_factory=dict)
    swap: int = 0  # word size to byte-swap frames and OW bulk values with, 0 = none
    aligned: bool = True  # False when native frames do not start on byte boundaries (1-bit)
    # sha256 (hex) of the stored bytes after the File Meta Information: what an integrity
    # check verifies the object against ("" in maps written before it was kept)
    sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        out = {
            "frames": self.frames,
            "bulk": self.bulk,
            "swap": self.swap,
            "aligned": self.aligned,
        }
        return out | {"sha256": self.sha256} if self.sha256 else out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FrameMap:
        return cls(
            frames=[[tuple(s) for s in f] for f in d["frames"]],
            bulk={k: [tuple(s) for s in v] for k, v in d["bulk"].items()},
            swap=d.get("swap", 0),
            aligned=d.get("aligned", True),
            sha256=d.get("sha256", ""),
        )


def _fragments(stored: bytes, start: int) -> list[Span]:
    """Spans of the items (basic offset table first) of an encapsulated value at ``start``."""
    spans: list[Span] = []
    pos = start
    end = len(stored)
    while pos + 8 <= end:
        group, elem, length = struct.unpack_from("<HHL", stored, pos)
        tag = group << 16 | elem
        if tag == _SEQ_DELIM:
            break
        if tag != _ITEM:
            raise ValueError(f"unexpected tag {tag:08X} in encapsulated pixel data at byte {pos}")
        if pos + 8 + length > end:
            raise ValueError("encapsulated pixel data is truncated (a fragment ends past the file)")
        spans.append((pos + 8, length))
        pos += 8 + length
    else:
        raise ValueError("encapsulated pixel data is truncated (no sequence delimiter)")
    return spans


def _value(meta: dict[str, Any], tag: str) -> Any:
    values = (meta.get(tag) or {}).get("Value")
    return values[0] if values else None


def _image(meta: dict[str, Any]) -> tuple[int, int, int, int]:
    """Rows, Columns, Samples per Pixel and Bits Allocated, from the DICOM JSON."""
    rows, columns, bits = (_value(meta, t) for t in ("00280010", "00280011", "00280100"))
    if not (rows and columns and bits):
        raise ValueError("pixel data without Rows, Columns or Bits Allocated")
    return int(rows), int(columns), int(_value(meta, "00280002") or 1), int(bits)


def native_swap(ds: Dataset) -> int:
    """The word size native pixel data read big endian is stored swapped with (0: none):
    the sample size past 8 bits, or 2 for 8-bit samples in OW words (PS3.5 8.1.1)."""
    if ds.original_encoding[1] is not False or "PixelData" not in ds:
        return 0
    if ds["PixelData"].is_undefined_length:
        return 0
    bits = int(ds.get("BitsAllocated", 8) or 8)
    if bits > 8:
        return bits // 8
    return 2 if ds["PixelData"].VR == "OW" else 0


def frame_spans(ds: Dataset, stored: bytes, meta: dict[str, Any]) -> tuple[list[list[Span]], bool]:
    """The frames of ``ds`` (read from ``stored``; ``meta`` its DICOM JSON) as spans of ``stored``.

    Returns ``(frames, aligned)``; no pixel data gives ``([], True)``.
    """
    if "PixelData" not in ds:
        return [], True
    elem = ds["PixelData"]
    start = elem.file_tell
    if start is None:
        raise ValueError("pixel data position unknown")
    nframes = int(_value(meta, "00280008") or 1)
    if elem.is_undefined_length:
        items = _fragments(stored, start)
        if not items:
            return [], True
        fragments = items[1:]
        frames: list[list[Span]] = []
        i = 0
        ext = None
        if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
            ext = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
        for frame in generate_fragmented_frames(
            elem.value, number_of_frames=nframes, extended_offsets=ext
        ):
            n = len(frame)
            if ext is not None:
                # extended offsets may split one fragment; fall back to whole fragments
                n = 1
            frames.append(fragments[i : i + n])
            i += n
        return frames, True
    # native (PS3.5 8.1.1; YBR_FULL_422 has two samples a pixel, PS3.3 C.7.6.3.1.2)
    rows, columns, samples, bits = _image(meta)
    if rows * columns * samples * bits % 8:
        return [[(start, len(elem.value))]], False
    expected = rows * columns * samples * nframes * bits // 8
    if _value(meta, "00280004") == "YBR_FULL_422":
        expected = expected // 3 * 2
    if len(elem.value) < expected:
        raise ValueError(
            f"pixel data is truncated: {len(elem.value)} bytes, {expected} expected for"
            f" {nframes} frame(s) of {rows}x{columns}"
        )
    length = expected // nframes
    return [[(start + k * length, length)] for k in range(nframes)], True


def bulk_spans(bulk: dict[str, DataElement], stored: bytes) -> dict[str, list[Span]]:
    """Spans of ``stored`` holding each bulk value (located by its position, checked by bytes)."""
    out: dict[str, list[Span]] = {}
    for path, elem in bulk.items():
        value = elem.value
        if elem.tag == 0x7FE00010 and elem.is_undefined_length and elem.file_tell is not None:
            out[path] = _fragments(stored, elem.file_tell)[1:]
            continue
        if not isinstance(value, bytes | bytearray):
            continue
        tell = elem.file_tell
        if tell is not None and stored.startswith(value, tell):  # memcmp, no copy
            out[path] = [(tell, len(value))]
            continue
        found = stored.find(value)
        if found >= 0:
            out[path] = [(found, len(value))]
    return out


def frame_numbers(text: str, count: int) -> list[int]:
    """The frame numbers of a ``frames/{list}`` path segment (``1,3,5``, PS3.18 10.4.1.1.4),
    each checked against the instance's ``count`` frames. Numbers are read by
    :func:`webpacs.core.numbers.whole` (an InvalidRequest otherwise; frames count from 1);
    one past the last frame is a NotFound."""
    found = []
    for item in text.split(","):
        n = numbers.whole("frame number", item, low=1)
        if n > count:
            raise NotFound(f"frame {n} does not exist (the instance has {count} frame(s))")
        found.append(n)
    return found
