"""Attribute tables per query level (PS3.18 Tables 10.6.1-5 .. 10.6.1-7, PS3.4 C.6).

One place decides which attributes the index keeps for each level, so the
index backends, QIDO-RS and C-FIND all agree on what can be matched and returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword


class Level(StrEnum):
    """QIDO/C-FIND query levels, outermost first."""

    PATIENT = "patient"
    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


@dataclass(frozen=True)
class Attribute:
    """An attribute the index keeps: its tag, keyword, VR and level."""

    tag: int
    keyword: str
    vr: str
    level: Level

    @property
    def hex(self) -> str:
        """The tag as 8 upper-case hex digits, the DICOM JSON key."""
        return f"{self.tag:08X}"

    @property
    def column(self) -> str:
        """The column name an SQL index uses for it."""
        return self.keyword.lower()


def _attrs(level: Level, keywords: list[str]) -> tuple[Attribute, ...]:
    out = []
    for kw in keywords:
        tag = tag_for_keyword(kw)
        assert tag is not None, kw
        out.append(Attribute(tag, kw, dictionary_VR(tag), level))
    return tuple(out)


#: Patient-level attributes; QIDO reports them at study level (patients are not a QIDO resource).
PATIENT_ATTRIBUTES = _attrs(
    Level.PATIENT,
    ["PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex"],
)

#: Study-level attributes kept by the index (summary of the newest instance).
STUDY_ATTRIBUTES = _attrs(
    Level.STUDY,
    [
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "ReferringPhysicianName",
        "StudyID",
        "StudyDescription",
        "TimezoneOffsetFromUTC",
        "SpecificCharacterSet",
    ],
)

#: Series-level attributes kept by the index.
SERIES_ATTRIBUTES = _attrs(
    Level.SERIES,
    [
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "SeriesDate",
        "SeriesTime",
        "BodyPartExamined",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
    ],
)

#: Instance-level attributes kept by the index.
INSTANCE_ATTRIBUTES = _attrs(
    Level.INSTANCE,
    [
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
        "ContentDate",
        "ContentTime",
        "Rows",
        "Columns",
        "BitsAllocated",
        "NumberOfFrames",
        "AcquisitionDateTime",
    ],
)

#: Computed (aggregate) attributes returned per level; they are matched only where noted.
COMPUTED = {
    Level.STUDY: _attrs(
        Level.STUDY,
        [
            "ModalitiesInStudy",
            "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances",
            "InstanceAvailability",
            "RetrieveURL",
        ],
    ),
    Level.SERIES: _attrs(
        Level.SERIES, ["NumberOfSeriesRelatedInstances", "InstanceAvailability", "RetrieveURL"]
    ),
    Level.INSTANCE: _attrs(Level.INSTANCE, ["InstanceAvailability", "RetrieveURL"]),
}

#: Attributes stored per level (the index's columns).
STORED: dict[Level, tuple[Attribute, ...]] = {
    Level.STUDY: PATIENT_ATTRIBUTES + STUDY_ATTRIBUTES,
    Level.SERIES: SERIES_ATTRIBUTES,
    Level.INSTANCE: INSTANCE_ATTRIBUTES,
}

#: Level of the QIDO resource, and the levels whose attributes a query at it may match.
QUERYABLE_LEVELS: dict[Level, tuple[Level, ...]] = {
    Level.STUDY: (Level.STUDY,),
    Level.SERIES: (Level.STUDY, Level.SERIES),
    Level.INSTANCE: (Level.STUDY, Level.SERIES, Level.INSTANCE),
}

BY_TAG: dict[int, Attribute] = {a.tag: a for level in STORED.values() for a in level} | {
    a.tag: a for level in COMPUTED.values() for a in level if a.tag not in ()
}

#: Attributes that may be matched although they are computed.
MATCHABLE_COMPUTED = {tag_for_keyword("ModalitiesInStudy")}

#: The UID attribute that identifies each level.
UID_OF = {
    Level.STUDY: BY_TAG[0x0020000D],  # StudyInstanceUID
    Level.SERIES: BY_TAG[0x0020000E],  # SeriesInstanceUID
    Level.INSTANCE: BY_TAG[0x00080018],  # SOPInstanceUID
}


def resolve(key: str) -> int:
    """Return the tag for a QIDO key given as a keyword (``PatientID``) or hex tag (``00100020``).

    Raises ``KeyError`` when ``key`` is neither.
    """
    if len(key) == 8:
        try:
            tag = int(key, 16)
        except ValueError:
            pass
        else:
            if keyword_for_tag(tag) or tag >> 16 & 1:  # known, or private
                return tag
    found = tag_for_keyword(key)
    if found is None:
        raise KeyError(key)
    return found


def stored_at(level: Level, tag: int) -> Attribute | None:
    """The attribute with ``tag`` if the index stores it at ``level`` (patient counts as study)."""
    for attr in STORED[level]:
        if attr.tag == tag:
            return attr
    return None
