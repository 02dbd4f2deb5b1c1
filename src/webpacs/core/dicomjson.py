"""DICOM JSON (PS3.18 F.2) for stored instances, with bulk data replaced by URIs.

Instance metadata is stored with *relative* ``BulkDataURI`` values
(``studies/S/series/X/instances/I/bulkdata/PATH``, relative to the DICOMweb root),
and made absolute by :func:`render` with one byte substitution when it is served,
so the stored and derived documents do not depend on the host name a client used.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from webpacs.core.attributes import Attribute
from webpacs.core.rawjson import dataset_json

#: Tags that are always bulk data, whatever their size.
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})

PIXEL_DATA = 0x7FE00010

_TOKEN = b'"BulkDataURI":"studies/'


def instance_path(study: str, series: str, sop: str) -> str:
    """The path of an instance resource, relative to the DICOMweb root."""
    return f"studies/{study}/series/{series}/instances/{sop}"


def build_metadata(
    ds: Dataset, study: str, series: str, sop: str, *, threshold: int
) -> tuple[dict[str, Any], dict[str, DataElement]]:
    """Return the instance's DICOM JSON and the elements it refers to as bulk data.

    Binary values (OB, OD, OF, OL, OV, OW, UN; PS3.18 F.2.7) longer than ``threshold``
    bytes once base64-encoded, and top-level pixel data always, become ``BulkDataURI``s
    ``studies/S/series/X/instances/I/bulkdata/<path>`` where ``<path>`` is the tag path
    (``7FE00010``, or ``00540016/0/00181072`` inside sequences). The second value maps
    each such path to its element.
    """
    base = f"{instance_path(study, series, sop)}/bulkdata/"
    limit = (threshold // 4) * 3  # base64 makes a value 4/3 as long
    bulk: dict[str, DataElement] = {}

    def binary(path: str, elem: DataElement) -> dict[str, Any]:
        out: dict[str, Any] = {"vr": elem.VR}
        if elem.is_empty:
            return out
        if len(elem.value) > limit or (elem.tag in PIXEL_TAGS and "/" not in path):
            bulk[path] = elem
            out["BulkDataURI"] = base + path
        else:
            out["InlineBinary"] = base64.b64encode(elem.value).decode()
        return out

    return dataset_json(ds, binary), bulk


def render(metadata: bytes, base_url: str) -> bytes:
    """Make the relative ``BulkDataURI``s in stored JSON absolute under ``base_url``."""
    return metadata.replace(
        _TOKEN, b'"BulkDataURI":"' + base_url.rstrip("/").encode() + b"/studies/"
    )


def project(meta: dict[str, Any], attrs: Iterable[Attribute]) -> dict[str, Any]:
    """The subset of ``meta`` (DICOM JSON) holding ``attrs`` (absent ones left out)."""
    out = {}
    for a in attrs:
        v = meta.get(a.hex)
        if v is not None:
            out[a.hex] = v
    return out


def join_array(items: Iterable[bytes]) -> bytes:
    """Join already-encoded JSON objects into a JSON array."""
    return b"[" + b",".join(items) + b"]"
