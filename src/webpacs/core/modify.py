"""Attribute edits of one data set, recorded as the standard asks of a modifying system.

An ``Edit`` sets an attribute (a keyword or tag and a value in DICOM's string form,
``\\`` between values) or removes it. ``apply`` changes a pydicom ``Dataset`` and keeps
the previous values in a new item of ``OriginalAttributesSequence`` (PS3.3 C.12.1.1.9):
``ModifiedAttributesSequence`` (the modified or removed attributes with their values
before), ``AttributeModificationDateTime``, ``ModifyingSystem``,
``SourceOfPreviousValues`` and ``ReasonForTheAttributeModification``.

Identifying UIDs are not edited here (IHE PIR: a correction keeps them); moving a series
to another study is the one change of ``StudyInstanceUID`` (``apply(..., move_to=...)``).
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydicom import config
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.valuerep import validate_value

from webpacs.core.attributes import STORED, Level, resolve
from webpacs.errors import InvalidRequest

#: Reasons PS3.3 C.12.1.1.9.2 defines for ``ReasonForTheAttributeModification``.
REASONS = ("COERCE", "CORRECT")
DEFAULT_REASON = "CORRECT"
MODIFYING_SYSTEM = "webpacs"

STUDY_INSTANCE_UID = 0x0020000D
#: Attributes no edit may touch: the identifiers (a correction keeps them; PS3.4 and
#: IHE PIR) and the modification record itself.
PROTECTED = frozenset(
    {
        0x00080016,  # SOPClassUID
        0x00080018,  # SOPInstanceUID
        0x0020000D,  # StudyInstanceUID (changed only by moving a series)
        0x0020000E,  # SeriesInstanceUID
        0x04000561,  # OriginalAttributesSequence
        0x00080005,  # SpecificCharacterSet (follows the values; set by apply)
    }
)
#: The patient and study attributes a series moved to another study takes from it.
STUDY_LEVEL_TAGS = tuple(
    a.tag for a in STORED[Level.STUDY] if a.tag not in PROTECTED and a.tag != 0x0020000D
)
_NUMBERS = {"US": int, "UL": int, "SS": int, "SL": int, "UV": int, "SV": int, "FL": float}
_NUMBERS["FD"] = float
_BINARY = {"OB", "OW", "OF", "OD", "OL", "OV", "UN", "SQ"}
_RANK = {Level.PATIENT: 1, Level.STUDY: 1, Level.SERIES: 2, Level.INSTANCE: 3}


@dataclass(frozen=True)
class Edit:
    """Set ``tag`` to ``value`` (DICOM string form; ``""`` empties it), or remove it
    when ``value`` is None."""

    tag: int
    value: str | None

    @property
    def keyword(self) -> str:
        return keyword_for_tag(self.tag) or f"{self.tag:08X}"


def level_of(tag: int) -> Level | None:
    """The level at which the index keeps ``tag`` (patient attributes: ``PATIENT``)."""
    for attrs in STORED.values():
        for a in attrs:
            if a.tag == tag:
                return a.level
    return None


def edit(key: str, value: str | None, target: Level) -> Edit:
    """A checked ``Edit`` of attribute ``key`` (keyword or 8 hex digits) at ``target`` level.

    Refused (``InvalidRequest``): unknown or private keys, identifiers, binary and
    sequence attributes, values their VR does not allow, and an attribute the index keeps
    at a level above ``target`` (a patient's name is changed for the study or patient,
    never for one series, which would make its study disagree with itself).
    """
    try:
        tag = resolve(key.strip())
    except KeyError:
        raise InvalidRequest(f"{key!r} is not a DICOM keyword or tag") from None
    name = keyword_for_tag(tag) or key
    if tag >> 16 & 1 or tag >> 16 in (0x0002, 0x7FE0) or not keyword_for_tag(tag):
        raise InvalidRequest(f"{name}: only public attributes of the data set can be edited")
    if tag in PROTECTED:
        raise InvalidRequest(f"{name} cannot be edited (identifiers stay; see 'move')")
    vr = dictionary_VR(tag)
    if vr in _BINARY or "or" in vr:
        raise InvalidRequest(f"{name} ({vr}) cannot be edited as text")
    level = level_of(tag)
    if level is not None and _RANK[level] < _RANK[target]:
        raise InvalidRequest(
            f"{name} is a {level.value}-level attribute: change it for the whole"
            f" {'patient or study' if level is Level.PATIENT else level.value}, not per {target}"
        )
    if value is not None:
        _value(tag, vr, value)  # checked now, so that a bad value fails before any write
    return Edit(tag, value)


def _value(tag: int, vr: str, text: str) -> object:
    """``text`` as the value pydicom keeps for ``vr``, validated (``InvalidRequest``)."""
    name = keyword_for_tag(tag)
    parts = text.split("\\") if text else []
    try:
        if vr in _NUMBERS:
            values: list[object] = [_NUMBERS[vr](p) for p in parts]
        else:
            values = list(parts)
        for v in values:
            validate_value(vr, v, config.RAISE)
    except (ValueError, KeyError) as e:
        raise InvalidRequest(f"{name}: {text!r} is not a valid {vr} value ({e})") from None
    if not values:
        return None if vr in _NUMBERS else ""
    return values[0] if len(values) == 1 else values


def apply(
    ds: Dataset,
    edits: Sequence[Edit],
    *,
    reason: str = DEFAULT_REASON,
    move_to: Dataset | None = None,
    now: datetime.datetime | None = None,
) -> list[str]:
    """Apply ``edits`` to ``ds``; returns the keywords that changed.

    ``move_to`` moves the instance to another study: a data set holding that study's
    ``StudyInstanceUID`` and its patient and study attributes (``STUDY_LEVEL_TAGS``),
    which the instance takes (those the study lacks are removed from the instance).
    When anything changed, the previous values (absent ones left out) are kept in a new
    item of ``OriginalAttributesSequence``; nothing changes otherwise.
    """
    if reason not in REASONS:
        raise InvalidRequest(f"reason must be one of {', '.join(REASONS)}, not {reason!r}")
    before = Dataset()
    changed: list[str] = []
    if move_to is not None:
        for tag in (STUDY_INSTANCE_UID, *STUDY_LEVEL_TAGS):
            old, new = ds.get(tag), move_to.get(tag)
            if (
                old is None
                and new is None
                or (old is not None and new is not None and old.value == new.value)
            ):
                continue
            if old is not None:
                before.add(copy.deepcopy(old))
                del ds[tag]
            if new is not None:
                ds.add(copy.deepcopy(new))
            changed.append(keyword_for_tag(tag))
    for e in edits:
        old = ds.get(e.tag)
        if e.value is None:
            if old is None:
                continue
            before.add(copy.deepcopy(old))
            del ds[e.tag]
        else:
            vr = dictionary_VR(e.tag)
            new = DataElement(e.tag, vr, _value(e.tag, vr, e.value))
            if old is not None and vr == old.VR and old.value == new.value:
                continue
            if old is not None:
                before.add(copy.deepcopy(old))
            ds.add(new)
        changed.append(e.keyword)
    if not changed:
        return []
    if any(dictionary_VR(e.tag) in ("PN", "LO", "SH", "LT", "ST", "UT", "UC") for e in edits):
        _widen_charset(ds, edits)
    item = Dataset()
    item.ModifiedAttributesSequence = DicomSequence([before])
    stamp = (now or datetime.datetime.now(datetime.UTC)).astimezone()
    item.AttributeModificationDateTime = stamp.strftime("%Y%m%d%H%M%S.%f%z")
    item.ModifyingSystem = MODIFYING_SYSTEM
    item.SourceOfPreviousValues = ""
    item.ReasonForTheAttributeModification = reason
    if "OriginalAttributesSequence" not in ds:
        ds.OriginalAttributesSequence = DicomSequence()
    ds.OriginalAttributesSequence.append(item)
    return changed


def _widen_charset(ds: Dataset, edits: Iterable[Edit]) -> None:
    """Declare UTF-8 (``ISO_IR 192``) when a new text value is not plain ASCII and the data
    set's character set is the default (so that the value can be encoded at all)."""
    if all((e.value or "").isascii() for e in edits):
        return
    current = ds.get("SpecificCharacterSet")
    if current is None or str(current.value or "") in ("", "ISO_IR 6"):
        ds.SpecificCharacterSet = "ISO_IR 192"
