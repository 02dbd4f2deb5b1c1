"""Crashes the fuzz tests found, each with its input written out: now a typed 4xx error.

(``test_fuzz_parsers`` and ``test_fuzz_server`` find them; each is fixed where it crashed
and kept here, so that it cannot come back unnoticed.)
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom.pixels.utils import iter_pixels

from tests.conftest import data_file, make_settings
from tests.fuzz_support import parses_or_refuses, refused
from webpacs.core import part10
from webpacs.errors import Conflict, InvalidDicom, WebpacsError
from webpacs.ingest import IngestResult, ingest
from webpacs.pixels.codecs import CodecPanic, codec_panics
from webpacs.storage.registry import open_store

MR = "1.2.840.10008.5.1.4.1.1.4"


def test_empty_compressed_pixel_data_part() -> None:
    """DICOM JSON STOW whose pixel data part is a JPEG of no bytes: pydicom's
    ``encapsulate([b""])`` raised ValueError ("Too many fragments requested")."""
    obj = {
        "00080016": {"vr": "UI", "Value": [MR]},
        "00080018": {"vr": "UI", "Value": ["1.2.3.4"]},
        "7FE00010": {"vr": "OW", "BulkDataURI": "bulk/7FE00010"},
    }
    bulk = {"bulk/7FE00010": part10.BulkPart("image/jpeg", {"transfer-syntax": "0"}, lambda: b"")}
    with pytest.raises(InvalidDicom) as caught:
        part10.from_json(obj, bulk)
    assert refused(caught.value) is None and "pixel data part is empty" in str(caught.value)


def _corrupt_rle() -> bytes:
    """MR_small_RLE.dcm with three bytes changed (the input atheris wrote out)."""
    corrupt = bytearray(data_file("MR_small_RLE.dcm").read_bytes())
    for offset, value in ((2528, 246), (4091, 202), (4092, 179)):
        corrupt[offset] = value
    return bytes(corrupt)


def test_corrupt_rle_duplicate(tmp_path: Path) -> None:
    """atheris, Part 10 ingest: the corrupt RLE file stored over the original. The copies
    agree in every attribute, so their pixels are compared decoded, and pylibjpeg-rle's
    Rust decoder panicked (index out of bounds): ``pyo3_runtime.PanicException``, a
    BaseException that ``except Exception`` let through."""
    store = open_store(make_settings(tmp_path / "data"))
    try:
        ingest(store.index, store.blobs, data_file("MR_small_RLE.dcm").read_bytes())
        with pytest.raises(Conflict) as caught:  # not the same pixels: not provably the same
            ingest(store.index, store.blobs, _corrupt_rle())
        assert refused(caught.value) is None
    finally:
        store.close()


def test_codec_panics_become_errors() -> None:
    """The one place that turns a Rust codec's panic into an Exception (every decode uses it)."""
    with pytest.raises(CodecPanic), codec_panics():
        for _ in iter_pixels(io.BytesIO(_corrupt_rle()), decoding_plugin="pylibjpeg"):
            pass
    original = io.BytesIO(data_file("MR_small_RLE.dcm").read_bytes())
    assert [a.shape for a in iter_pixels(original, decoding_plugin="pylibjpeg")] == [(64, 64)]


@pytest.mark.parametrize(
    "offset",
    [
        1365,  # TypeError "encoding without a string argument", writing tag (BCBC,BCBC)
        683,  # a UserWarning (a value over 64 KiB made UN) raised while writing (F8F8,F8F8)
    ],
)
def test_corrupt_deflated_object(tmp_path: Path, offset: int) -> None:
    """hypothesis, Part 10 ingest: image_dfl.dcm (Deflated Explicit VR Little Endian) with the
    byte at ``offset`` of its deflate stream zeroed. It inflates into garbage elements that
    pydicom reads, but re-encoding it (deflated objects are stored inflated) failed outside
    ingest's error handling."""
    corrupt = bytearray(data_file("image_dfl.dcm").read_bytes())
    corrupt[offset] = 0
    store = open_store(make_settings(tmp_path / "data"))
    try:  # stored as read (warnings noted), or refused with a 4xx
        result = parses_or_refuses(ingest, store.index, store.blobs, bytes(corrupt))
        assert isinstance(result, IngestResult | WebpacsError)
    finally:
        store.close()
