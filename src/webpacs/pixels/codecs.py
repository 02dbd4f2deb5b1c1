"""What the installed codecs can do, asked of pydicom's pixel framework (never guessed).

pydicom 3 keeps one decoder and one encoder per transfer syntax (``pydicom.pixels``), each
backed by plugins (pylibjpeg with its libjpeg, openjpeg and rle plugins, pyjpegls, Pillow,
pydicom's own RLE); a decoder or encoder *is available* when one of its plugins' packages is
installed. :func:`capabilities` lists that table; :func:`can_produce` answers whether pixel
data of a given description, stored in one syntax, can be served in another, checked against
pydicom's encoding profiles (PS3.5 section 8.2: which photometric interpretations, bit depths
and signedness each compressed syntax allows).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.encoders.base import ENCODING_PROFILES, get_encoder
from pydicom.uid import (
    UID,
    AllTransferSyntaxes,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

#: Native syntaxes a transcoded response may be sent in. Frames are the same bytes in each
#: (little endian); instances differ in how the data set is encoded.
NATIVE_FRAME_SYNTAXES = (str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian))
NATIVE_INSTANCE_SYNTAXES = NATIVE_FRAME_SYNTAXES + (str(DeflatedExplicitVRLittleEndian),)

#: Syntaxes whose encoding by webpacs loses information: produced only when a client names
#: them (PS3.18 8.7.3.5.2 leaves the choice to the server; a PACS must not degrade silently).
LOSSY_OUTPUT: dict[str, dict[str, Any]] = {
    # JPEG-LS near-lossless: every sample within +-2 of the original (PS3.5 A.4.3)
    "1.2.840.10008.1.2.4.81": {"jls_error": 2},
    # JPEG 2000 irreversible at 10:1 (PS3.5 A.4.4)
    "1.2.840.10008.1.2.4.91": {"j2k_cr": [10]},
}
#: LossyImageCompressionMethod (0028,2114) of each lossy output (PS3.3 C.7.6.1.1.5.1).
LOSSY_METHOD = {"1.2.840.10008.1.2.4.81": "ISO_14495_1", "1.2.840.10008.1.2.4.91": "ISO_15444_1"}
#: Syntaxes whose stored data may already be lossy (kept as is by recompression).
LOSSY_INPUT = frozenset(
    {
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.203",
    }
)


@functools.cache
def decoder_plugins(ts: str) -> tuple[str, ...]:
    """The installed plugins that decode ``ts`` (``("native",)`` for native syntaxes)."""
    uid = UID(ts)
    if uid.is_transfer_syntax and not uid.is_encapsulated:
        return ("native",)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return ()
    return tuple(decoder.available_plugins) if decoder.is_available else ()


@functools.cache
def encoder_plugins(ts: str) -> tuple[str, ...]:
    """The installed plugins that encode ``ts`` (``("native",)`` for native output)."""
    if ts in NATIVE_INSTANCE_SYNTAXES:
        return ("native",)
    try:
        encoder = get_encoder(UID(ts))
    except NotImplementedError:
        return ()
    return tuple(encoder.available_plugins) if encoder.is_available else ()


def can_decode(ts: str) -> bool:
    return bool(decoder_plugins(ts))


@functools.cache
def encodable_syntaxes() -> tuple[str, ...]:
    """Compressed syntaxes an installed encoder produces, lossless ones first."""
    found = [str(ts) for ts in AllTransferSyntaxes if ts.is_encapsulated and encoder_plugins(ts)]
    return tuple(sorted(found, key=lambda ts: (ts in LOSSY_OUTPUT, found.index(ts))))


def capabilities() -> list[dict[str, Any]]:
    """One row per transfer syntax: name, decoding and encoding plugins, lossy output."""
    rows = []
    for uid in AllTransferSyntaxes:
        dec, enc = decoder_plugins(str(uid)), encoder_plugins(str(uid))
        if dec or enc:
            rows.append(
                {
                    "transferSyntax": str(uid),
                    "name": uid.name,
                    "decode": list(dec),
                    "encode": list(enc),
                    "lossyOutput": str(uid) in LOSSY_OUTPUT,
                }
            )
    return rows


@dataclass(frozen=True)
class PixelDescription:
    """The Image Pixel module attributes (PS3.3 C.7.6.3) a codec needs."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int = 0
    number_of_frames: int = 1

    @classmethod
    def from_json(cls, meta: Mapping[str, Any]) -> PixelDescription | None:
        """From an instance's DICOM JSON; ``None`` when it has no (integer) pixel data."""

        def value(tag: str, default: Any = None) -> Any:
            values = (meta.get(tag) or {}).get("Value")
            return values[0] if values else default

        if "7FE00010" not in meta:
            return None
        rows, columns, bits = value("00280010"), value("00280011"), value("00280100")
        if not (rows and columns and bits):
            return None
        return cls(
            rows=int(rows),
            columns=int(columns),
            samples_per_pixel=int(value("00280002", 1)),
            bits_allocated=int(bits),
            bits_stored=int(value("00280101", bits)),
            pixel_representation=int(value("00280103", 0)),
            photometric_interpretation=str(value("00280004", "MONOCHROME2")),
            planar_configuration=int(value("00280006", 0)),
            number_of_frames=int(value("00280008", 1) or 1),
        )

    @classmethod
    def from_dataset(cls, ds: Any) -> PixelDescription | None:
        """From a pydicom ``Dataset``; ``None`` when it has no (integer) pixel data."""
        if "PixelData" not in ds or not (ds.get("Rows") and ds.get("Columns")):
            return None
        bits = int(ds.get("BitsAllocated") or 0)
        if not bits:
            return None
        return cls(
            rows=int(ds.Rows),
            columns=int(ds.Columns),
            samples_per_pixel=int(ds.get("SamplesPerPixel") or 1),
            bits_allocated=bits,
            bits_stored=int(ds.get("BitsStored") or bits),
            pixel_representation=int(ds.get("PixelRepresentation") or 0),
            photometric_interpretation=str(ds.get("PhotometricInterpretation") or "MONOCHROME2"),
            planar_configuration=int(ds.get("PlanarConfiguration") or 0),
            number_of_frames=int(ds.get("NumberOfFrames") or 1),
        )

    def options(self) -> dict[str, Any]:
        """The keyword options pydicom's decoders and encoders take for a buffer."""
        return {
            "rows": self.rows,
            "columns": self.columns,
            "samples_per_pixel": self.samples_per_pixel,
            "bits_allocated": self.bits_allocated,
            "bits_stored": self.bits_stored,
            "pixel_representation": self.pixel_representation,
            "photometric_interpretation": self.photometric_interpretation,
            "planar_configuration": self.planar_configuration,
            "number_of_frames": self.number_of_frames,
            "pixel_keyword": "PixelData",
        }

    def decoded(self) -> PixelDescription:
        """The description of the decoded pixels: colour as RGB, samples interleaved."""
        pi = self.photometric_interpretation
        if pi.startswith("YBR_"):
            pi = "RGB"  # pydicom converts YBR to RGB (as_rgb), JPEG 2000 undoes its MCT
        return replace(self, photometric_interpretation=pi, planar_configuration=0)


def fits_profile(ts: str, desc: PixelDescription) -> bool:
    """Whether pixels described by ``desc`` may be encoded in ``ts`` (pydicom's profiles)."""
    profiles = ENCODING_PROFILES.get(UID(ts))
    if profiles is None:
        return True
    return any(
        desc.photometric_interpretation == pi
        and desc.samples_per_pixel == spp
        and desc.pixel_representation in px_repr
        and desc.bits_allocated in bits_a
        and desc.bits_stored in bits_s
        for pi, spp, px_repr, bits_a, bits_s in profiles
    )


def can_produce(stored: str, wanted: str, desc: PixelDescription | None) -> bool:
    """Whether pixel data stored in ``stored`` can be served in ``wanted``.

    ``desc`` is ``None`` for an instance without pixel data: any native syntax then.
    """
    if wanted == stored:
        return True
    native = wanted in NATIVE_INSTANCE_SYNTAXES
    if desc is None:
        return native
    if desc.bits_allocated == 1 and not (native and not UID(stored).is_encapsulated):
        return False  # bit-packed data: only a re-encoding of the data set around it
    if not can_decode(stored):
        return False
    if native:
        return True
    out = desc.decoded()
    return (
        bool(encoder_plugins(wanted))
        and fits_profile(wanted, out)
        and _encodes(
            wanted,
            out.photometric_interpretation,
            out.samples_per_pixel,
            out.pixel_representation,
            out.bits_allocated,
            out.bits_stored,
        )
    )


@functools.cache
def _encodes(ts: str, pi: str, samples: int, signed: int, allocated: int, stored: int) -> bool:
    """Whether an installed plugin encodes such pixels: tried once on a tiny image, since
    plugins have limits of their own (e.g. openjpeg: at most 24 bits stored)."""
    if allocated not in (8, 16, 32, 64):
        return False
    dtype = np.dtype(f"{'i' if signed else 'u'}{allocated // 8}")
    size = 64  # openjpeg wants room for its default 6 resolution levels
    arr = np.zeros((size, size, samples) if samples > 1 else (size, size), dtype=dtype)
    opts: dict[str, Any] = {
        "rows": size,
        "columns": size,
        "samples_per_pixel": samples,
        "bits_allocated": allocated,
        "bits_stored": stored,
        "pixel_representation": signed,
        "photometric_interpretation": pi,
        "planar_configuration": 0,
        "number_of_frames": 1,
        "use_mct": False,
    } | LOSSY_OUTPUT.get(ts, {})
    quiet = logging.getLogger("pydicom")
    level = quiet.level
    try:
        quiet.setLevel(logging.CRITICAL)  # a refusal here is an answer, not an error to log
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            get_encoder(UID(ts)).encode(arr, **opts)
    except Exception:  # each plugin raises its own kinds: any failure means "cannot"
        return False
    finally:
        quiet.setLevel(level)
    return True


class CodecPanic(RuntimeError):
    """A codec plugin written in Rust panicked on the data it was given (corrupt data)."""


@contextlib.contextmanager
def codec_panics() -> Iterator[None]:
    """Turn a codec plugin's panic into ``CodecPanic``, an ``Exception``.

    pyo3 hands a panic of Rust code (pylibjpeg-rle's decoder indexing past its buffer on
    corrupt RLE data, found by fuzzing) to Python as ``pyo3_runtime.PanicException``, a
    ``BaseException`` that ``except Exception`` lets through; each pyo3 extension has its
    own class of that name, so it is matched by name. Every decode goes through this.
    """
    try:
        yield
    except BaseException as e:
        if type(e).__name__ != "PanicException":
            raise
        raise CodecPanic(f"the codec failed on this pixel data: {e}") from e
