"""Tests of the QIDO-RS query model (webpacs.core.query; PS3.18 8.3.4, PS3.4 C.2.2.2)."""

from __future__ import annotations

import pytest
from pydicom.datadict import tag_for_keyword

from tests.matching_table import BASE, EXTENSION_CASES, MATCHING_CASES, MatchCase, dataset
from webpacs.core import anyattr
from webpacs.core.attributes import Level
from webpacs.core.dicomjson import build_metadata
from webpacs.core.query import (
    Condition,
    matches,
    normalize_date,
    normalize_datetime,
    normalize_time,
    parse_qido,
)
from webpacs.errors import InvalidRequest

STUDY, SERIES, INSTANCE = Level.STUDY, Level.SERIES, Level.INSTANCE


def tag(keyword: str) -> int:
    t = tag_for_keyword(keyword)
    assert t is not None
    return t


# --------------------------------------------------------------------------- the table


@pytest.mark.parametrize("case", MATCHING_CASES, ids=[c.rule for c in MATCHING_CASES])
def test_matching_table(case: MatchCase) -> None:
    query = parse_qido(case.level, case.params)
    stored = BASE | case.stored
    result = all(matches(c, stored.get(c.attribute.keyword)) for c in query.conditions)
    assert result is case.expected


@pytest.mark.parametrize("case", EXTENSION_CASES, ids=[c.rule for c in EXTENSION_CASES])
def test_extension_table(case: MatchCase) -> None:
    """Extension keys against the instance's DICOM JSON (the reference semantics)."""
    query = parse_qido(case.level, case.params)
    stored = BASE | case.stored
    meta, _ = build_metadata(dataset(stored), "1.2", "1.2.3", "1.2.3.4", threshold=1024)
    result = all(
        anyattr.matches_instance(c.path, meta)
        if c.path is not None
        else matches(c, stored.get(c.attribute.keyword))
        for c in query.conditions
    )
    assert result is case.expected
    assert any(c.path is not None for c in query.conditions)  # the row tests an extension


def test_matches_one_occurrence_of_an_extension_key() -> None:
    (c,) = conditions(INSTANCE, ("PixelSpacing", "0.5\\0.7"))
    assert matches(c, ["0.50", ".7"]) and matches(c, "5e-1\\0.7")
    assert not matches(c, ["0.5", "0.7", "1"]) and not matches(c, None)
    (c,) = conditions(INSTANCE, ("SliceThickness", "-2.5--2.5"))
    assert matches(c, "-2.5") and not matches(c, "2.5")


def test_extension_key_shapes() -> None:
    (c,) = conditions(STUDY, ("SliceThickness", "0.9-1.1"))
    assert c.kind == "path" and c.path is not None and c.attribute.level is INSTANCE
    assert c.path.path.key == "00180050" and not c.path.positional
    q = parse_qido(
        INSTANCE, [("SharedFunctionalGroupsSequence.PixelMeasuresSequence.PixelSpacing", "*")]
    )
    assert q.conditions == () and not q.includefields  # returned only when asked
    (c,) = conditions(SERIES, ("Modality", "CT"))  # a standard key at its level
    assert c.path is None and c.kind == "single"


def test_table_rule_names_are_unique() -> None:
    names = [c.rule for c in MATCHING_CASES + EXTENSION_CASES]
    assert len(names) == len(set(names))


def test_table_covers_every_kind() -> None:
    kinds = {
        c.kind for case in MATCHING_CASES for c in parse_qido(case.level, case.params).conditions
    }
    assert kinds == {"single", "list", "wildcard", "range"}
    assert any(not parse_qido(c.level, c.params).conditions for c in MATCHING_CASES)


# --------------------------------------------------------------------------- conditions


def conditions(level: Level, *params: tuple[str, str]) -> tuple[Condition, ...]:
    return parse_qido(level, list(params)).conditions


def test_condition_shapes() -> None:
    (c,) = conditions(STUDY, ("StudyDate", "20200101-"))
    assert (c.attribute.keyword, c.kind, c.values) == ("StudyDate", "range", ("20200101", ""))
    (c,) = conditions(STUDY, ("StudyTime", "0930-1000"))
    assert c.values == ("093000.000000", "100059.999999")
    (c,) = conditions(STUDY, ("StudyTime", "093015.1"))
    assert (c.kind, c.values) == ("single", ("093015.100000",))
    (c,) = conditions(INSTANCE, ("AcquisitionDateTime", "20200115-"))
    assert c.values == ("20200115000000.000000", "")
    (c,) = conditions(STUDY, ("StudyInstanceUID", "1.2.3\\1.2.4"))
    assert (c.kind, c.values) == ("list", ("1.2.3", "1.2.4"))
    (c,) = conditions(SERIES, ("SeriesNumber", "007"))
    assert (c.kind, c.values) == ("single", ("7",))
    (c,) = conditions(STUDY, ("PatientName", "Do?^*"))
    assert (c.kind, c.values, c.fuzzy) == ("wildcard", ("Do?^*",), False)
    (c,) = conditions(STUDY, ("ModalitiesInStudy", "CT,MR"))
    assert (c.attribute.level, c.kind, c.values) == (STUDY, "list", ("CT", "MR"))


def test_fuzzy_flag_only_on_person_names() -> None:
    q = parse_qido(STUDY, [("fuzzymatching", "true"), ("PatientName", "doe"), ("PatientID", "X")])
    assert q.fuzzy is True
    assert {c.attribute.keyword: c.fuzzy for c in q.conditions} == {
        "PatientName": True,
        "PatientID": False,
    }
    assert parse_qido(STUDY, [("fuzzymatching", "false")]).fuzzy is False


def test_universal_matching_has_no_condition_but_is_returned() -> None:
    q = parse_qido(SERIES, [("SeriesDescription", ""), ("BodyPartExamined", "*")])
    assert q.conditions == ()
    assert {tag("SeriesDescription"), tag("BodyPartExamined")} <= q.includefields


def test_study_attribute_accepted_at_series_and_instance_level() -> None:
    for level in (SERIES, INSTANCE):
        (c,) = conditions(level, ("StudyDescription", "Chest*"))
        assert c.attribute.keyword == "StudyDescription"
        (c,) = conditions(level, ("PatientID", "PAT001"))
        assert c.attribute.level is Level.PATIENT
    (c,) = conditions(INSTANCE, ("Modality", "CT"))
    assert c.attribute.level is SERIES


def test_path_uids_are_kept() -> None:
    q = parse_qido(INSTANCE, [], study_uid="1.2.3", series_uid="1.2.3.4")
    assert (q.study_uid, q.series_uid, q.level) == ("1.2.3", "1.2.3.4", INSTANCE)


# --------------------------------------------------------------------------- includefield, paging


def test_includefield_parsing() -> None:
    q = parse_qido(
        STUDY,
        [
            ("includefield", "00081030"),
            ("includefield", "PatientAge,00101030"),
            ("includefield", ""),
            ("includefield", "0008103e , StudyComments"),
        ],
    )
    assert q.includefields == {
        tag("StudyDescription"),
        tag("PatientAge"),
        tag("PatientWeight"),
        tag("SeriesDescription"),
        tag("StudyComments"),
    }
    assert q.include_all is False
    assert q.conditions == ()


def test_includefield_all() -> None:
    q = parse_qido(SERIES, [("includefield", "all")])
    assert q.include_all is True
    q = parse_qido(SERIES, [("includefield", "PatientAge,all")])
    assert q.include_all is True and tag("PatientAge") in q.includefields


def test_defaults() -> None:
    q = parse_qido(STUDY, [])
    assert (q.limit, q.offset, q.fuzzy, q.include_all) == (None, 0, False, False)
    assert q.includefields == frozenset() and q.conditions == ()


def test_limit_and_offset() -> None:
    q = parse_qido(STUDY, [("limit", "25"), ("offset", "50")])
    assert (q.limit, q.offset) == (25, 50)
    assert parse_qido(STUDY, [("limit", "0")]).limit == 0


def test_max_limit_caps_and_defaults() -> None:
    assert parse_qido(STUDY, [("limit", "500")], max_limit=100).limit == 100
    assert parse_qido(STUDY, [("limit", "10")], max_limit=100).limit == 10
    assert parse_qido(STUDY, [], max_limit=100).limit == 100


# --------------------------------------------------------------------------- errors

INVALID = [
    # (level, params, substrings the message must contain)
    (STUDY, [("limit", "-1")], ["limit", "whole number from 0"]),
    (STUDY, [("limit", "abc")], ["limit", "'abc'"]),
    (STUDY, [("limit", "")], ["limit"]),
    (STUDY, [("offset", "-5")], ["offset", "whole number from 0"]),
    (STUDY, [("offset", "1.5")], ["offset"]),
    (STUDY, [("limit", "1"), ("limit", "2")], ["limit", "more than once"]),
    (STUDY, [("fuzzymatching", "yes")], ["fuzzymatching", "'yes'"]),
    (STUDY, [("includefield", "NoSuchKeyword")], ["includefield", "NoSuchKeyword"]),
    (STUDY, [("orderby", "PatientName")], ["orderby", "unknown attribute"]),
    (STUDY, [("count", "true")], ["count", "unknown attribute"]),
    (STUDY, [("PatientNam", "Doe")], ["PatientNam", "unknown attribute"]),
    (SERIES, [("ModalitiesInStudy", "CT")], ["ModalitiesInStudy", "series level"]),
    (INSTANCE, [("NumberOfStudyRelatedSeries", "2")], ["NumberOfStudyRelatedSeries"]),
    (STUDY, [("NumberOfSeriesRelatedInstances", "2")], ["cannot be matched at study level"]),
    # extension keys (webpacs.core.anyattr): any other attribute, or a path into sequences
    (STUDY, [("SOPInstanceUID", "1.2.abc")], ["SOPInstanceUID", "invalid UID"]),
    (SERIES, [("InstanceNumber", "1.5")], ["InstanceNumber", "invalid integer"]),
    (INSTANCE, [("SliceThickness", "thin")], ["SliceThickness", "invalid number or range"]),
    (INSTANCE, [("SliceThickness", "1-2-3")], ["SliceThickness", "invalid number or range"]),
    (INSTANCE, [("SliceThickness", "2-1")], ["SliceThickness", "lower end after"]),
    (INSTANCE, [("SliceThickness", "-")], ["SliceThickness", "at least one end"]),
    (INSTANCE, [("SliceThickness", "1\\")], ["SliceThickness", "list"]),
    (INSTANCE, [("SliceThickness", "nan")], ["SliceThickness", "'nan'"]),
    (INSTANCE, [("PixelSpacing", "0.5\\x")], ["PixelSpacing", "'x'"]),
    (INSTANCE, [("AcquisitionDate", "20201301")], ["AcquisitionDate", "invalid date"]),
    (STUDY, [("SliceThicknes", "1")], ["SliceThicknes", "unknown attribute"]),
    (INSTANCE, [("PixelMeasuresSequence", "1")], ["sequence cannot be matched"]),
    (INSTANCE, [("SliceThickness.PixelSpacing", "1")], ["SliceThickness is not a sequence"]),
    (INSTANCE, [("PixelMeasuresSequence.Nope", "1")], ["unknown attribute 'Nope'"]),
    (INSTANCE, [("00091010", "1")], ["00091010", "private attribute"]),
    (INSTANCE, [("PixelData", "1")], ["PixelData", "binary data"]),
    (INSTANCE, [("SliceThickness", "1"), ("00180050", "2")], ["00180050", "more than once"]),
    (STUDY, [("PatientID", "A"), ("PatientID", "B")], ["PatientID", "more than once"]),
    (STUDY, [("PatientID", "A"), ("00100020", "B")], ["00100020", "more than once"]),
    (STUDY, [("StudyInstanceUID", "1.2.abc")], ["StudyInstanceUID", "invalid UID"]),
    (STUDY, [("StudyInstanceUID", "1.2.*")], ["StudyInstanceUID", "wildcards"]),
    (STUDY, [("StudyInstanceUID", "1.2.3,,1.2.4")], ["StudyInstanceUID"]),
    (STUDY, [("StudyInstanceUID", "1." + "2" * 64)], ["StudyInstanceUID", "64"]),
    (INSTANCE, [("SOPClassUID", "1.2.840.")], ["SOPClassUID", "invalid UID"]),
    (STUDY, [("StudyDate", "2020-13-01")], ["StudyDate", "2020-13-01"]),
    (STUDY, [("StudyDate", "20201301")], ["StudyDate", "invalid date", "YYYYMMDD"]),
    (STUDY, [("StudyDate", "20200230")], ["StudyDate", "invalid date"]),
    (STUDY, [("StudyDate", "abc-def")], ["StudyDate", "invalid date"]),
    (STUDY, [("StudyDate", "2020010")], ["StudyDate", "invalid date"]),
    (STUDY, [("StudyDate", "2020*")], ["StudyDate", "invalid date"]),
    (STUDY, [("StudyDate", "-")], ["StudyDate", "at least one end"]),
    (STUDY, [("StudyDate", "20200201-20200101")], ["StudyDate", "lower end after"]),
    (STUDY, [("StudyTime", "2500")], ["StudyTime", "invalid time"]),
    (STUDY, [("StudyTime", "0961")], ["StudyTime", "invalid time"]),
    (STUDY, [("StudyTime", "093")], ["StudyTime", "invalid time"]),
    (STUDY, [("StudyTime", "0930.5")], ["StudyTime", "invalid time"]),
    (STUDY, [("StudyTime", "093000.1234567")], ["StudyTime", "invalid time"]),
    (INSTANCE, [("AcquisitionDateTime", "20201301")], ["AcquisitionDateTime", "date-time"]),
    (INSTANCE, [("AcquisitionDateTime", "2020011")], ["AcquisitionDateTime", "date-time"]),
    (INSTANCE, [("AcquisitionDateTime", "abc-def")], ["AcquisitionDateTime"]),
    (SERIES, [("SeriesNumber", "1.5")], ["SeriesNumber", "invalid integer"]),
    (SERIES, [("SeriesNumber", "abc")], ["SeriesNumber", "invalid integer"]),
    (SERIES, [("SeriesNumber", "1*")], ["SeriesNumber", "invalid integer"]),
    (INSTANCE, [("Rows", "1,2")], ["Rows", "invalid integer"]),
    (SERIES, [("Modality", "CT\\M*")], ["Modality", "list"]),
    (SERIES, [("Modality", "CT\\")], ["Modality", "list"]),
]


@pytest.mark.parametrize(
    ("level", "params", "needles"), INVALID, ids=[f"{p}" for _, p, _ in INVALID]
)
def test_invalid_requests(level: Level, params: list[tuple[str, str]], needles: list[str]) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_qido(level, params)
    for needle in needles:
        assert needle in str(info.value)


def test_invalid_path_uids() -> None:
    with pytest.raises(InvalidRequest, match="StudyInstanceUID: invalid UID"):
        parse_qido(SERIES, [], study_uid="1.2/../3")
    with pytest.raises(InvalidRequest, match="SeriesInstanceUID: invalid UID"):
        parse_qido(INSTANCE, [], study_uid="1.2", series_uid="x")


def test_patient_level_is_not_a_qido_resource() -> None:
    with pytest.raises(ValueError, match="patient"):
        parse_qido(Level.PATIENT, [])


# --------------------------------------------------------------------------- normalization


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("20200115", "20200115"), ("2020.01.15", "20200115"), (" 20200115 ", "20200115"),
     ("", ""), ("2020-01-15", ""), ("garbage", "")],
)  # fmt: skip
def test_normalize_date(raw: str, expected: str) -> None:
    assert normalize_date(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0930", "093000.000000"), ("09", "090000.000000"), ("093015.123", "093015.123000"),
     ("093015.123456", "093015.123456"), ("09:30:15", "093015.000000"), ("", ""), ("x", "")],
)  # fmt: skip
def test_normalize_time(raw: str, expected: str) -> None:
    assert normalize_time(raw) == expected


def test_normalized_times_order_as_strings() -> None:
    times = ["1", "0930", "09", "093015.5", "235959.999999", "1000", "093015.05"]
    valid = [t for t in times if normalize_time(t)]
    by_string = sorted(valid, key=normalize_time)
    assert by_string == ["09", "0930", "093015.05", "093015.5", "1000", "235959.999999"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("20200115093015.123", "20200115093015.123000"), ("2020", "20200101000000.000000"),
     ("20200115093015+0100", "20200115093015.000000"),
     ("202001150930-0500", "20200115093000.000000"),
     ("", ""), ("2020-01-15", "")],
)  # fmt: skip
def test_normalize_datetime(raw: str, expected: str) -> None:
    assert normalize_datetime(raw) == expected


# --------------------------------------------------------------------------- matches() directly


def test_matches_multivalued_and_missing() -> None:
    (c,) = conditions(STUDY, ("ModalitiesInStudy", "MR"))
    assert matches(c, ["CT", "MR"])
    assert matches(c, "CT\\MR")
    assert not matches(c, ["CT", "SR"])
    assert not matches(c, None)
    assert not matches(c, "")
    assert not matches(c, [])


def test_matches_strips_padding() -> None:
    (c,) = conditions(STUDY, ("StudyInstanceUID", "1.2.3"))
    assert matches(c, "1.2.3\x00")
    (c,) = conditions(STUDY, ("PatientID", "PAT001"))
    assert matches(c, "PAT001 ")


def test_matches_unreadable_stored_date_never_matches() -> None:
    (c,) = conditions(STUDY, ("StudyDate", "-20991231"))
    assert not matches(c, "not a date")
