"""Whether two stored objects hold the same pixels, decoded (pydicom's pixel framework).

Used only when two copies of one instance agree in every attribute and differ in how
their pixel data is encoded, both losslessly (``webpacs.duplicates``): a native copy and a
JPEG-LS, RLE or JPEG 2000 lossless one, or native copies with another planar configuration.
Frames are decoded one at a time, in step, and the comparison stops at the first that
differs; color is compared as RGB (``as_rgb``), so YBR_RCT/ICT and planar layouts agree.
"""

from __future__ import annotations

import io
import logging
import warnings
from itertools import zip_longest

import numpy as np
from pydicom.pixels.utils import iter_pixels

from webpacs.pixels.codecs import codec_panics

log = logging.getLogger("webpacs.pixels")


def same_pixels(a: bytes, b: bytes) -> bool:
    """Whether the Part 10 objects ``a`` and ``b`` decode to equal frames (False when either
    cannot be decoded here: not knowing is not "the same")."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frames = zip_longest(
                iter_pixels(io.BytesIO(a), as_rgb=True), iter_pixels(io.BytesIO(b), as_rgb=True)
            )
            with codec_panics():
                for fa, fb in frames:
                    if fa is None or fb is None or not np.array_equal(fa, fb):
                        return False
    except Exception as e:  # a missing or refusing decoder: the copies stay different
        log.info("pixel data not compared (%s: %s)", type(e).__name__, e)
        return False
    return True
