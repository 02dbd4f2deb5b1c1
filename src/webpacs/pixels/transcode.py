"""Transcoding on retrieve (PS3.18 8.7.3.5) and recompression, on pydicom's pixel framework.

Frames are decoded and re-encoded one at a time (:func:`transcode_frames` is a generator),
so a response streams and never holds more than one decoded frame. An instance is rewritten
whole (:func:`transcode_instance`): every element is kept except the transfer syntax, the
pixel data and the pixel description PS3.5 ties to it: Photometric Interpretation (RGB after
YBR decoding), Planar Configuration (interleaved), and the Lossy Image Compression
attributes (PS3.3 C.7.6.1.1.5) when the new encoding is lossy. The SOP Instance UID stays.

Decoded pixels follow pydicom's conventions (``as_rgb``: YBR becomes RGB), so a client
gets what ``Dataset.pixel_array`` of the original gives.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, encapsulate_extended
from pydicom.multival import MultiValue
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.encoders.base import get_encoder
from pydicom.uid import UID

from webpacs.errors import NotAcceptable
from webpacs.pixels.codecs import (
    LOSSY_METHOD,
    LOSSY_OUTPUT,
    NATIVE_INSTANCE_SYNTAXES,
    PixelDescription,
    can_produce,
    codec_panics,
)
from webpacs.pixels.families import RECOMPRESS_TARGET

__all__ = [
    "decode_frame",
    "encode_frame",
    "recompress_instance",
    "transcode_frames",
    "transcode_instance",
]

#: Above this many bytes of encoded frames, an instance gets an Extended Offset Table.
_BOT_LIMIT = 2**32 - 1


def decode_frame(frame: bytes, stored: str, desc: PixelDescription) -> np.ndarray:
    """One frame (its bytes as stored: native, or the codestream of its fragments) as an array
    shaped ``(rows, columns[, samples])``, colour as RGB."""
    uid = UID(stored)
    src = encapsulate([frame]) if uid.is_encapsulated else frame
    opts: dict[str, Any] = desc.options() | {"number_of_frames": 1, "as_rgb": True}
    with codec_panics():
        arr, _ = get_decoder(uid).as_array(src, index=0, **opts)
    return arr


def _native_bytes(arr: np.ndarray) -> bytes:
    """Pixels as native little-endian bytes, samples interleaved (PS3.5 8.1.1)."""
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def encode_frame(arr: np.ndarray, wanted: str, desc: PixelDescription) -> bytes:
    """A decoded frame (``desc`` describes it) encoded in ``wanted``."""
    if wanted in NATIVE_INSTANCE_SYNTAXES:
        return _native_bytes(arr)
    opts = desc.options() | {"number_of_frames": 1, "use_mct": False}
    opts |= LOSSY_OUTPUT.get(wanted, {})
    return bytes(get_encoder(UID(wanted)).encode(arr, **opts))


def transcode_frames(
    frames: Iterable[bytes], stored: str, wanted: str, desc: PixelDescription
) -> Iterator[bytes]:
    """Each frame of ``frames`` (as stored in ``stored``) re-encoded in ``wanted``, lazily."""
    out = desc.decoded()
    for frame in frames:
        yield encode_frame(decode_frame(frame, stored, desc), wanted, out)


def _values(ds: Dataset, keyword: str) -> list[Any]:
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, MultiValue) else [value]


def _lossy_attributes(ds: Dataset, wanted: str, native: int, encoded: int) -> None:
    """Lossy Image Compression, Ratio and Method (PS3.3 C.7.6.1.1.5): values accumulate."""
    ds.LossyImageCompression = "01"
    ratio = f"{native / max(encoded, 1):.4g}"[:16]
    ds.LossyImageCompressionRatio = [*_values(ds, "LossyImageCompressionRatio"), ratio]
    ds.LossyImageCompressionMethod = [
        *_values(ds, "LossyImageCompressionMethod"),
        LOSSY_METHOD[wanted],
    ]


def _frame_arrays(ds: Dataset) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    decoder = get_decoder(ds.file_meta.TransferSyntaxUID)
    with codec_panics():
        yield from decoder.iter_array(ds, as_rgb=True)


def _recode_pixels(ds: Dataset, wanted: str, desc: PixelDescription) -> None:
    """Replace the pixel data of ``ds`` by its frames re-encoded in ``wanted``."""
    out = desc.decoded()
    encoded: list[bytes] = []
    native_size = 0
    for arr, props in _frame_arrays(ds):
        out = desc.decoded()
        native_size += arr.nbytes
        encoded.append(encode_frame(arr, wanted, out))
        pi = str(props.get("photometric_interpretation", out.photometric_interpretation))
    ds.PhotometricInterpretation = pi
    if out.samples_per_pixel > 1:
        ds.PlanarConfiguration = 0
    for kw in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if kw in ds:
            del ds[kw]
    elem = ds["PixelData"]
    if wanted in NATIVE_INSTANCE_SYNTAXES:
        value = b"".join(encoded)
        elem.value = value + b"\0" * (len(value) % 2)
        elem.VR = "OB" if out.bits_allocated <= 8 else "OW"
        elem.is_undefined_length = False
    else:
        if sum(len(e) for e in encoded) + 8 * len(encoded) < _BOT_LIMIT:
            elem.value = encapsulate(encoded, has_bot=len(encoded) > 1)
        else:
            elem.value, offsets, lengths = encapsulate_extended(encoded)
            ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = offsets, lengths
        elem.VR = "OB"
        elem.is_undefined_length = True
    if wanted in LOSSY_OUTPUT:
        _lossy_attributes(ds, wanted, native_size, sum(len(e) for e in encoded))


def transcode_instance(
    data: bytes, stored: str, wanted: str, desc: PixelDescription | None
) -> bytes:
    """The Part 10 object ``data`` (stored in ``stored``) rewritten in ``wanted``.

    Raises :class:`NotAcceptable` when the codecs cannot produce ``wanted``.
    """
    if wanted == stored:
        return data
    if not can_produce(stored, wanted, desc):
        raise NotAcceptable(f"cannot transcode {stored} to {wanted} with the installed codecs")
    ds = pydicom.dcmread(io.BytesIO(data))
    src = UID(stored)
    rewrite_pixels = desc is not None and (
        src.is_encapsulated or not src.is_little_endian or wanted not in NATIVE_INSTANCE_SYNTAXES
    )
    if rewrite_pixels and desc is not None:
        _recode_pixels(ds, wanted, desc)
    ds.file_meta.TransferSyntaxUID = UID(wanted)
    if not src.is_little_endian:
        for _ in ds.iterall():  # big endian raw elements decoded, to be written little endian
            pass
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def recompress_instance(data: bytes, stored: str, desc: PixelDescription | None) -> bytes | None:
    """``data`` with its pixel data recompressed to JPEG-LS lossless (static-wado's
    ``--recompress``), or ``None`` when it has none or the codecs cannot encode it."""
    if desc is None or not can_produce(stored, RECOMPRESS_TARGET, desc):
        return None
    return transcode_instance(data, stored, RECOMPRESS_TARGET, desc)
