"""QIDO-RS queries as C-FIND identifiers, and C-FIND responses as QIDO-RS rows.

A ``Query`` (``core.query``) holds what PS3.4 C.2.2.2 matching can express, so each
condition becomes the value of its attribute in the identifier (PS3.4 C.4.1.1.3.1):

=========  =======================================================
kind       identifier value
=========  =======================================================
single     the value (dates, times as normalized, which is valid)
list       the values joined by ``\\`` (UIDs, code strings)
wildcard   the pattern with ``*`` and ``?``
range      ``lo-hi``, ``lo-`` or ``-hi``
=========  =======================================================

Fuzzy person-name matching has no DIMSE equivalent without extended negotiation: the
key is sent universal (empty) and the condition applied to the responses here, as
are all conditions (``keep``), since remotes differ in how strictly they match (case,
padding). Other attributes are return keys: each level's default QIDO attributes
(PS3.18 Table 10.6.3-3 and -4) and the ``includefield`` ones.

In Study Root, keys of a level above the query level are limited to the unique keys
(PS3.4 C.4.1.2.1, hierarchical query). A SERIES search with study-level conditions
therefore first finds the studies, then the series of each (``series_plan``).
"""

from __future__ import annotations

from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from webpacs.core import attributes
from webpacs.core.attributes import Level
from webpacs.core.query import Condition, Query, matches

_STUDY_UID = 0x0020000D
_SERIES_UID = 0x0020000E
_AVAILABILITY = "00080056"
_RETRIEVE_AE = "00080054"
_RETRIEVE_URL = "00081190"
#: Attributes only the local index can compute, or that we set ourselves.
_NOT_ASKED = {0x00080056, 0x00081190, 0x00080054, 0x00080005}

_RETURN_KEYS: dict[Level, tuple[int, ...]] = {
    Level.STUDY: tuple(a.tag for a in attributes.STORED[Level.STUDY])
    + tuple(a.tag for a in attributes.COMPUTED[Level.STUDY]),
    Level.SERIES: (_STUDY_UID,)
    + tuple(a.tag for a in attributes.STORED[Level.SERIES])
    + tuple(a.tag for a in attributes.COMPUTED[Level.SERIES]),
}
_LEVEL_NAME = {Level.STUDY: "STUDY", Level.SERIES: "SERIES"}


def _value(cond: Condition) -> str:
    if cond.fuzzy:
        return ""  # applied to the responses (keep)
    if cond.kind == "list":
        return "\\".join(cond.values)
    if cond.kind == "range":
        return f"{cond.values[0]}-{cond.values[1]}"
    return cond.values[0]


def _element(tag: int, value: str) -> DataElement | None:
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return None  # private or unknown: no VR to send it with
    if vr == "SQ":
        return DataElement(tag, vr, [])
    if vr in ("US", "SS", "UL", "SL", "FL", "FD", "US or SS", "OB", "OW", "OB or OW", "UN"):
        return None if value else DataElement(tag, vr.split()[0], None)
    if not value:
        return DataElement(tag, vr, None)
    return DataElement(tag, vr, value)


def identifier(
    level: Level,
    conditions: tuple[Condition, ...],
    extra: frozenset[int] = frozenset(),
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> Dataset:
    """The Study Root identifier at ``level`` (STUDY or SERIES) for these conditions."""
    values: dict[int, str] = {tag: "" for tag in _RETURN_KEYS[level]}
    for tag in extra:
        if tag not in _NOT_ASKED:
            values.setdefault(tag, "")
    for cond in conditions:
        values[cond.attribute.tag] = _value(cond)
    if study_uid is not None:
        values[_STUDY_UID] = study_uid
    if series_uid is not None:
        values[_SERIES_UID] = series_uid
    ds = Dataset()
    ds.QueryRetrieveLevel = _LEVEL_NAME[level]
    for tag in sorted(values):
        if tag in _NOT_ASKED:
            continue
        elem = _element(tag, values[tag])
        if elem is not None:
            ds.add(elem)
    return ds


def _at(level: Level, cond: Condition) -> bool:
    return cond.attribute.level in (
        (Level.STUDY, Level.PATIENT) if level is Level.STUDY else (level,)
    )


def study_identifier(query: Query) -> Dataset:
    """The STUDY-level identifier of a study search (PS3.18 10.6 ``/studies``)."""
    return identifier(Level.STUDY, query.conditions, query.includefields, study_uid=query.study_uid)


def series_plan(query: Query) -> tuple[Dataset | None, Dataset]:
    """For a series search: the STUDY-level identifier to run first (or None), and the
    SERIES-level identifier (its *Study Instance UID* set per study found, when there
    is a first step)."""
    study_conds = tuple(c for c in query.conditions if _at(Level.STUDY, c))
    series_conds = tuple(c for c in query.conditions if not _at(Level.STUDY, c))
    series = identifier(
        Level.SERIES,
        series_conds,
        query.includefields,
        study_uid=query.study_uid,
        series_uid=query.series_uid,
    )
    if not study_conds:
        return None, series
    first = identifier(Level.STUDY, study_conds, query.includefields, study_uid=query.study_uid)
    return first, series


def _no_bulk(tag: str, vr: str, uri: str) -> str:
    return ""


def row(ds: Dataset) -> dict[str, Any]:
    """A C-FIND response identifier as a QIDO-RS row (DICOM JSON, PS3.18 F.2)."""
    out: dict[str, Any] = ds.to_json_dict(bulk_data_threshold=1 << 30)
    out.pop("00080052", None)  # Query/Retrieve Level
    return out


def _stored(value: dict[str, Any]) -> list[str] | None:
    if "Value" not in value:
        return None
    items = []
    for v in value["Value"]:
        if isinstance(v, dict):
            v = v.get("Alphabetic", "")
        items.append(str(v))
    return items


def keep(query: Query, item: dict[str, Any]) -> bool:
    """Whether a remote row satisfies every condition it has a value for (PS3.4 C.2.2.2).

    A remote that did not return a matching key cannot be checked on it: the row is kept.
    """
    for cond in query.conditions:
        value = item.get(f"{cond.attribute.tag:08X}")
        if value is None:
            continue
        if not matches(cond, _stored(value)):
            return False
    return True


def mark_remote(item: dict[str, Any], title: str, *, retrievable: bool) -> dict[str, Any]:
    """Mark a row as found on the remote AE ``title``.

    *Instance Availability* (0008,0056) is ``NEARLINE`` (PS3.4 C.4.1.1.3.2: retrievable,
    but not at once: webpacs retrieves it on first access) and *Retrieve AE Title*
    (0008,0054) names the remote, as a C-FIND SCP would (PS3.4 C.4.1.1.3.2). When
    webpacs cannot retrieve it (no ``proxyAe``), *Retrieve URL* (0008,1190) is left
    empty: the study is only reachable through the remote AE.
    """
    item[_AVAILABILITY] = {"vr": "CS", "Value": ["NEARLINE"]}
    if not _stored(item.get(_RETRIEVE_AE, {})):
        item[_RETRIEVE_AE] = {"vr": "AE", "Value": [title]}
    if not retrievable:
        item[_RETRIEVE_URL] = {"vr": "UR"}
    return item


def uid_of(level: Level, item: dict[str, Any]) -> str | None:
    """The row's study (STUDY) or series (SERIES) instance UID."""
    value = _stored(item.get(f"{attributes.UID_OF[level].tag:08X}", {}))
    return value[0] if value else None
