"""PS3.15 Annex E de-identification of one data set, with the table from a library.

The action of each attribute (Table E.1-1: ``X`` remove, ``Z`` empty, ``D`` dummy value,
``U`` new UID, and the combined ``Z/D``, ``X/Z``, ``X/D``, ``X/Z/D``, ``X/Z/U*``) comes
from ``dicom-anonymizer`` (KitwareMedical), which carries the table of the current
standard (``dicomfields_2026c``); no table is written here. Two options change it by a
rule the standard states for every attribute concerned, not by a list:

* ``retain-dates`` (Retain Longitudinal Temporal Information with Full Dates Option,
  E.3.6): every attribute of the table whose VR is DA, DT or TM is kept;
* ``retain-uids`` (Retain UIDs Option, E.3.9): every ``U`` attribute is kept.

The actions apply at every depth of the data set (a SEG's references, a Content
Sequence...). New UIDs come from one ``UidMap`` per run, so a UID maps to the same new
one wherever it appears, and references between instances still resolve. Private
attributes are removed (E.3.10's safe private attributes are not kept).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from webpacs.errors import ConfigError, InvalidRequest

TABLE_VERSION = "dicomfields_2026c"
#: dicom-anonymizer's categories, as Table E.1-1 writes the action
CODES = {
    "D_TAGS": "D",
    "Z_TAGS": "Z",
    "X_TAGS": "X",
    "U_TAGS": "U",
    "Z_D_TAGS": "Z/D",
    "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D",
    "X_Z_D_TAGS": "X/Z/D",
    "X_Z_U_STAR_TAGS": "X/Z/U*",
}
#: Options and their codes (PS3.16 CID 7050) for DeidentificationMethodCodeSequence.
OPTIONS = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "retain-dates": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "retain-uids": ("113110", "Retain UIDs Option"),
}
_TEMPORAL = {"DA", "DT", "TM"}
#: A combined action without the IOD's attribute types at hand: the choice that keeps
#: every IOD valid (a dummy where a value may be required, empty where one may be).
_RESOLVE = {"Z/D": "D", "X/Z": "Z", "X/D": "D", "X/Z/D": "D", "X/Z/U*": "U*"}
_DUMMY: dict[str, object] = {
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "DS": "0",
    "IS": "0",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "FL": 0.0,
    "FD": 0.0,
}
PATIENT_NAME, PATIENT_ID = 0x00100010, 0x00100020


@dataclass(frozen=True)
class Rule:
    """An attribute, or a repeating group (``mask``), and its Table E.1-1 action."""

    tag: int
    mask: int
    action: str


@lru_cache(maxsize=1)
def library_table() -> tuple[Rule, ...]:
    """Table E.1-1 as dicom-anonymizer carries it (the Basic Profile's actions)."""
    try:
        from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
    except ImportError as e:  # pragma: no cover (the extra is part of the test set)
        raise ConfigError(
            "de-identification needs dicom-anonymizer: pip install 'webpacs[deidentify]'"
        ) from e
    tables = dicom_anonymization_database_selector(TABLE_VERSION)
    rules = []
    for category, code in CODES.items():
        for t in tables[category]:
            if len(t) == 2:
                rules.append(Rule(t[0] << 16 | t[1], 0xFFFFFFFF, code))
            else:  # (group, element, group mask, element mask): a repeating group
                rules.append(Rule(t[0] << 16 | t[1], t[2] << 16 | t[3], code))
    return tuple(rules)


def profile_names() -> tuple[str, ...]:
    return tuple(OPTIONS)


@dataclass
class Profile:
    """The actions of the Basic Profile with ``options``, by tag."""

    options: tuple[str, ...] = ("basic",)
    exact: dict[int, str] = field(default_factory=dict)
    groups: list[Rule] = field(default_factory=list)

    @classmethod
    def build(cls, options: Iterable[str]) -> Profile:
        chosen = tuple(dict.fromkeys(["basic", *options]))
        unknown = [o for o in chosen if o not in OPTIONS]
        if unknown:
            raise InvalidRequest(f"unknown profile option {', '.join(unknown)}")
        prof = cls(chosen)
        for rule in library_table():
            action = rule.action
            vr = _vr(rule.tag) if rule.mask == 0xFFFFFFFF else ""
            if "retain-dates" in chosen and vr in _TEMPORAL:
                action = "K"
            if "retain-uids" in chosen and action == "U":
                action = "K"
            if rule.mask == 0xFFFFFFFF:
                prof.exact[rule.tag] = action
            else:
                prof.groups.append(Rule(rule.tag, rule.mask, action))
        return prof

    def action(self, tag: int) -> str | None:
        found = self.exact.get(tag)
        if found is not None:
            return found
        for g in self.groups:
            if tag & g.mask == g.tag & g.mask:
                return g.action
        return None

    def removed(self) -> set[int]:
        """Tags this profile removes outright (``X``), for checks."""
        return {t for t, a in self.exact.items() if a == "X"}


def _vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return ""


class UidMap:
    """Original UID -> new UID, the same new one every time within a run."""

    def __init__(self) -> None:
        self.map: dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        uid = str(uid)
        if not uid:
            return uid
        if uid not in self.map:
            self.map[uid] = generate_uid()
        return self.map[uid]


class Pseudonyms:
    """Original Patient ID -> a pseudonym, the same within a run (or the one given)."""

    def __init__(self, fixed: str | None = None) -> None:
        self.fixed = fixed
        self.map: dict[str, str] = {}

    def __call__(self, patient_id: str) -> str:
        if self.fixed:
            return self.fixed
        return self.map.setdefault(patient_id, "ANON-" + secrets.token_hex(4).upper())


def deidentify(ds: Dataset, profile: Profile, uids: UidMap, pseudonym: str) -> None:
    """De-identify ``ds`` in place (its pixel data is left as it is)."""
    ds.remove_private_tags()
    _clean(ds, profile, uids)
    ds.PatientName = pseudonym
    ds.PatientID = pseudonym
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = f"webpacs PS3.15 E.1 ({', '.join(profile.options)})"[:64]
    items = []
    for option in profile.options:
        code, meaning = OPTIONS[option]
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, "DCM", meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = DicomSequence(items)
    temporal = "UNMODIFIED" if "retain-dates" in profile.options else "REMOVED"
    ds.LongitudinalTemporalInformationModified = temporal


def _clean(ds: Dataset, profile: Profile, uids: UidMap) -> None:
    for elem in list(ds):
        tag = int(elem.tag)
        action = profile.action(tag)
        if action in _RESOLVE:
            action = _RESOLVE[action]
        if action == "X":
            del ds[tag]
            continue
        if elem.VR == "SQ":
            if action == "Z":
                elem.value = DicomSequence()
                continue
            for item in elem.value:  # D, U*, K and unlisted: keep the items, cleaned
                _clean(item, profile, uids)
            continue
        if action in ("U", "U*") or (action == "D" and elem.VR == "UI"):
            values = elem.value if elem.VM > 1 else [elem.value]
            new = [uids(v) for v in values if v]
            elem.value = new if elem.VM > 1 else (new[0] if new else "")
        elif action == "Z":
            ds[tag] = DataElement(tag, elem.VR, None if elem.VR in _NUMERIC else "")
        elif action == "D":
            ds[tag] = DataElement(tag, elem.VR, _dummy(elem.VR))


_NUMERIC = {"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "OB", "OW", "OF", "OD", "OL", "UN"}


def _dummy(vr: str) -> object:
    if vr in _DUMMY:
        return _DUMMY[vr]
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return b""
    if vr == "UR":
        return "http://anonymized.invalid"
    return "ANONYMIZED"
