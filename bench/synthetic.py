"""Synthetic index records for the QIDO-at-scale benchmark, shaped like a real CT.

One template: pydicom's ``CT_small.dcm`` as ingest stores it (its DICOM JSON, bulk data
as URIs) and its attribute values as the index keeps them (``core.anyattr.entries``: 84
values). Each synthetic instance is the template with its own UIDs, patient, study date,
modality, instance number, slice position, slice thickness and pixel spacing, written
into the level projections, the stored metadata and the attribute-value rows alike, so
that the index rows (and their size) are what ingest would have written for it.

Each study also holds one segmentation (``seg``): Modality SEG, the Segmentation
Storage SOP Class, whose ReferencedSeriesSequence > ReferencedInstanceSequence names the
study's first series and its instances, as a highdicom SEG does. Its edges
(``Instance.edges``) are what ingest records for it in the ``refs`` table
(``storage/sqlrefs.py``), read from its metadata by ``core.references``.

Slice thickness is drawn per series from 1,000 values (0.50 to 10.49 mm in 0.01 steps)
and pixel spacing per study from 50 (0.400 to 0.449 mm): a one-bucket thickness range
holds about 0.1 % of the instances.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import orjson
import pydicom
from pydicom.data import get_testdata_file

from webpacs.core import anyattr, references
from webpacs.core.attributes import STORED, Level
from webpacs.core.dicomjson import build_metadata, project
from webpacs.storage.sqlattrs import path_id

THICKNESSES = 1000
CT_CLASS = "1.2.840.10008.5.1.4.1.1.2"
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
#: (sop_uid, series_uid, study_uid, target, level, frame, via): a ``refs`` row
Edge = tuple[str, str, str, str, str, int, str]


def thickness(series_index: int) -> float:
    """The slice thickness of synthetic series number ``series_index`` (mm)."""
    return round(0.5 + (series_index * 7919 % THICKNESSES) / 100, 2)


def spacing(study_index: int) -> float:
    return round(0.4 + (study_index * 31 % 50) / 1000, 3)


@dataclass
class Instance:
    """What the index tables hold for one synthetic instance."""

    metadata: bytes
    study_json: bytes
    series_json: bytes
    instance_json: bytes
    values: list[tuple[int, int, int, float | None, str | None]]  # path, occ, pos, num, txt
    edges: list[Edge]


def seg_references(series: str, sops: list[str]) -> dict[str, Any]:
    """ReferencedSeriesSequence > ReferencedInstanceSequence naming ``sops`` of ``series``
    (DICOM JSON), as a highdicom SEG holds them."""
    items = [
        {"00081150": {"vr": "UI", "Value": [CT_CLASS]}, "00081155": {"vr": "UI", "Value": [sop]}}
        for sop in sops
    ]
    item = {"0020000E": {"vr": "UI", "Value": [series]}, "0008114A": {"vr": "SQ", "Value": items}}
    return {"00081115": {"vr": "SQ", "Value": [item]}}


class Template:
    """CT_small as stored, ready to be re-stamped."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
        self.meta, _ = build_metadata(
            ds, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, threshold=1024
        )
        found = anyattr.entries(self.meta)
        seg = anyattr.entries(seg_references("1.2", ["1.2.3"]))
        self.nested = sorted({k for k, *_ in found + seg if "." in k})
        self._entries = found

    def instance(
        self, study: str, series: str, sop: str, *, pid: str, name: str, date: str,
        modality: str, number: int, series_index: int, study_index: int,
        sop_class: str = CT_CLASS, extra: dict[str, Any] | None = None,
    ) -> Instance:  # fmt: skip
        """The template re-stamped; ``extra`` (DICOM JSON) is added to its metadata, with
        its attribute values and the reference edges it makes."""
        st, ps = thickness(series_index), spacing(study_index)
        stamp = {
            "0020000D": ("UI", [study]), "0020000E": ("UI", [series]), "00080018": ("UI", [sop]),
            "00100020": ("LO", [pid]), "00100010": ("PN", [{"Alphabetic": name}]),
            "00080020": ("DA", [date]), "00080060": ("CS", [modality]),
            "00080016": ("UI", [sop_class]),
            "00200013": ("IS", [number]), "00180050": ("DS", [st]),
            "00280030": ("DS", [ps, ps]), "00201041": ("DS", [-5.0 * number]),
            "00200032": ("DS", [-158.1, -179.0, -5.0 * number]),
        }  # fmt: skip
        meta = dict(self.meta)
        values = [(path_id(k), o, p, n, t) for k, o, p, n, t in self._entries if k not in stamp]
        for tag, (vr, items) in stamp.items():
            meta[tag] = {"vr": vr, "Value": items}
            for pos, v in enumerate(items):
                norm = anyattr.normalize(vr, v)
                number = norm if isinstance(norm, float) else None
                text = norm if isinstance(norm, str) else None
                values.append((path_id(tag), 0, pos, number, text))
        edges: list[Edge] = []
        if extra:
            meta.update(extra)
            values = [(path_id(k), o, p, n, t) for k, o, p, n, t in anyattr.entries(meta)]
            edges = [
                (sop, series, study, r.uid, r.level, r.frame or 0, r.via)
                for r in references.from_json(extra)
            ]
        return Instance(
            orjson.dumps(meta),
            orjson.dumps(project(meta, STORED[Level.STUDY])),
            orjson.dumps(project(meta, STORED[Level.SERIES])),
            orjson.dumps(project(meta, STORED[Level.INSTANCE])),
            values,
            edges,
        )
