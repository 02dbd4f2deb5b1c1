"""The fast DICOM JSON encoder gives pydicom's ``to_json_dict`` output, on every test file.

``core.rawjson`` encodes raw elements itself and leaves the rest to pydicom; this checks
the result against pydicom's own encoder (with the bulk data rules of ``build_metadata``)
for every file pydicom and pydicom-data ship, and for values built to hit each branch.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from webpacs.core.dicomjson import PIXEL_TAGS, build_metadata

THRESHOLD = 1024


def _reference(ds: Dataset) -> dict[str, Any]:
    """pydicom's encoding, with binary values past the threshold (and pixel data) as URIs."""
    paths: dict[int, str] = {}

    def walk(d: Dataset, prefix: str) -> None:
        for elem in d:
            paths[id(elem)] = f"{prefix}{elem.tag:08X}"
            if elem.VR == "SQ":
                for i, item in enumerate(elem.value):
                    walk(item, f"{paths[id(elem)]}/{i}/")

    walk(ds, "")
    meta = ds.to_json_dict(
        bulk_data_threshold=THRESHOLD,
        bulk_data_element_handler=lambda e: "B/" + paths[id(e)],
        suppress_invalid_tags=False,
    )
    for tag in PIXEL_TAGS:
        j = meta.get(f"{tag:08X}")
        if j and "InlineBinary" in j:
            del j["InlineBinary"]
            j["BulkDataURI"] = f"B/{tag:08X}"
    return meta


def _ours(ds: Dataset) -> dict[str, Any]:
    meta, _ = build_metadata(ds, "S", "X", "I", threshold=THRESHOLD)
    prefix = "studies/S/series/X/instances/I/bulkdata/"

    def strip(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {
                k: (v.replace(prefix, "B/") if k == "BulkDataURI" else strip(v))
                for k, v in obj.items()
            }
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    return strip(meta)


def _read(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data), force=True)


def _files() -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sorted(f for f in set(get_testdata_files("*")) if Path(f).is_file())


def _outcome(fn: Any, data: bytes) -> tuple[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return "ok", fn(_read(data))
        except Exception as e:  # pydicom raises many kinds on bad values
            return "error", repr(e)


def test_every_shipped_file_encodes_as_pydicom_does() -> None:
    files = _files()
    assert len(files) > 100, "pydicom-data is not installed"
    compared = 0
    for name in files:
        data = Path(name).read_bytes()
        try:
            _read(data)
        except Exception:
            continue  # not readable at all: nothing to encode
        ref, ours = _outcome(_reference, data), _outcome(_ours, data)
        if ref[0] == "error":
            assert ours[0] == "error", f"{name}: pydicom refuses it ({ref[1]}), we do not"
            continue
        assert ours == ref, name
        compared += 1
    assert compared > 100


def _file(ds: Dataset, ts: str = ExplicitVRLittleEndian) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _elements(charset: str | None) -> Dataset:
    ds = Dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4"
    ds.add_new(0x00080060, "CS", "CT\\MR ")
    ds.add_new(0x00080020, "DA", "20200101")
    ds.add_new(0x00080030, "TM", "")
    ds.add_new(0x00081030, "LO", " Brain \\ Head ")
    ds.add_new(0x00081040, "LO", "Café Müller")
    ds.add_new(0x00100010, "PN", "Doe^John\\Roe^Jane")
    ds.add_new(0x00100020, "LO", "")
    ds.add_new(0x00080054, "AE", " STORE \\ OTHER")
    ds.add_new(0x00181030, "LO", "\\")
    ds.add_new(0x00200013, "IS", "+007")
    ds.add_new(0x00200011, "IS", "1\\2\\-3")
    ds.add_new(0x00280030, "DS", " 0.5\\.25e1 ")
    ds.add_new(0x00281050, "DS", "inf")
    ds.add_new(0x00201041, "DS", "")
    ds.add_new(0x00280010, "US", 512)
    ds.add_new(0x00189219, "SS", [-1, 2])
    ds.add_new(0x00189089, "FD", [1.5, -0.25])
    ds.add_new(0x00189087, "FD", [])
    ds.add_new(0x00400280, "ST", "a\\b  ")
    ds.add_new(0x00081190, "UR", "http://x/y ")
    ds.add_new(0x00091010, "LO", "private")
    ds.add_new(0x00090010, "LO", "ACME")
    ds.add_new(0x00280006, "US", 0)
    ds.add_new(0x00189215, "OB", b"\x01\x02")
    ds.add_new(0x00189216, "OB", b"\x00" * 2000)
    item = Dataset()
    item.add_new(0x00081150, "UI", "1.2.840.10008.5.1.4.1.1.2\0")
    item.add_new(0x00100010, "PN", "Smith^Ann=スミス")
    ds.add_new(0x00081115, "SQ", [item, Dataset()])
    return ds


@pytest.mark.parametrize("charset", [None, "ISO_IR 100", "ISO_IR 192", "ISO 2022 IR 87"])
@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_each_value_kind_encodes_as_pydicom_does(charset: str | None, ts: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "inf" is not a valid DS: pydicom warns
        ds = _elements(charset)
    if charset != "ISO_IR 192":
        ds[0x00081115].value[0][0x00100010].value = "Smith^Ann"  # not encodable there
    if charset in (None, "ISO 2022 IR 87"):
        del ds[0x00081040]
    if charset == "ISO 2022 IR 87":
        del ds[0x00181030]  # pydicom cannot write an empty value in ISO 2022
    data = _file(ds, ts)
    ref, ours = _outcome(_reference, data), _outcome(_ours, data)
    assert ref[0] == "ok", ref
    assert ours == ref
    meta = ours[1]
    assert meta["00200011"]["Value"] == [1, 2, -3]
    assert meta["00189216"]["BulkDataURI"] == "B/00189216"


def test_a_value_pydicom_cannot_convert_is_an_error() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _elements(None)
        tag = Tag(0x00200012)
        ds[tag] = RawDataElement(tag, "IS", 2, b"1A", 0, False, True)  # type: ignore[assignment]
    data = _file(ds)
    assert _outcome(_reference, data)[0] == "error"
    assert _outcome(_ours, data)[0] == "error"


def test_bulk_elements_are_returned_for_frame_and_bulk_maps() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _read(_file(_elements(None)))
    _, bulk = build_metadata(ds, "S", "X", "I", threshold=THRESHOLD)
    assert set(bulk) == {"00189216"}
    assert isinstance(bulk["00189216"], DataElement)
    assert bulk["00189216"].value == b"\x00" * 2000
