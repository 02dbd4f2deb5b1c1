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

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragmented_frames
from pydicom.pixels.utils import get_expected_length

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

    def to_json(self) -> dict:
        return {
            "frames": self.frames,
            "bulk": self.bulk,
            "swap": self.swap,
            "aligned": self.aligned,
        }

    @classmethod
    def from_json(cls, d: dict) -> FrameMap:
        return cls(
            frames=[[tuple(s) for s in f] for f in d["frames"]],  # type: ignore[misc]
            bulk={k: [tuple(s) for s in v] for k, v in d["bulk"].items()},  # type: ignore[misc]
            swap=d.get("swap", 0),
            aligned=d.get("aligned", True),
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


def frame_spans(ds: Dataset, stored: bytes) -> tuple[list[list[Span]], bool]:
    """The frames of ``ds`` (read from ``stored``) as spans of ``stored``.

    Returns ``(frames, aligned)``; no pixel data gives ``([], True)``.
    """
    if "PixelData" not in ds:
        return [], True
    elem = ds["PixelData"]
    start = elem.file_tell
    if start is None:
        raise ValueError("pixel data position unknown")
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
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
    # native
    total_bits = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
    total_bits *= int(ds.BitsAllocated)
    if total_bits % 8:
        return [[(start, len(elem.value))]], False
    expected = get_expected_length(ds, unit="bytes")
    if len(elem.value) < expected:
        raise ValueError(
            f"pixel data is truncated: {len(elem.value)} bytes, {expected} expected for"
            f" {nframes} frame(s) of {ds.Rows}x{ds.Columns}"
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
