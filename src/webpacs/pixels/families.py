"""Recompression families, as static-wado's ``mkdicomweb --recompress`` names them.

Each alias names transfer syntaxes whose *stored* pixel data is recompressed to JPEG-LS
lossless (``1.2.840.10008.1.2.4.80``), by ingest (the ``ingest.recompress`` setting) or by
``webpacs static build --recompress``. Only lossless sources are listed: recompressing them
loses nothing, and lossy data is kept as it came. No imports: the settings check these names.
"""

from __future__ import annotations

from collections.abc import Iterable

#: The syntax recompressed pixel data is written in: JPEG-LS Lossless (PS3.5 A.4.3).
RECOMPRESS_TARGET = "1.2.840.10008.1.2.4.80"

RECOMPRESS_FAMILIES: dict[str, tuple[str, ...]] = {
    "uncompressed": (
        "1.2.840.10008.1.2",  # Implicit VR Little Endian
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
        "1.2.840.10008.1.2.1.99",  # Deflated (stored inflated, as Explicit VR Little Endian)
    ),
    "jp2": ("1.2.840.10008.1.2.4.90",),  # JPEG 2000 lossless
    "jpeglossless": ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"),  # JPEG lossless
    "rle": ("1.2.840.10008.1.2.5",),  # RLE lossless
}


#: The families ``server.decodeForAny`` may name: the lossless ones above and JPEG
#: baseline/extended, whose frames it sends decoded to clients that accept any syntax.
DECODE_FAMILIES: dict[str, tuple[str, ...]] = {
    **{k: v for k, v in RECOMPRESS_FAMILIES.items() if k != "uncompressed"},
    "jpeg": ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"),  # JPEG baseline, extended
}


def recompress_syntaxes(aliases: Iterable[str]) -> frozenset[str]:
    """The stored transfer syntaxes the ``aliases`` name (unknown names raise ``KeyError``)."""
    return frozenset(ts for alias in aliases for ts in RECOMPRESS_FAMILIES[alias])


def decode_syntaxes(aliases: Iterable[str]) -> frozenset[str]:
    """The stored transfer syntaxes ``server.decodeForAny``'s ``aliases`` name."""
    return frozenset(ts for alias in aliases for ts in DECODE_FAMILIES[alias])
