"""Render a decoded frame for display: the grayscale and color pipelines of PS3.3 C.11/C.7.6.3,
then crop, scale and encode with Pillow (PS3.18 8.3.5 rendered media types).

Grayscale: Modality LUT or rescale (``apply_modality_lut``), then the VOI stage: the window
the client asked for, else the data set's VOI LUT (``apply_voi_lut``), else its window, else
the frame's minimum and maximum; MONOCHROME1 is inverted after it. Color: PALETTE COLOR
through its LUTs (``apply_color_lut``); YBR is converted to RGB by the decoder; samples
deeper than 8 bits are scaled down. The window functions are PS3.3 C.11.2.1.2, producing
0..255 directly.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut

from webpacs.errors import InvalidRequest, NotImplementedFeature
from webpacs.pixels.frames import Frame

JPEG = "image/jpeg"
PNG = "image/png"
GIF = "image/gif"
FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
DEFAULT_QUALITY = 90
#: The largest image rendered (a viewport is scaled to fit within it): 64 megapixels, and
#: no side longer than JPEG's 65,500.
MAX_PIXELS = 2**26
MAX_SIDE = 65_500


@dataclass(frozen=True)
class Window:
    """A VOI window (PS3.3 C.11.2.1.2): center, width and function."""

    center: float
    width: float
    function: str = "LINEAR"


@dataclass(frozen=True)
class Region:
    """The part of the frame to render: top left ``x, y`` and ``width, height`` in pixels, or
    as fractions of the frame when ``fraction`` (WADO-URI ``region``); a negative width or
    height takes the same region, flipped horizontally or vertically."""

    x: float
    y: float
    width: float
    height: float
    fraction: bool = False


@dataclass(frozen=True)
class Rendering:
    """How to render: the window, the region, the output box and the encoding."""

    media_type: str = JPEG
    window: Window | None = None
    region: Region | None = None
    width: int | None = None  # the viewport: output scaled to fit, aspect ratio kept
    height: int | None = None
    quality: int = DEFAULT_QUALITY


# -- the imaging pipeline -----------------------------------------------------------------
def apply_window(arr: np.ndarray, window: Window) -> np.ndarray:
    """Map modality values to 0..255 with ``window`` (PS3.3 C.11.2.1.2.1 and C.11.2.1.3.1).

    The linear functions are written as one line clipped to 0..255, which is the standard's
    piecewise definition (the line meets 0 and 255 exactly at its thresholds).
    """
    x = np.asarray(arr, dtype=np.float64)
    c, w = window.center, window.width
    if window.function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if window.function == "LINEAR_EXACT":
        y = (x - c) * (255.0 / w) + 127.5
    elif w > 1:
        y = (x - (c - 0.5)) * (255.0 / (w - 1)) + 127.5
    else:  # width 1: a threshold
        y = np.where(x > c - 0.5, 255.0, 0.0)
    return np.clip(y, 0.0, 255.0)


def dataset_window(ds: Dataset) -> Window | None:
    """The first window the data set holds (Window Center/Width, VOI LUT Function)."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    center, width = ds["WindowCenter"], ds["WindowWidth"]
    c = center.value[0] if center.VM > 1 else center.value
    w = width.value[0] if width.VM > 1 else width.value
    if c is None or w is None or float(w) <= 0:
        return None
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    return Window(float(c), float(w), function if function in FUNCTIONS else "LINEAR")


def _voi_lut(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """The data set's VOI LUT (``apply_voi_lut``), its output range mapped to 0..255."""
    out: np.ndarray = apply_voi_lut(arr, ds, prefer_lut=True)
    bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
    return _full_scale(out, bits)


def _min_max(values: np.ndarray) -> np.ndarray:
    """``values`` stretched from their minimum and maximum to 0..255."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.float64)
    return (values.astype(np.float64) - lo) * (255.0 / (hi - lo))


def _grey_values(values: np.ndarray, ds: Dataset, window: Window | None) -> np.ndarray:
    """The VOI stage and MONOCHROME1 inversion on modality values: 0..255 (float)."""
    if window is not None:
        out = apply_window(values, window)
    elif ds.get("VOILUTSequence"):
        out = _voi_lut(values, ds)
    elif (own := dataset_window(ds)) is not None:
        out = apply_window(values, own)
    else:
        out = _min_max(values)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        out = 255.0 - out
    return out


def _full_scale(values: np.ndarray, bits: int) -> np.ndarray:
    """``values`` of a ``bits``-bit range as floats on 0..255."""
    out: np.ndarray = values.astype(np.float64) * (255.0 / (2**bits - 1))
    return out


def _to_uint8(values: np.ndarray) -> np.ndarray:
    clipped: np.ndarray = np.clip(np.rint(values), 0, 255)
    return clipped.astype(np.uint8)


def grey(frame: Frame, window: Window | None) -> np.ndarray:
    """A monochrome frame as uint8 display values.

    Stored values of up to 16 bits go through the pipeline once per possible value (from
    the frame's minimum to its maximum) and the frame is then one table lookup; other data
    (floating point, 32 bits) goes through it pixel by pixel. Without a window, the output
    spans the modality values of that stored range.
    """
    px, ds = frame.pixels, frame.ds
    if px.dtype.kind not in "iu" or px.dtype.itemsize > 2:
        return _to_uint8(_grey_values(apply_modality_lut(px, ds), ds, window))
    lo, hi = int(px.min()), int(px.max())
    index = px.astype(np.intp) - lo
    domain = np.arange(lo, hi + 1, dtype=np.int32 if px.dtype.kind == "i" else np.uint32)
    values = apply_modality_lut(domain.astype(px.dtype), ds)
    table = _to_uint8(_grey_values(values, ds, window))
    return table[index]


def color(frame: Frame) -> np.ndarray:
    """A color frame as RGB 0..255 values (float)."""
    ds = frame.ds
    if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
        rgb: np.ndarray = apply_color_lut(frame.pixels, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return _full_scale(rgb, bits)
    bits = int(ds.get("BitsStored", 8) or 8)
    if bits <= 8:
        return frame.pixels.astype(np.float64)
    return _full_scale(frame.pixels, bits)


def to_8bit(frame: Frame, window: Window | None = None) -> np.ndarray:
    """The frame ready for display: uint8, (rows, columns) or (rows, columns, 3).

    ``window`` applies to monochrome frames; color frames are shown as they are.
    """
    photometric = str(frame.ds.get("PhotometricInterpretation", "MONOCHROME2"))
    try:
        if photometric.startswith("MONOCHROME"):
            return grey(frame, window)
        return _to_uint8(color(frame))
    except (ValueError, KeyError, AttributeError, IndexError, TypeError) as e:
        raise NotImplementedFeature(
            f"cannot render {photometric} pixel data with these attributes: {e}"
        ) from e


# -- geometry and encoding ----------------------------------------------------------------
def _crop(img: Image.Image, region: Region) -> Image.Image:
    x, y, w, h = region.x, region.y, region.width, region.height
    if region.fraction:
        x, w = x * img.width, w * img.width
        y, h = y * img.height, h * img.height
    box = (
        max(0, math.floor(x)),
        max(0, math.floor(y)),
        min(img.width, math.ceil(x + abs(w))),
        min(img.height, math.ceil(y + abs(h))),
    )
    if box[2] <= box[0] or box[3] <= box[1]:
        name = "region" if region.fraction else "viewport"  # WADO-URI's, or WADO-RS's
        raise InvalidRequest(
            f"{name}: the region {region} lies outside the {img.width}x{img.height} frame"
        )
    img = img.crop(box)
    if w < 0:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if h < 0:
        img = img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return img


def fit(size: tuple[int, int], width: int | None, height: int | None) -> tuple[int, int]:
    """``size`` scaled to fit in ``width`` x ``height`` (either may be None), aspect kept."""
    w, h = size
    scales = [s for s in (width / w if width else None, height / h if height else None) if s]
    if not scales:
        return size
    s = min(scales)
    out = max(1, round(w * s)), max(1, round(h * s))
    if out[0] * out[1] > MAX_PIXELS or max(out) > MAX_SIDE:
        raise InvalidRequest(
            f"viewport (or rows and columns): a {out[0]}x{out[1]} image is more than this"
            f" server renders ({MAX_PIXELS // 2**20} megapixels, {MAX_SIDE} pixels a side)"
        )
    return out


def to_image(pixels: np.ndarray, rendering: Rendering) -> Image.Image:
    """A uint8 frame as a Pillow image, cropped and scaled as ``rendering`` says."""
    img = Image.fromarray(pixels, "L" if pixels.ndim == 2 else "RGB")
    if rendering.region is not None:
        img = _crop(img, rendering.region)
    size = fit(img.size, rendering.width, rendering.height)
    if size != img.size:
        img = img.resize(size, Image.Resampling.LANCZOS)
    return img


def encode(images: list[Image.Image], rendering: Rendering) -> bytes:
    """Encode as ``rendering.media_type``; several images only as an animated GIF."""
    out = io.BytesIO()
    if rendering.media_type == PNG:
        images[0].save(out, "PNG", compress_level=6)
    elif rendering.media_type == GIF:
        images[0].save(out, "GIF", save_all=len(images) > 1, append_images=images[1:], loop=0)
    else:
        images[0].save(out, "JPEG", quality=rendering.quality)
    return out.getvalue()


def render(frame: Frame, rendering: Rendering) -> bytes:
    """One frame, rendered and encoded."""
    return encode([to_image(to_8bit(frame, rendering.window), rendering)], rendering)
