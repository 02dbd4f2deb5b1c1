# ruff: noqa: E501  (a data table: one case per line reads best)
"""QIDO-RS matching cases, one row per rule of PS3.4 C.2.2.2 / PS3.18 8.3.4.

Each row is a ``MatchCase``: a query at ``level`` with ``params`` (the decoded
``(key, value)`` pairs of the query string) and the attributes of one stored instance
(``stored``: keyword -> value as it appears in a DICOM dataset; a list for a
multi-valued attribute). ``expected`` says whether the instance is in the result.

The table is the reference for ``webpacs.core.query.matches`` and is reused by the
index-backend contract tests, which store an instance with ``stored`` (plus the UIDs
in ``BASE``, if the row does not give its own) and run the query through the backend.
``ModalitiesInStudy`` is computed by an index from the series' ``Modality``; the rows
that store it also give the matching ``Modality`` values in ``series_modalities``.

``EXTENSION_CASES`` are the rows of extension keys (any attribute, paths into sequences:
``webpacs.core.anyattr``): numeric equality and ranges, the DS spellings, multi-valued
attributes by any value and by position, and sequence paths. A sequence is stored as a
list of items, each a dict of keyword -> value (``dataset`` builds the data set).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from webpacs.core.attributes import Level

StoredValue = str | int | float | list[Any]


def stored_value(value: StoredValue) -> Any:
    """A table value as pydicom takes it: a list of dicts becomes a sequence of items."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return Sequence([dataset(item) for item in value])
    return value


def dataset(attrs: dict[str, StoredValue]) -> Dataset:
    """A data set holding ``attrs`` (keyword -> table value)."""
    ds = Dataset()
    for kw, value in attrs.items():
        setattr(ds, kw, stored_value(value))
    return ds


class MatchCase(NamedTuple):
    """One matching rule exercised against one stored instance."""

    rule: str
    level: Level
    params: list[tuple[str, str]]
    stored: dict[str, StoredValue]
    expected: bool
    #: For ModalitiesInStudy rows: the Modality of each series of the study.
    series_modalities: tuple[str, ...] = ()


#: Identifiers of the stored instance when a row does not set them.
BASE: dict[str, StoredValue] = {
    "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.1001",
    "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.1001.1",
    "SOPInstanceUID": "1.2.826.0.1.3680043.8.498.1001.1.1",
    "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
}

STUDY, SERIES, INSTANCE = Level.STUDY, Level.SERIES, Level.INSTANCE
UID_A = "1.2.826.0.1.3680043.8.498.1001"
UID_B = "1.2.826.0.1.3680043.8.498.2002"
UID_C = "1.2.826.0.1.3680043.8.498.3003"

MATCHING_CASES: list[MatchCase] = [
    # --- single value matching (C.2.2.2.1)
    MatchCase("single value", STUDY, [("PatientID", "PAT001")], {"PatientID": "PAT001"}, True),
    MatchCase("single value, other", STUDY, [("PatientID", "PAT001")], {"PatientID": "PAT002"}, False),
    MatchCase("single value, no prefix match", STUDY, [("PatientID", "PAT")], {"PatientID": "PAT001"}, False),
    MatchCase("single value, case-sensitive", STUDY, [("AccessionNumber", "acc123")], {"AccessionNumber": "ACC123"}, False),
    MatchCase("single value, missing attribute", STUDY, [("AccessionNumber", "ACC123")], {}, False),
    MatchCase("single value, empty attribute", STUDY, [("AccessionNumber", "ACC123")], {"AccessionNumber": ""}, False),
    MatchCase("keyword key", STUDY, [("PatientID", "PAT001")], {"PatientID": "PAT001"}, True),
    MatchCase("tag key", STUDY, [("00100020", "PAT001")], {"PatientID": "PAT001"}, True),
    MatchCase("tag key, no match", STUDY, [("00100020", "PAT001")], {"PatientID": "PAT009"}, False),
    MatchCase("lower-case tag key", STUDY, [("0020000d", UID_A)], {"StudyInstanceUID": UID_A}, True),
    # --- UID single and list matching (C.2.2.2.2)
    MatchCase("UID single", STUDY, [("StudyInstanceUID", UID_A)], {"StudyInstanceUID": UID_A}, True),
    MatchCase("UID single, other", STUDY, [("StudyInstanceUID", UID_B)], {"StudyInstanceUID": UID_A}, False),
    MatchCase("UID list with backslash", STUDY, [("StudyInstanceUID", f"{UID_B}\\{UID_A}")], {"StudyInstanceUID": UID_A}, True),
    MatchCase("UID list with comma", STUDY, [("StudyInstanceUID", f"{UID_B},{UID_A}")], {"StudyInstanceUID": UID_A}, True),
    MatchCase("UID list, none", STUDY, [("StudyInstanceUID", f"{UID_B},{UID_C}")], {"StudyInstanceUID": UID_A}, False),
    MatchCase("SOP Class UID at instance level", INSTANCE, [("SOPClassUID", "1.2.840.10008.5.1.4.1.1.2")], {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"}, True),
    # --- wildcard matching (C.2.2.2.4)
    MatchCase("wildcard * trailing", STUDY, [("PatientName", "Doe*")], {"PatientName": "Doe^John"}, True),
    MatchCase("wildcard * leading", STUDY, [("PatientName", "*John")], {"PatientName": "Doe^John"}, True),
    MatchCase("wildcard * middle", STUDY, [("StudyDescription", "CT*ABDOMEN")], {"StudyDescription": "CT CHEST ABDOMEN"}, True),
    MatchCase("wildcard * no match", STUDY, [("PatientName", "Smith*")], {"PatientName": "Doe^John"}, False),
    MatchCase("wildcard * whole value", STUDY, [("PatientName", "Doe*")], {"PatientName": "Jane^Doe"}, False),
    MatchCase("wildcard * case-sensitive", STUDY, [("PatientName", "doe*")], {"PatientName": "Doe^John"}, False),
    MatchCase("wildcard ? trailing", STUDY, [("PatientID", "PAT00?")], {"PatientID": "PAT001"}, True),
    MatchCase("wildcard ? leading", STUDY, [("PatientID", "?AT001")], {"PatientID": "PAT001"}, True),
    MatchCase("wildcard ? exactly one", STUDY, [("PatientID", "PAT0?")], {"PatientID": "PAT001"}, False),
    MatchCase("wildcard ? and *", SERIES, [("SeriesDescription", "?xial*")], {"SeriesDescription": "Axial 5mm"}, True),
    MatchCase("wildcard, regex characters literal", SERIES, [("SeriesDescription", "T1 (post)*")], {"SeriesDescription": "T1 (post) fs"}, True),
    MatchCase("wildcard, dot literal", SERIES, [("SeriesDescription", "T1.*")], {"SeriesDescription": "T1 post"}, False),
    # --- universal matching (C.2.2.2.3)
    MatchCase("universal, empty value", STUDY, [("PatientID", "")], {"PatientID": "PAT001"}, True),
    MatchCase("universal, empty value, attribute missing", STUDY, [("PatientID", "")], {}, True),
    MatchCase("universal, *", STUDY, [("PatientName", "*")], {"PatientName": "Doe^John"}, True),
    MatchCase("universal, * on a date", STUDY, [("StudyDate", "*")], {"StudyDate": "20200115"}, True),
    # --- date and time: single value and range (C.2.2.2.5)
    MatchCase("single date", STUDY, [("StudyDate", "20200115")], {"StudyDate": "20200115"}, True),
    MatchCase("single date, other", STUDY, [("StudyDate", "20200116")], {"StudyDate": "20200115"}, False),
    MatchCase("single date, legacy stored form", STUDY, [("StudyDate", "20200115")], {"StudyDate": "2020.01.15"}, True),
    MatchCase("date range closed", STUDY, [("StudyDate", "20200101-20200131")], {"StudyDate": "20200115"}, True),
    MatchCase("date range closed, inclusive low", STUDY, [("StudyDate", "20200115-20200131")], {"StudyDate": "20200115"}, True),
    MatchCase("date range closed, inclusive high", STUDY, [("StudyDate", "20200101-20200115")], {"StudyDate": "20200115"}, True),
    MatchCase("date range closed, outside", STUDY, [("StudyDate", "20200201-20200229")], {"StudyDate": "20200115"}, False),
    MatchCase("date range open high (lo-)", STUDY, [("StudyDate", "20200101-")], {"StudyDate": "20200115"}, True),
    MatchCase("date range open high, before", STUDY, [("StudyDate", "20200201-")], {"StudyDate": "20200115"}, False),
    MatchCase("date range open low (-hi)", STUDY, [("StudyDate", "-20200131")], {"StudyDate": "20200115"}, True),
    MatchCase("date range open low, after", STUDY, [("StudyDate", "-20191231")], {"StudyDate": "20200115"}, False),
    MatchCase("date range, missing date", STUDY, [("StudyDate", "20200101-")], {}, False),
    MatchCase("patient birth date range", STUDY, [("PatientBirthDate", "19700101-19801231")], {"PatientBirthDate": "19750612"}, True),
    MatchCase("single time", STUDY, [("StudyTime", "093015.123")], {"StudyTime": "093015.123"}, True),
    MatchCase("single time, padded precision", STUDY, [("StudyTime", "093015.123")], {"StudyTime": "093015.123000"}, True),
    MatchCase("single time, reduced precision is exact", STUDY, [("StudyTime", "0930")], {"StudyTime": "093015.123"}, False),
    MatchCase("time range", STUDY, [("StudyTime", "0900-1000")], {"StudyTime": "093015.123"}, True),
    MatchCase("time range, outside", STUDY, [("StudyTime", "1000-1100")], {"StudyTime": "093015.123"}, False),
    MatchCase("time range, reduced-precision high end covers its hour", STUDY, [("StudyTime", "-09")], {"StudyTime": "093015.123"}, True),
    MatchCase("time range, open low", STUDY, [("StudyTime", "-0930")], {"StudyTime": "093015.123"}, True),
    MatchCase("time range, open high", STUDY, [("StudyTime", "0931-")], {"StudyTime": "093015.123"}, False),
    MatchCase("time range, legacy stored form", STUDY, [("StudyTime", "0900-1000")], {"StudyTime": "09:30:15"}, True),
    MatchCase("series time range", SERIES, [("SeriesTime", "080000-120000")], {"SeriesTime": "101500"}, True),
    MatchCase("single datetime", INSTANCE, [("AcquisitionDateTime", "20200115093015.5")], {"AcquisitionDateTime": "20200115093015.500000"}, True),
    MatchCase("single datetime, offset ignored", INSTANCE, [("AcquisitionDateTime", "20200115093015-0500")], {"AcquisitionDateTime": "20200115093015+0100"}, True),
    MatchCase("datetime range", INSTANCE, [("AcquisitionDateTime", "20200115090000-20200115100000")], {"AcquisitionDateTime": "20200115093015.123"}, True),
    MatchCase("datetime range, outside", INSTANCE, [("AcquisitionDateTime", "20200115100000-20200115110000")], {"AcquisitionDateTime": "20200115093015.123"}, False),
    MatchCase("datetime range, date-only ends cover whole days", INSTANCE, [("AcquisitionDateTime", "20200101-20200115")], {"AcquisitionDateTime": "20200115235959"}, True),
    MatchCase("datetime range, open low", INSTANCE, [("AcquisitionDateTime", "-2019")], {"AcquisitionDateTime": "20200115093015"}, False),
    MatchCase("datetime range, open high, stored with offset", INSTANCE, [("AcquisitionDateTime", "2020-")], {"AcquisitionDateTime": "20200115093015+0100"}, True),
    # --- person names: fuzzy matching (PS3.18 8.3.4.2) and case sensitivity
    MatchCase("PN exact", STUDY, [("PatientName", "Doe^John")], {"PatientName": "Doe^John"}, True),
    MatchCase("PN non-fuzzy is case-sensitive", STUDY, [("PatientName", "doe^john")], {"PatientName": "Doe^John"}, False),
    MatchCase("PN non-fuzzy, no component prefix", STUDY, [("PatientName", "John")], {"PatientName": "Doe^John"}, False),
    MatchCase("PN fuzzy, case-insensitive", STUDY, [("PatientName", "doe^john"), ("fuzzymatching", "true")], {"PatientName": "Doe^John"}, True),
    MatchCase("PN fuzzy, family name prefix", STUDY, [("PatientName", "do"), ("fuzzymatching", "true")], {"PatientName": "Doe^John"}, True),
    MatchCase("PN fuzzy, given name prefix", STUDY, [("PatientName", "JOH"), ("fuzzymatching", "true")], {"PatientName": "Doe^John"}, True),
    MatchCase("PN fuzzy, component after space", STUDY, [("PatientName", "smi"), ("fuzzymatching", "true")], {"PatientName": "Doe Smith^John"}, True),
    MatchCase("PN fuzzy, not a prefix", STUDY, [("PatientName", "ohn"), ("fuzzymatching", "true")], {"PatientName": "Doe^John"}, False),
    MatchCase("PN fuzzy, wildcard case-insensitive", STUDY, [("PatientName", "doe*"), ("fuzzymatching", "true")], {"PatientName": "Doe^John"}, True),
    MatchCase("PN fuzzymatching=false", STUDY, [("PatientName", "doe^john"), ("fuzzymatching", "false")], {"PatientName": "Doe^John"}, False),
    MatchCase("fuzzy leaves non-PN exact", STUDY, [("PatientID", "pat001"), ("fuzzymatching", "true")], {"PatientID": "PAT001"}, False),
    MatchCase("PN referring physician", STUDY, [("ReferringPhysicianName", "House^*")], {"ReferringPhysicianName": "House^Gregory^^Dr"}, True),
    # --- CS value lists
    MatchCase("CS single", SERIES, [("Modality", "CT")], {"Modality": "CT"}, True),
    MatchCase("CS list with backslash", SERIES, [("Modality", "CT\\MR")], {"Modality": "MR"}, True),
    MatchCase("CS list with comma", SERIES, [("Modality", "CT,MR")], {"Modality": "CT"}, True),
    MatchCase("CS list, none", SERIES, [("Modality", "CT\\MR")], {"Modality": "US"}, False),
    MatchCase("CS wildcard", SERIES, [("BodyPartExamined", "CHE*")], {"BodyPartExamined": "CHEST"}, True),
    MatchCase("CS patient sex", STUDY, [("PatientSex", "F")], {"PatientSex": "M"}, False),
    # --- ModalitiesInStudy: multi-valued, computed from the series
    MatchCase("ModalitiesInStudy single, multi-valued stored", STUDY, [("ModalitiesInStudy", "MR")], {"ModalitiesInStudy": ["CT", "MR"]}, True, ("CT", "MR")),
    MatchCase("ModalitiesInStudy list", STUDY, [("ModalitiesInStudy", "US\\CT")], {"ModalitiesInStudy": ["CT", "MR"]}, True, ("CT", "MR")),
    MatchCase("ModalitiesInStudy, none", STUDY, [("ModalitiesInStudy", "US,XA")], {"ModalitiesInStudy": ["CT", "MR"]}, False, ("CT", "MR")),
    MatchCase("ModalitiesInStudy, tag key", STUDY, [("00080061", "CT")], {"ModalitiesInStudy": ["CT", "SR"]}, True, ("CT", "SR")),
    # --- numeric values
    MatchCase("numeric SeriesNumber", SERIES, [("SeriesNumber", "3")], {"SeriesNumber": "3"}, True),
    MatchCase("numeric SeriesNumber, leading zero", SERIES, [("SeriesNumber", "03")], {"SeriesNumber": "3"}, True),
    MatchCase("numeric SeriesNumber, other", SERIES, [("SeriesNumber", "4")], {"SeriesNumber": "3"}, False),
    MatchCase("numeric InstanceNumber", INSTANCE, [("InstanceNumber", "12")], {"InstanceNumber": 12}, True),
    MatchCase("numeric Rows (US)", INSTANCE, [("Rows", "512")], {"Rows": 512}, True),
    # --- several keys, and attributes of outer levels
    MatchCase("several keys all match", STUDY, [("PatientID", "PAT001"), ("StudyDate", "20200101-")], {"PatientID": "PAT001", "StudyDate": "20200115"}, True),
    MatchCase("several keys one fails", STUDY, [("PatientID", "PAT001"), ("StudyDate", "20210101-")], {"PatientID": "PAT001", "StudyDate": "20200115"}, False),
    MatchCase("study attribute at series level", SERIES, [("StudyDate", "20200115"), ("Modality", "CT")], {"StudyDate": "20200115", "Modality": "CT"}, True),
    MatchCase("patient attribute at instance level", INSTANCE, [("PatientID", "PAT001"), ("InstanceNumber", "1")], {"PatientID": "PAT001", "InstanceNumber": "1"}, True),
]  # fmt: skip

# --- extension keys: any attribute, at the level it belongs to (webpacs.core.anyattr)
SFG = "SharedFunctionalGroupsSequence"
PFG = "PerFrameFunctionalGroupsSequence"


def _measures(spacing: list[str], thickness: str = "1.0") -> list[Any]:
    """A functional group item with a Pixel Measures Sequence."""
    return [{"PixelMeasuresSequence": [{"PixelSpacing": spacing, "SliceThickness": thickness}]}]


EXTENSION_CASES: list[MatchCase] = [
    # numbers (DS): equality with a relative tolerance of 1e-6, ranges a-b, a-, -b
    MatchCase("DS equal", INSTANCE, [("SliceThickness", "1.25")], {"SliceThickness": "1.25"}, True),
    MatchCase("DS other", INSTANCE, [("SliceThickness", "1.25")], {"SliceThickness": "1.5"}, False),
    MatchCase("DS within tolerance", INSTANCE, [("SliceThickness", "1")], {"SliceThickness": "1.0000005"}, True),
    MatchCase("DS outside tolerance", INSTANCE, [("SliceThickness", "1")], {"SliceThickness": "1.00001"}, False),
    MatchCase("DS tolerance is relative", INSTANCE, [("SliceThickness", "1000")], {"SliceThickness": "1000.0005"}, True),
    MatchCase("DS zero is exact", INSTANCE, [("SliceThickness", "0")], {"SliceThickness": "0.0000001"}, False),
    MatchCase("DS missing attribute", INSTANCE, [("SliceThickness", "1")], {}, False),
    MatchCase("DS range closed", INSTANCE, [("SliceThickness", "0.9-1.1")], {"SliceThickness": "1.0"}, True),
    MatchCase("DS range closed, outside", INSTANCE, [("SliceThickness", "0.9-1.1")], {"SliceThickness": "1.2"}, False),
    MatchCase("DS range closed, inclusive high", INSTANCE, [("SliceThickness", "0.9-1.1")], {"SliceThickness": "1.1"}, True),
    MatchCase("DS range closed, inclusive low", INSTANCE, [("SliceThickness", "0.9-1.1")], {"SliceThickness": "0.9"}, True),
    MatchCase("DS range open high (a-)", INSTANCE, [("SliceThickness", "1-")], {"SliceThickness": "5"}, True),
    MatchCase("DS range open high, below", INSTANCE, [("SliceThickness", "1-")], {"SliceThickness": "0.5"}, False),
    MatchCase("DS range open low (-b) is at most b", INSTANCE, [("SliceThickness", "-2.5")], {"SliceThickness": "2"}, True),
    MatchCase("DS range open low, above", INSTANCE, [("SliceThickness", "-1")], {"SliceThickness": "5"}, False),
    MatchCase("DS range of negative bounds", INSTANCE, [("ImagePositionPatient", "-5--1")], {"ImagePositionPatient": ["-2.5", "100", "200"]}, True),
    MatchCase("DS range of negative bounds, outside", INSTANCE, [("ImagePositionPatient", "-5--1")], {"ImagePositionPatient": ["-0.5", "100", "200"]}, False),
    MatchCase("DS exactly negative as a closed range", INSTANCE, [("ImagePositionPatient", "-2.5--2.5")], {"ImagePositionPatient": ["-2.5", "1", "2"]}, True),
    MatchCase("DS range with exponents", INSTANCE, [("SliceThickness", "1e-1-2e-1")], {"SliceThickness": "0.15"}, True),
    MatchCase("DS list on a single-valued attribute", INSTANCE, [("SliceThickness", "2\\1")], {"SliceThickness": "1.0"}, True),
    MatchCase("DS list, none", INSTANCE, [("SliceThickness", "2\\3")], {"SliceThickness": "1.0"}, False),
    # other numeric VRs
    MatchCase("IS equal", INSTANCE, [("AcquisitionNumber", "7")], {"AcquisitionNumber": "7"}, True),
    MatchCase("IS leading zero", INSTANCE, [("AcquisitionNumber", "007")], {"AcquisitionNumber": "7"}, True),
    MatchCase("IS range", INSTANCE, [("AcquisitionNumber", "5-10")], {"AcquisitionNumber": "11"}, False),
    MatchCase("US equal", INSTANCE, [("SamplesPerPixel", "1")], {"SamplesPerPixel": 1}, True),
    MatchCase("US other", INSTANCE, [("SamplesPerPixel", "3")], {"SamplesPerPixel": 1}, False),
    MatchCase("SS negative range", INSTANCE, [("TagAngleSecondAxis", "-90--10")], {"TagAngleSecondAxis": -45}, True),
    MatchCase("SL equal negative", INSTANCE, [("ReferencePixelX0", "-12--12")], {"ReferencePixelX0": -12}, True),
    MatchCase("UL range open", INSTANCE, [("TriggerSamplePosition", "100-")], {"TriggerSamplePosition": 4000000000}, True),
    MatchCase("FD equal", INSTANCE, [("WaterEquivalentDiameter", "250.5")], {"WaterEquivalentDiameter": 250.5}, True),
    MatchCase("FL equal within tolerance", INSTANCE, [("B1rms", "0.1")], {"B1rms": 0.1}, True),
    MatchCase("FL range", INSTANCE, [("B1rms", "0.2-")], {"B1rms": 0.1}, False),
    # multi-valued: one value matches any position; a\b by position, and no more values
    MatchCase("multi-valued, any position (first)", INSTANCE, [("PixelSpacing", "0.5")], {"PixelSpacing": ["0.5", "0.7"]}, True),
    MatchCase("multi-valued, any position (second)", INSTANCE, [("PixelSpacing", "0.7")], {"PixelSpacing": ["0.5", "0.7"]}, True),
    MatchCase("multi-valued, no position", INSTANCE, [("PixelSpacing", "0.6")], {"PixelSpacing": ["0.5", "0.7"]}, False),
    MatchCase("multi-valued by position", INSTANCE, [("PixelSpacing", "0.5\\0.7")], {"PixelSpacing": ["0.5", "0.7"]}, True),
    MatchCase("multi-valued by position, order", INSTANCE, [("PixelSpacing", "0.7\\0.5")], {"PixelSpacing": ["0.5", "0.7"]}, False),
    MatchCase("multi-valued by position, DS spellings", INSTANCE, [("PixelSpacing", "0.5\\0.5")], {"PixelSpacing": ["0.50", ".5"]}, True),
    MatchCase("multi-valued by position, ranges", INSTANCE, [("PixelSpacing", "0.4-0.6\\0.6-0.8")], {"PixelSpacing": ["0.5", "0.7"]}, True),
    MatchCase("multi-valued by position, any value", INSTANCE, [("ImageType", "ORIGINAL\\*")], {"ImageType": ["ORIGINAL", "PRIMARY"]}, True),
    MatchCase("multi-valued by position, first differs", INSTANCE, [("ImageType", "DERIVED\\*")], {"ImageType": ["ORIGINAL", "PRIMARY"]}, False),
    MatchCase("multi-valued by position, more values stored", INSTANCE, [("ImageType", "ORIGINAL\\PRIMARY")], {"ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"]}, False),
    MatchCase("multi-valued by position, three of three", INSTANCE, [("ImageType", "ORIGINAL\\PRIMARY\\AXIAL")], {"ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"]}, True),
    MatchCase("multi-valued text, any position", INSTANCE, [("ImageType", "AXIAL")], {"ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"]}, True),
    MatchCase("multi-valued text, wildcard", INSTANCE, [("ImageType", "AX*")], {"ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"]}, True),
    # text, dates and UIDs on extension keys
    MatchCase("text single, exact", SERIES, [("ProtocolName", "Head Routine")], {"ProtocolName": "Head Routine"}, True),
    MatchCase("text wildcard", SERIES, [("ProtocolName", "Head*")], {"ProtocolName": "Head Routine"}, True),
    MatchCase("text wildcard, case-sensitive", SERIES, [("ProtocolName", "head*")], {"ProtocolName": "Head Routine"}, False),
    MatchCase("text leading wildcard", SERIES, [("ProtocolName", "*Routine")], {"ProtocolName": "Head Routine"}, True),
    MatchCase("text dash is literal", SERIES, [("ProtocolName", "T1-w")], {"ProtocolName": "T1-w"}, True),
    MatchCase("PN extension, wildcard", INSTANCE, [("OperatorsName", "Smith^*")], {"OperatorsName": "Smith^Jane"}, True),
    MatchCase("UI extension, list", INSTANCE, [("FrameOfReferenceUID", f"{UID_B},{UID_A}")], {"FrameOfReferenceUID": UID_A}, True),
    MatchCase("UI extension, other", INSTANCE, [("FrameOfReferenceUID", UID_B)], {"FrameOfReferenceUID": UID_A}, False),
    MatchCase("DA extension, range", INSTANCE, [("AcquisitionDate", "20200101-20200131")], {"AcquisitionDate": "20200115"}, True),
    MatchCase("DA extension, range, outside", INSTANCE, [("AcquisitionDate", "-20191231")], {"AcquisitionDate": "20200115"}, False),
    MatchCase("TM extension, range", INSTANCE, [("AcquisitionTime", "09-10")], {"AcquisitionTime": "093015"}, True),
    # the level an attribute belongs to: series and studies match when one instance does
    MatchCase("instance attribute on /series", SERIES, [("SliceThickness", "0.9-1.1")], {"SliceThickness": "1.0"}, True),
    MatchCase("instance attribute on /studies", STUDY, [("SliceThickness", "0.9-1.1")], {"SliceThickness": "1.0"}, True),
    MatchCase("instance attribute on /studies, none", STUDY, [("SliceThickness", "2-")], {"SliceThickness": "1.0"}, False),
    MatchCase("series attribute on /studies is an extension", STUDY, [("Modality", "MR\\CT")], {"Modality": "CT"}, True),
    MatchCase("instance UID on /studies", STUDY, [("SOPInstanceUID", "1.2.826.0.1.3680043.8.498.1001.1.1")], {}, True),
    MatchCase("extension with a standard key", STUDY, [("PatientID", "PAT001"), ("MagneticFieldStrength", "3")], {"PatientID": "PAT001", "MagneticFieldStrength": "3.0"}, True),
    MatchCase("extension with a standard key, one fails", STUDY, [("PatientID", "PAT001"), ("MagneticFieldStrength", "1.5")], {"PatientID": "PAT001", "MagneticFieldStrength": "3.0"}, False),
    # sequence paths: from the top level; a path of two or more also further down
    MatchCase("path by keywords", INSTANCE, [(f"{SFG}.PixelMeasuresSequence.PixelSpacing", "0.5\\0.5")], {SFG: _measures(["0.5", "0.5"])}, True),
    MatchCase("path by keywords, other value", INSTANCE, [(f"{SFG}.PixelMeasuresSequence.PixelSpacing", "0.5\\0.5")], {SFG: _measures(["0.5", "0.7"])}, False),
    MatchCase("path by tags", INSTANCE, [("52009229.00289110.00280030", "0.5")], {SFG: _measures(["0.5", "0.5"])}, True),
    MatchCase("path of tags and keywords", INSTANCE, [("52009229.PixelMeasuresSequence.00180050", "0.9-1.1")], {SFG: _measures(["0.5", "0.5"], "1.0")}, True),
    MatchCase("short path further down (shared)", INSTANCE, [("00289110.00280030", "0.5\\0.5")], {SFG: _measures(["0.5", "0.5"])}, True),
    MatchCase("short path further down (per frame)", INSTANCE, [("PixelMeasuresSequence.PixelSpacing", "0.7")], {PFG: _measures(["0.5", "0.5"]) + _measures(["0.7", "0.7"])}, True),
    MatchCase("by position within one item", INSTANCE, [("00289110.00280030", "0.5\\0.7")], {PFG: _measures(["0.5", "0.5"]) + _measures(["0.7", "0.7"])}, False),
    MatchCase("by position, the second item", INSTANCE, [("00289110.00280030", "0.7\\0.7")], {PFG: _measures(["0.5", "0.5"]) + _measures(["0.7", "0.7"])}, True),
    MatchCase("a path from the top level is not another chain", INSTANCE, [(f"{SFG}.PixelMeasuresSequence.PixelSpacing", "0.5")], {PFG: _measures(["0.5", "0.5"])}, False),
    MatchCase("a keyword is the top level only", INSTANCE, [("PixelSpacing", "0.5")], {SFG: _measures(["0.5", "0.5"])}, False),
    MatchCase("path on /studies", STUDY, [("00289110.00280030", "0.5\\0.5"), ("Modality", "CT")], {SFG: _measures(["0.50", "0.50"]), "Modality": "CT"}, True),
]  # fmt: skip

#: The DS spellings of one half: every query spelling matches every stored spelling.
DS_SPELLINGS = ("0.5", "0.50", ".5", "5e-1")
EXTENSION_CASES += [
    MatchCase(f"DS spelling {q!r} = stored {v!r}", INSTANCE, [("SliceThickness", q)], {"SliceThickness": v}, True)
    for q in DS_SPELLINGS
    for v in DS_SPELLINGS
]  # fmt: skip
