"""Content negotiation for DICOMweb responses (PS3.18 section 8.7).

The client states what it accepts in the ``Accept`` header or the ``accept`` query parameter
(PS3.18 section 8.3.3.1, which takes precedence); the resource handler lists the
representations it can produce, in its order of preference, as :class:`Representation`
objects; :func:`negotiate` picks one or raises :class:`NotAcceptable`.

Media ranges are matched as PS3.18 section 8.7.3 (DICOM, bulk data and pixel data media types),
8.7.4 (rendered media types) and 8.7.5 (acceptable media types) describe them:

* ``multipart/related; type=X`` matches multipart representations whose part media type
  matches ``X`` (``X`` may be a wildcard, missing means any);
* a single-part range (``application/dicom+json``, ``image/jpeg``, ``image/*``) matches
  single-part representations; ``type/*`` also matches multipart representations whose part
  type has that top-level type, ``multipart/*`` any multipart one; ``*/*`` matches all;
* the ``transfer-syntax`` parameter (section 8.7.3.5.2) selects the transfer syntax; ``*``
  means the stored one, whatever media type ``type`` names (the response names the real one);
  absent means any, except that ``application/octet-stream`` without it means an uncompressed
  transfer syntax (Table 8.7.3-2: the default is Explicit VR Little Endian);
* an offer marked ``named_only`` (a lossy re-encoding) matches only a range whose
  ``transfer-syntax`` names its syntax: lossy data is sent only when the client asks for it;
* ``q=0`` marks a range as not acceptable (RFC 9110 section 12.5.1); a zero range excludes the
  representations it matches unless a more specific positive range matches them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from webpacs.core.multipart import parse_media_type, quote_param, split_header_list
from webpacs.errors import InvalidRequest, NotAcceptable

__all__ = [
    "DICOM",
    "DICOM_JSON",
    "EXPLICIT_VR_BIG_ENDIAN",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "OCTET_STREAM",
    "accepts_gzip",
    "swap_bytes",
    "MEDIA_TYPE_FOR_TRANSFER_SYNTAX",
    "UNCOMPRESSED",
    "MediaRange",
    "Representation",
    "frame_media_type",
    "negotiate",
    "parse_accept",
]

#: The media types of DICOMweb bodies (PS3.18 8.7.3), defined here only.
DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
OCTET_STREAM = "application/octet-stream"

#: Transfer syntaxes by pydicom's names, so that no module spells a UID out.
EXPLICIT_VR_LITTLE_ENDIAN = str(ExplicitVRLittleEndian)
EXPLICIT_VR_BIG_ENDIAN = str(ExplicitVRBigEndian)

UNCOMPRESSED: frozenset[str] = frozenset(
    {
        str(ImplicitVRLittleEndian),
        EXPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_BIG_ENDIAN,  # retired
        str(DeflatedExplicitVRLittleEndian),
    }
)
"""Transfer syntaxes whose pixel data is native (not compressed) (PS3.5 section 10)."""

_OCTET = OCTET_STREAM

MEDIA_TYPE_FOR_TRANSFER_SYNTAX: dict[str, str] = {
    # PS3.18 Table 8.7.3-2: uncompressed bulk data and pixel data
    "1.2.840.10008.1.2": _OCTET,
    "1.2.840.10008.1.2.1": _OCTET,
    "1.2.840.10008.1.2.2": _OCTET,
    "1.2.840.10008.1.2.1.99": _OCTET,
    "1.2.840.10008.1.2.1.98": _OCTET,  # Encapsulated Uncompressed Explicit VR Little Endian
    # PS3.18 Table 8.7.3-3: compressed single-frame pixel data
    "1.2.840.10008.1.2.4.50": "image/jpeg",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51": "image/jpeg",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57": "image/jpeg",  # JPEG Lossless (Process 14)
    "1.2.840.10008.1.2.4.70": "image/jpeg",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": "image/jls",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "image/jls",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90": "image/jp2",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": "image/jp2",  # JPEG 2000
    "1.2.840.10008.1.2.4.92": "image/jpx",  # JPEG 2000 Part 2 Multi-component Lossless
    "1.2.840.10008.1.2.4.93": "image/jpx",  # JPEG 2000 Part 2 Multi-component
    "1.2.840.10008.1.2.4.201": "image/jphc",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202": "image/jphc",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203": "image/jphc",  # HTJ2K
    "1.2.840.10008.1.2.5": "image/dicom-rle",  # RLE Lossless
    # PS3.18 Table 8.7.3-4: compressed multi-frame (video) pixel data
    "1.2.840.10008.1.2.4.100": "video/mpeg",  # MPEG2 Main Profile / Main Level
    "1.2.840.10008.1.2.4.100.1": "video/mpeg",  # fragmentable
    "1.2.840.10008.1.2.4.101": "video/mpeg",  # MPEG2 Main Profile / High Level
    "1.2.840.10008.1.2.4.101.1": "video/mpeg",
    "1.2.840.10008.1.2.4.102": "video/mp4",  # MPEG-4 AVC/H.264 High Profile / Level 4.1
    "1.2.840.10008.1.2.4.102.1": "video/mp4",
    "1.2.840.10008.1.2.4.103": "video/mp4",  # ... BD-compatible
    "1.2.840.10008.1.2.4.103.1": "video/mp4",
    "1.2.840.10008.1.2.4.104": "video/mp4",  # ... for 2D Video
    "1.2.840.10008.1.2.4.104.1": "video/mp4",
    "1.2.840.10008.1.2.4.105": "video/mp4",  # ... for 3D Video
    "1.2.840.10008.1.2.4.105.1": "video/mp4",
    "1.2.840.10008.1.2.4.106": "video/mp4",  # ... Stereo High Profile / Level 4.2
    "1.2.840.10008.1.2.4.106.1": "video/mp4",
    "1.2.840.10008.1.2.4.107": "video/H265",  # HEVC/H.265 Main Profile / Level 5.1
    "1.2.840.10008.1.2.4.108": "video/H265",  # HEVC/H.265 Main 10 Profile / Level 5.1
}
"""Media type of a frame (or of the pixel data of a video) in each transfer syntax
(PS3.18 Tables 8.7.3-2, 8.7.3-3 and 8.7.3-4)."""


def frame_media_type(transfer_syntax: str) -> str:
    """The frame media type for ``transfer_syntax`` (PS3.18 Table 8.7.3-2/-3/-4);
    ``application/octet-stream`` for transfer syntaxes the tables do not list."""
    return MEDIA_TYPE_FOR_TRANSFER_SYNTAX.get(transfer_syntax, _OCTET)


@dataclass(frozen=True)
class Representation:
    """A representation a resource can be sent in (PS3.18 section 8.7)."""

    media_type: str
    """e.g. ``application/dicom``, ``image/jpeg``, ``application/dicom+json``."""
    transfer_syntax: str | None = None
    """The transfer syntax UID, or ``None`` where it does not apply (JSON, rendered)."""
    multipart: bool = False
    """``True``: sent as ``multipart/related; type=<media_type>`` (PS3.18 section 8.7.2)."""
    named_only: bool = False
    """``True``: chosen only by a range naming its transfer syntax (lossy transcoding)."""

    def describe(self) -> str:
        """The media type with parameters, as a client would ask for it."""
        text = self.media_type
        if self.multipart:
            text = f'multipart/related; type="{text}"'
        if self.transfer_syntax is not None:
            text += f"; transfer-syntax={quote_param(self.transfer_syntax)}"
        return text


@dataclass(frozen=True)
class MediaRange:
    """One element of an ``Accept`` value (RFC 9110 section 12.5.1)."""

    media_type: str
    params: dict[str, str]
    q: float

    @property
    def specificity(self) -> int:
        """Concrete type and subtype, and each parameter, make a range more specific."""
        main, _, sub = self.media_type.partition("/")
        return (main != "*") + (sub != "*") + len(self.params)


def _parse_q(value: str) -> float:
    try:
        q = float(value)
    except ValueError:
        return 1.0  # a malformed weight is ignored
    if q != q or q > 1.0:  # NaN or out of range
        return 1.0
    return max(q, 0.0)


def _parse_ranges(header: str | None) -> list[MediaRange]:
    if header is None or not header.strip():
        return [MediaRange("*/*", {}, 1.0)]
    ranges: list[MediaRange] = []
    for item in split_header_list(header):
        media_type, params = parse_media_type(item)
        q = _parse_q(params.pop("q")) if "q" in params else 1.0
        if media_type.startswith("*/") and media_type != "*/*":
            raise InvalidRequest(f"invalid media range {item!r}")
        ranges.append(MediaRange(media_type, params, q))
    ranges.sort(key=lambda r: -r.q)  # stable: equal weights keep the client's order
    return ranges


def parse_accept(header: str | None) -> list[tuple[str, dict[str, str], float]]:
    """Parse an ``Accept`` value into ``(media range, parameters, q)``, highest ``q`` first,
    the client's order kept among equal weights (RFC 9110 section 12.5.1).

    A missing or empty header means ``*/*``. A malformed ``q`` counts as 1. A malformed
    media range raises :class:`InvalidRequest`.
    """
    return [(r.media_type, r.params, r.q) for r in _parse_ranges(header)]


def _type_matches(pattern: str, media_type: str) -> bool:
    """``pattern`` (``*/*``, ``image/*`` or concrete) matches ``media_type``."""
    if pattern == "*/*":
        return True
    main, _, sub = pattern.partition("/")
    if sub == "*":
        return media_type.partition("/")[0] == main
    return pattern == media_type


def _part_type(params: dict[str, str]) -> str:
    """The ``type`` parameter of a multipart range, as a media type pattern."""
    value = params.get("type", "").split(";", 1)[0].strip().lower()
    return value or "*/*"


def _same_shape(asked: str, offer: Representation) -> bool:
    """A multipart range matches multipart offers, a single-part range single-part ones."""
    if asked == "*/*":
        return True
    return offer.multipart == (asked in ("multipart/related", "multipart/*"))


def _matches(rng: MediaRange, offer: Representation) -> bool:
    if offer.named_only and rng.params.get("transfer-syntax") != offer.transfer_syntax:
        return False
    offer_type = offer.media_type.lower()
    asked = rng.media_type
    if asked == "*/*":
        named = None
        ok = True
    elif asked in ("multipart/related", "multipart/*"):
        named = _part_type(rng.params)
        ok = offer.multipart and _type_matches(named, offer_type)
    elif asked.endswith("/*"):
        named = asked
        ok = _type_matches(asked, offer_type)
    else:
        named = asked
        ok = not offer.multipart and asked == offer_type
    ts = rng.params.get("transfer-syntax")
    if ts == "*" and offer.transfer_syntax is not None and _same_shape(asked, offer):
        # "*" asks for the representation as stored, whatever ``type`` names: each part's
        # Content-Type then names the real media type and transfer syntax (PS3.18 8.7.3.5.2).
        # Image loaders (cornerstone's) send type=application/octet-stream; transfer-syntax=*.
        return True
    if not ok:
        return False
    if ts is None:
        if named == _OCTET:
            return offer.transfer_syntax is None or offer.transfer_syntax in UNCOMPRESSED
        return True
    return ts == "*" or ts == offer.transfer_syntax


def negotiate(
    accept_header: str | None,
    offers: Sequence[Representation],
    *,
    query_accept: str | None = None,
) -> Representation:
    """Choose the representation to send (PS3.18 section 8.7.5 and section 8.3.3.1).

    ``offers`` are in the server's order of preference. The ``accept`` query parameter
    (comma separated, ``query_accept``) takes precedence over the ``Accept`` header when
    given. The client's ranges are tried in ``q`` order; for each, the first matching offer
    wins. Raises :class:`NotAcceptable` naming what was asked and what is available.
    """
    asked = query_accept if query_accept and query_accept.strip() else accept_header
    ranges = _parse_ranges(asked)
    refused = [r for r in ranges if r.q <= 0.0]
    for rng in ranges:
        if rng.q <= 0.0:
            break
        for offer in offers:
            if not _matches(rng, offer):
                continue
            if any(_matches(z, offer) and z.specificity >= rng.specificity for z in refused):
                continue
            return offer
    available = ", ".join(o.describe() for o in offers) or "nothing"
    raise NotAcceptable(
        f"none of the requested media types ({asked or '*/*'}) can be provided; "
        f"available: {available}"
    )


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether ``Content-Encoding: gzip`` is acceptable (RFC 9110 12.5.3).

    It is when the ``gzip`` entry has a ``q`` above 0 or, with no ``gzip`` entry, a ``*``
    entry does; without any of them it is not (this server then sends identity).
    """
    weights: dict[str, float] = {}
    for item in split_header_list(accept_encoding):
        name, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0  # a malformed weight is no acceptance
        weights.setdefault(name.lower(), q)
    q = weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0)))
    return q > 0


def swap_bytes(data: bytes, width: int) -> bytes:
    """``data`` with the byte order of every ``width``-byte word reversed (big <-> little
    endian native pixel data, PS3.5 A.3)."""
    if width <= 1:
        return data
    out = bytearray(len(data))
    n = len(data) - len(data) % width
    for i in range(width):
        out[i:n:width] = data[width - 1 - i : n : width]
    out[n:] = data[n:]
    return bytes(out)
