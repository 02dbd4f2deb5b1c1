"""Part 10 building (PS3.10 7.1): File Meta Information, storable bytes, DICOM JSON -> Part 10.

Everything that writes a Part 10 object goes through here: ingest (objects arriving
without a complete File Meta header), STOW-RS of DICOM JSON + bulk data parts, and the
export of a static tree back to Part 10.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from webpacs.errors import InvalidDicom

IMPLEMENTATION_VERSION_NAME = "WEBPACS"
PREAMBLE = b"\0" * 128 + b"DICM"
PIXEL_DATA_TAG = "7FE00010"
_LONG_VRS = (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV")


def file_meta(sop_class_uid: str, sop_uid: str, transfer_syntax: str) -> FileMetaDataset:
    """The File Meta Information this server writes (PS3.10 Table 7.1-1)."""
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = UID(sop_class_uid)
    fm.MediaStorageSOPInstanceUID = UID(sop_uid)
    fm.TransferSyntaxUID = UID(transfer_syntax)
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    fm.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return fm


def skip_meta(data: bytes, pos: int) -> int:
    """Position just past the group 0002 elements starting at ``pos`` (explicit VR LE)."""
    while pos + 8 <= len(data):
        group, _elem = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        if data[pos + 4 : pos + 6] in _LONG_VRS:
            (length,) = struct.unpack_from("<L", data, pos + 8)
            pos += 12 + length
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            pos += 8 + length
    return pos


def with_file_meta(data: bytes, sop_class_uid: str, sop_uid: str, transfer_syntax: str) -> bytes:
    """``data`` (a data set, with or without a preamble and File Meta) under a new File Meta
    header: the data set's own bytes are kept as they are."""
    start = skip_meta(data, 132 if data[128:132] == b"DICM" else 0)
    buf = io.BytesIO()
    buf.write(PREAMBLE)
    write_file_meta_info(
        buf,  # type: ignore[arg-type]  # (pydicom types it as DicomFileLike; BytesIO works)
        file_meta(sop_class_uid, sop_uid, transfer_syntax),
        enforce_standard=True,
    )
    buf.write(data[start:])
    return buf.getvalue()


def storable_bytes(ds: Dataset, transfer_syntax: str | None = None) -> bytes:
    """``ds`` as Part 10 bytes, with this server's File Meta (in ``transfer_syntax`` if given,
    else the one its File Meta names)."""
    ts = transfer_syntax or str(ds.file_meta.TransferSyntaxUID)
    ds.file_meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID, ts)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@dataclass
class BulkPart:
    """One bulk data part of a request: its media type, parameters and body."""

    content_type: str
    params: dict[str, str]
    read: Callable[[], bytes]


def from_json(obj: Any, bulk: Mapping[str, BulkPart], index: int = 0) -> bytes:
    """Part 10 bytes for one DICOM JSON object whose ``BulkDataURI``\\ s name ``bulk`` parts
    (PS3.18 10.5.1.2.2). Pixel data in a compressed part (a media type with its
    ``transfer-syntax``) is encapsulated in that syntax; otherwise Explicit VR LE."""
    if not isinstance(obj, dict):
        raise InvalidDicom(f"metadata item {index} is not a DICOM JSON object")
    pixel_ts: list[str] = []

    def handler(tag: str, vr: str, uri: str) -> bytes:
        part = bulk.get(uri) or bulk.get(uri.rsplit("/", 1)[-1])
        if part is None:
            raise InvalidDicom(f"bulk data {uri!r} is not a part of the request")
        if tag.upper() == PIXEL_DATA_TAG and part.content_type not in (
            "application/octet-stream",
            "",
        ):
            ts = part.params.get("transfer-syntax")
            if not ts:
                raise InvalidDicom(
                    f"pixel data part {uri!r} of type {part.content_type} has no transfer-syntax"
                )
            pixel_ts.append(ts)
        return part.read()

    try:
        ds = Dataset.from_json(obj, bulk_data_uri_handler=handler)
    except InvalidDicom:
        raise
    except Exception as e:
        raise InvalidDicom(f"metadata item {index} is not valid DICOM JSON: {e}") from e
    for kw in ("SOPClassUID", "SOPInstanceUID"):
        if kw not in ds:
            raise InvalidDicom(f"metadata item {index} has no {kw}")
    try:
        if pixel_ts:
            if not ds.PixelData:
                raise InvalidDicom(
                    f"metadata item {index}: the compressed pixel data part is empty"
                )
            ds.PixelData = encapsulate([ds.PixelData])
            ds["PixelData"].VR = "OB"
            ds["PixelData"].is_undefined_length = True
        return storable_bytes(ds, pixel_ts[0] if pixel_ts else ExplicitVRLittleEndian)
    except InvalidDicom:
        raise
    except Exception as e:
        raise InvalidDicom(f"metadata item {index} cannot be encoded: {e}") from e
