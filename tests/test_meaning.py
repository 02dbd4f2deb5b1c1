"""The meaning digest: encodings of one data set agree, any change of a value does not."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from tests.conftest import data_file
from webpacs.duplicates import stored_meaning
from webpacs.ingest import prepare
from webpacs.meaning import Meaning
from webpacs.storage.fs import FileBlobs


def encode(ds: Dataset, *, implicit: bool = False) -> bytes:
    """``ds`` as Part 10 (big endian copies: pydicom's, in test_duplicates.py)."""
    ds = copy.deepcopy(ds)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=implicit, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture
def digest(tmp_path: Path) -> Callable[[bytes], Meaning]:
    blobs = FileBlobs(tmp_path / "blobs")

    def of(data: bytes) -> Meaning:
        m = Meaning.parse(prepare(data, blobs).record.digest)
        assert m is not None
        assert stored_meaning(data) == m  # what a closer look recomputes is the same
        return m

    return of


def base() -> Dataset:
    ds = pydicom.dcmread(data_file("MR_small.dcm"))
    ds.SeriesDescription = "Head"
    item = Dataset()
    item.CodeValue = "T-A0100"
    item.CodingSchemeDesignator = "SRT"
    item.CodeMeaning = "Brain"
    ds.AnatomicRegionSequence = Sequence([item])
    ds.SmallestImagePixelValue = 0
    return ds


def test_encodings_of_one_data_set_agree(digest: Callable[[bytes], Meaning]) -> None:
    ds = base()
    first = digest(encode(ds))
    assert digest(encode(ds, implicit=True)) == first
    # value padding (trailing spaces beyond the one pad byte), group lengths, trailing padding
    ds.SeriesDescription = "Head   "
    ds.add(DataElement(0x00080000, "UL", 1234))
    ds.add(DataElement(0xFFFCFFFC, "OB", b"\0" * 64))
    assert digest(encode(ds)) == first
    # the File Meta Information says what it likes
    ds = base()
    ds.file_meta.ImplementationVersionName = "OTHER_TOOL"
    ds.file_meta.SourceApplicationEntityTitle = "SENDER"
    assert digest(encode(ds)) == first


@pytest.mark.parametrize(
    ("change", "part"),
    [
        (lambda ds: setattr(ds, "SeriesDescription", "Head2"), "attributes"),
        (lambda ds: setattr(ds, "SmallestImagePixelValue", 1), "attributes"),
        (lambda ds: setattr(ds.AnatomicRegionSequence[0], "CodeMeaning", "Skull"), "attributes"),
        (lambda ds: ds.AnatomicRegionSequence.append(Dataset()), "attributes"),
        (lambda ds: setattr(ds, "ImageComments", ""), "attributes"),  # present, if empty
        (lambda ds: setattr(ds, "PixelData", ds.PixelData[:-2] + b"\1\0"), "pixels"),
        (lambda ds: setattr(ds, "PhotometricInterpretation", "MONOCHROME1"), "pixels"),
    ],
)
def test_a_change_of_one_value_is_seen(
    digest: Callable[[bytes], Meaning], change: Callable[[Dataset], None], part: str
) -> None:
    ds = base()
    first = digest(encode(ds))
    change(ds)
    other = digest(encode(ds))
    assert getattr(other, part) != getattr(first, part)
    kept = "pixels" if part == "attributes" else "attributes"
    assert getattr(other, kept) == getattr(first, kept)


def test_digest_form() -> None:
    m = stored_meaning(data_file("MR_small_RLE.dcm").read_bytes())
    assert (m.kind, m.lossless) == ("c", True)
    assert Meaning.parse(str(m)) == m
    assert str(m).startswith("m1:")
    assert Meaning.parse("0" * 64) is None  # a digest of the stored bytes, from before
    jpeg = stored_meaning(data_file("SC_rgb_jpeg_dcmtk.dcm").read_bytes())
    assert (jpeg.kind, jpeg.lossless) == ("l", False)
    sr = stored_meaning(data_file("rtplan.dcm").read_bytes())
    assert (sr.kind, sr.pixels, sr.lossless) == ("-", "", True)
