"""Reference renderings computed with pydicom's LUT functions, for the rendered-image tests."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi_lut,
    convert_color_space,
    pixel_array,
)

from tests.conftest import data_file


def read(name: str) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(data_file(name), force=True)


def _eight_bit_voi(center: float, width: float, function: str = "LINEAR") -> Dataset:
    """A VOI module whose window output range is 0..255 (pydicom's apply_windowing takes
    its output range from Bits Stored and Pixel Representation)."""
    voi = Dataset()
    voi.PhotometricInterpretation = "MONOCHROME2"
    voi.PixelRepresentation = 0
    voi.BitsStored = 8
    voi.WindowCenter = center
    voi.WindowWidth = width
    voi.VOILUTFunction = function
    return voi


def reference(
    ds: Dataset, index: int = 0, window: tuple[float, float, str] | None = None
) -> np.ndarray:
    """Frame ``index`` of ``ds`` for display, as float 0..255, from pydicom's functions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = pixel_array(ds, index=index, raw=True)
    if arr.ndim == 3 and ds.SamplesPerPixel == 1:
        arr = arr[0]
    pi = ds.PhotometricInterpretation
    if pi == "PALETTE COLOR":
        bits = ds.RedPaletteColorLookupTableDescriptor[2]
        return apply_color_lut(arr, ds).astype(float) * 255 / (2**bits - 1)
    if pi.startswith("YBR"):
        return convert_color_space(arr, pi, "RGB").astype(float)
    if pi == "RGB":
        return arr.astype(float) * 255 / (2**ds.BitsStored - 1) if ds.BitsStored > 8 else arr
    values = apply_modality_lut(arr, ds)
    if window is not None:
        out = apply_voi_lut(values, _eight_bit_voi(*window))
    elif "VOILUTSequence" in ds:
        bits = ds.VOILUTSequence[0].LUTDescriptor[2]
        out = apply_voi_lut(values, ds).astype(float) * 255 / (2**bits - 1)
    elif "WindowCenter" in ds:
        c, w = ds.WindowCenter, ds.WindowWidth
        c = c[0] if isinstance(c, pydicom.multival.MultiValue) else c
        w = w[0] if isinstance(w, pydicom.multival.MultiValue) else w
        out = apply_voi_lut(values, _eight_bit_voi(c, w, ds.get("VOILUTFunction", "LINEAR")))
    else:
        lo, hi = float(values.min()), float(values.max())
        out = (values.astype(float) - lo) * 255 / (hi - lo)
    if pi == "MONOCHROME1":
        out = 255 - out
    return np.asarray(out, dtype=float)


def decode(body: bytes) -> np.ndarray:
    """An image response as a float array (grey: 2-D, color: rows x columns x 3)."""
    img = Image.open(io.BytesIO(body))
    img.load()
    return np.asarray(img, dtype=float)


def mean_abs_error(got: np.ndarray, want: np.ndarray) -> float:
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.abs(got - np.rint(np.clip(want, 0, 255))).mean())


def max_abs_error(got: np.ndarray, want: np.ndarray) -> float:
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.abs(got - np.rint(np.clip(want, 0, 255))).max())


def multipart_parts(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """``(Content-Type, body)`` of each part of a multipart/related response (RFC 2046)."""
    assert content_type.startswith("multipart/related"), content_type
    boundary = content_type.split("boundary=")[1].split(";")[0].strip().strip('"').encode()
    parts = []
    for piece in (b"\r\n" + body).split(b"\r\n--" + boundary)[1:]:
        if piece.startswith(b"--"):
            break
        head, _, data = piece.partition(b"\r\n\r\n")
        headers = dict(
            line.split(":", 1) for line in head.decode().strip().splitlines() if ":" in line
        )
        ctype = {k.strip().lower(): v.strip() for k, v in headers.items()}["content-type"]
        parts.append((ctype, data))
    return parts


def assert_png(got: np.ndarray, want: np.ndarray) -> None:
    """A lossless rendering: every pixel within 1 of the reference (rounding at .5 may
    differ between two float computations), and fewer than 1 % of them off at all."""
    assert max_abs_error(got, want) <= 1
    off = float((np.abs(got - np.rint(np.clip(want, 0, 255))) > 0).mean())
    assert off < 0.01, f"{off:.1%} of the pixels differ from the reference"
