"""One stored instance -> its static files: metadata (re-thresholded), frames, bulk data.

Ingest already wrote DICOM JSON with binary values over its own threshold replaced by
``BulkDataURI``s and a frame map with the byte spans of every frame and bulk value in the
stored object. Here values are re-inlined or moved to hash-addressed bulk files according to
the static thresholds (public and private tags apart, as ``mkdicomweb`` does), with the bytes
read by range from the stored object; Part 10 is parsed again only for a bulk value the frame
map does not locate.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pydicom
from pydicom.dataset import Dataset

from webpacs.core.framemap import FrameMap, Span
from webpacs.core.media import EXPLICIT_VR_BIG_ENDIAN as BIG_ENDIAN
from webpacs.core.media import EXPLICIT_VR_LITTLE_ENDIAN as EXPLICIT_LE
from webpacs.core.media import UNCOMPRESSED, frame_media_type, swap_bytes
from webpacs.pixels.codecs import PixelDescription, can_produce
from webpacs.pixels.families import RECOMPRESS_TARGET
from webpacs.pixels.transcode import transcode_frames
from webpacs.static.tree import BINARY_LEVEL, bulk_path, gz, instance_dir, one_part
from webpacs.storage.base import Blobs, InstanceRecord

PIXEL_DATA = "7FE00010"
AVAILABLE_TS = "00083002"
OCTET = "application/octet-stream"

#: ``put(tree path, bytes, immutable)``: immutable (hash-addressed) files may be skipped
#: when they already exist.
Put = Callable[[str, bytes, bool], None]


@dataclass(frozen=True)
class Thresholds:
    """Longest binary value (bytes) kept inline; longer ones become bulk data files."""

    public: int = 131074
    private: int = 64

    def limit(self, tag_hex: str) -> int:
        """The limit for a tag (``0009xxxx`` and other odd groups are private)."""
        return self.private if int(tag_hex[:4], 16) % 2 else self.public


def _find_bot(blobs: Blobs, key: str, first: Span, nframes: int) -> bytes:
    """The Basic Offset Table value: the item that ends 8 bytes before the first fragment."""
    end = first[0] - 8
    window = min(end, 8 + 8 * max(nframes, 1) + 4096)
    data = blobs.get_range(key, end - window, window)
    for length in [0, 4 * nframes, *range(0, window - 7, 4)]:
        pos = window - length - 8
        if pos < 0:
            continue
        tag, n = struct.unpack_from("<LL", data, pos)
        if tag == 0xE000FFFE and n == length:
            return data[pos + 8 : window]
    raise ValueError("cannot locate the basic offset table")


@dataclass
class Recompression:
    """static-wado's ``--recompress``: frames of these stored syntaxes are written as JPEG-LS
    lossless; the bytes before and after are counted for the build figures."""

    syntaxes: frozenset[str] = frozenset()
    bytes_in: int = 0
    bytes_out: int = 0


class InstanceWriter:
    """Writes the static files of one instance and returns its canonical metadata.

    Canonical metadata has ``BulkDataURI``s relative to the *study* directory
    (``bulkdata/...``, ``series/X/instances/I/frames``); :func:`~.tree.relocate` adapts them
    to the file that holds them.
    """

    def __init__(
        self,
        blobs: Blobs,
        thresholds: Thresholds,
        put: Put,
        recompression: Recompression | None = None,
    ) -> None:
        self.blobs = blobs
        self.thresholds = thresholds
        self.put = put
        self.recompression = recompression or Recompression()

    def write(self, rec: InstanceRecord) -> dict[str, Any]:
        """Write frames and bulk data of ``rec``; returns its canonical static metadata."""
        self._rec = rec
        self._fmap = FrameMap.from_json(rec.framemap)
        self._ds: Dataset | None = None
        idir = instance_dir(rec.study_uid, rec.series_uid, rec.sop_uid)
        frames_ok = bool(self._fmap.frames) and self._fmap.aligned
        meta: dict[str, Any] = orjson.loads(rec.metadata)
        self._convert(meta, "", frames_ok, f"series/{rec.series_uid}/instances/{rec.sop_uid}")
        ts = rec.transfer_syntax
        desc = PixelDescription.from_json(meta) if frames_ok else None
        if (
            desc is not None
            and ts in self.recompression.syntaxes
            and can_produce(ts, RECOMPRESS_TARGET, desc)
        ):
            self._write_recompressed(idir, desc)
            ts = RECOMPRESS_TARGET
            out = desc.decoded()
            meta["00280004"] = {"vr": "CS", "Value": [out.photometric_interpretation]}
            if "00280006" in meta:
                meta["00280006"] = {"vr": "US", "Value": [0]}
        elif frames_ok:
            self._write_frames(idir)
        if ts == BIG_ENDIAN and self._fmap.swap:
            ts = EXPLICIT_LE  # frames were byte-swapped to little endian
        meta[AVAILABLE_TS] = {"vr": "UI", "Value": [ts]}
        return dict(sorted(meta.items()))

    # -- values ------------------------------------------------------------------------
    def _convert(self, meta: dict[str, Any], prefix: str, frames_ok: bool, rel_idir: str) -> None:
        for key, el in meta.items():
            path = prefix + key
            if el.get("vr") == "SQ":
                for i, item in enumerate(el.get("Value") or []):
                    self._convert(item, f"{path}/{i}/", frames_ok, rel_idir)
            elif "BulkDataURI" in el:
                if path == PIXEL_DATA and frames_ok:
                    el["BulkDataURI"] = f"{rel_idir}/frames"
                    continue
                tagpath = str(el["BulkDataURI"]).split("/bulkdata/", 1)[-1]
                meta[key] = self._place(el["vr"], key, self._value(tagpath), path == PIXEL_DATA)
            elif "InlineBinary" in el:
                data = base64.b64decode(el["InlineBinary"])
                if len(data) > self.thresholds.limit(key):
                    meta[key] = self._place(el["vr"], key, data, False)

    def _place(self, vr: str, key: str, data: bytes, force_bulk: bool) -> dict[str, Any]:
        if not force_bulk and len(data) <= self.thresholds.limit(key):
            return {"vr": vr, "InlineBinary": base64.b64encode(data).decode("ascii")}
        digest = hashlib.sha256(data).hexdigest()
        rel = bulk_path(digest)
        self.put(
            f"studies/{self._rec.study_uid}/{rel}", gz(one_part(data, OCTET), BINARY_LEVEL), True
        )
        return {"vr": vr, "BulkDataURI": rel}

    def _value(self, tagpath: str) -> bytes:
        spans = self._fmap.bulk.get(tagpath)
        if spans is not None:
            return self._read(spans)
        return self._parsed_value(tagpath)

    def _read(self, spans: list[Span]) -> bytes:
        return b"".join(self.blobs.get_range(self._rec.blob_key, o, n) for o, n in spans)

    def _parsed_value(self, tagpath: str) -> bytes:
        """Slow path: a bulk value the frame map does not locate (e.g. not stored as bytes)."""
        if self._ds is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._ds = pydicom.dcmread(io.BytesIO(self.blobs.get(self._rec.blob_key)))
        node: Any = self._ds
        parts = tagpath.split("/")
        for i in range(0, len(parts) - 1, 2):
            node = node[int(parts[i], 16)].value[int(parts[i + 1])]
        elem = node[int(parts[-1], 16)]
        return _element_bytes(elem)

    # -- frames --------------------------------------------------------------------------
    def _native(self, spans: list[Span]) -> bytes:
        """A native frame as little-endian bytes."""
        return swap_bytes(self._read(spans), self._fmap.swap)

    def _write_recompressed(self, idir: str, desc: PixelDescription) -> None:
        """Frames re-encoded as JPEG-LS lossless, one fragment each (PS3.5 A.4)."""
        rec, fmap = self._rec, self._fmap
        native = rec.transfer_syntax in UNCOMPRESSED
        stored = EXPLICIT_LE if native else rec.transfer_syntax
        raw = (self._native(spans) if native else self._read(spans) for spans in fmap.frames)
        ctype = f"{frame_media_type(RECOMPRESS_TARGET)}; transfer-syntax={RECOMPRESS_TARGET}"
        lengths = []
        frames = transcode_frames(raw, stored, RECOMPRESS_TARGET, desc)
        for n, (spans, frame) in enumerate(zip(fmap.frames, frames, strict=True), 1):
            frame += b"\0" * (len(frame) % 2)  # fragments have even lengths
            self.recompression.bytes_in += sum(length for _o, length in spans)
            self.recompression.bytes_out += len(frame)
            lengths.append(len(frame))
            self.put(f"{idir}/frames/{n}.mht", one_part(frame, ctype), False)
        offsets = itertools.accumulate([8 + n for n in lengths[:-1]], initial=0)
        bot = struct.pack(f"<{len(lengths)}L", *offsets)
        layout = {
            "bot": base64.b64encode(bot).decode("ascii"),
            "fragments": [[n] for n in lengths],
        }
        self.put(f"{idir}/fragments.json", orjson.dumps(layout), False)

    def _write_frames(self, idir: str) -> None:
        rec, fmap = self._rec, self._fmap
        ts = rec.transfer_syntax
        if ts in UNCOMPRESSED:
            ctype = f"{OCTET}; transfer-syntax={EXPLICIT_LE}"
            for n, spans in enumerate(fmap.frames, 1):
                data = self._native(spans)
                self.put(
                    f"{idir}/frames/{n}.mht.gz", gz(one_part(data, ctype), BINARY_LEVEL), False
                )
            return
        ctype = f"{frame_media_type(ts)}; transfer-syntax={ts}"
        for n, spans in enumerate(fmap.frames, 1):
            self.put(f"{idir}/frames/{n}.mht", one_part(self._read(spans), ctype), False)
        bot = _find_bot(self.blobs, rec.blob_key, fmap.frames[0][0], len(fmap.frames))
        layout = {
            "bot": base64.b64encode(bot).decode("ascii"),
            "fragments": [[n for _o, n in spans] for spans in fmap.frames],
        }
        self.put(f"{idir}/fragments.json", orjson.dumps(layout), False)


def _element_bytes(elem: Any) -> bytes:
    """The little-endian bytes of a binary element's value, as DICOM JSON would encode it."""
    value = elem.value
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    fmt = {"OF": "<f", "OD": "<d", "OL": "<L", "OV": "<Q", "FL": "<f", "FD": "<d"}.get(elem.VR)
    if fmt is None:
        raise ValueError(f"cannot read bulk value of {elem.tag} ({elem.VR})")
    values = value if isinstance(value, list | tuple | pydicom.multival.MultiValue) else [value]
    return b"".join(struct.pack(fmt, v) for v in values)
