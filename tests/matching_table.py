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
"""

from __future__ import annotations

from typing import NamedTuple

from webpacs.core.attributes import Level

StoredValue = str | int | list[str]


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
