"""C-FIND SCP: Patient Root and Study Root queries answered from the index (PS3.4 C.4.1).

The identifier is translated to the QIDO query model of ``core.query``: every
non-empty element the index can match at the level becomes a matching key (so single
value, list of UIDs, wildcard and range matching follow PS3.4 C.2.2.2 exactly as in
QIDO-RS), an empty one is universal matching, and other elements are return keys
(``includefield``). Each response carries only the requested keys, plus
*Query/Retrieve Level* and, when the data uses one, *Specific Character Set*
(PS3.4 C.4.1.1.3.2). PATIENT level (Patient Root only) is derived from the study-level
rows, grouped by *Patient ID* and *Issuer of Patient ID*.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated names
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
)

from webpacs.core import attributes
from webpacs.core.attributes import Level
from webpacs.core.query import Query, parse_qido
from webpacs.dimse.context import ScpContext, level_of, text
from webpacs.dimse.status import CANCEL, PENDING, Service, failure
from webpacs.errors import InvalidRequest
from webpacs.storage.base import Index

PATIENT_ROOT = frozenset(
    {
        PatientRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelMove,
        PatientRootQueryRetrieveInformationModelGet,
    }
)

#: Query/Retrieve Level (PS3.4 C.6) -> the index level whose rows answer it.
LEVELS = {
    "PATIENT": Level.STUDY,
    "STUDY": Level.STUDY,
    "SERIES": Level.SERIES,
    "IMAGE": Level.INSTANCE,
}

_QR_LEVEL = Tag(0x0008, 0x0052)
_CHARSET = Tag(0x0008, 0x0005)
_RETRIEVE_AE = Tag(0x0008, 0x0054)
_PATIENT_TAGS = {a.tag for a in attributes.PATIENT_ATTRIBUTES}
_PATIENT_COUNTS = {
    Tag(0x0020, 0x1200): "00201206",  # Number of Patient Related Studies (counted)
    Tag(0x0020, 0x1202): "00201206",  # ... Series: sum of the studies' series
    Tag(0x0020, 0x1204): "00201208",  # ... Instances: sum of the studies' instances
}


def check_level(identifier: Dataset, sop_class: str) -> str:
    """The identifier's level, checked against the information model (PS3.4 C.6.1, C.6.2)."""
    level = level_of(identifier)
    allowed = ("PATIENT", "STUDY", "SERIES", "IMAGE") if sop_class in PATIENT_ROOT else LEVELS
    if level not in allowed or (level == "PATIENT" and sop_class not in PATIENT_ROOT):
        model = "Patient Root" if sop_class in PATIENT_ROOT else "Study Root"
        raise InvalidRequest(f"QueryRetrieveLevel {level!r} is not a {model} level")
    return level


def _matchable(level: str, tag: int) -> bool:
    if level == "PATIENT":
        return tag in _PATIENT_TAGS
    index_level = LEVELS[level]
    if any(attributes.stored_at(lv, tag) for lv in attributes.QUERYABLE_LEVELS[index_level]):
        return True
    return index_level is Level.STUDY and tag in attributes.MATCHABLE_COMPUTED


def _lower(level: str) -> frozenset[int]:
    """Tags the index keeps at levels below ``level``: returned empty, never matched."""
    study_only = {a.tag for a in attributes.STUDY_ATTRIBUTES}
    series = {a.tag for a in attributes.STORED[Level.SERIES]}
    instance = {a.tag for a in attributes.STORED[Level.INSTANCE]}
    below = {
        "PATIENT": study_only | series | instance,
        "STUDY": series | instance,
        "SERIES": instance,
        "IMAGE": set(),
    }
    return frozenset(below[level])


def _element(identifier: Dataset, tag: int) -> DataElement:
    """An identifier element, its value read; one that cannot be read (an IS of 5,000
    digits) is an invalid identifier that names it, not an internal error."""
    try:
        return identifier[tag]
    except Exception as e:  # pydicom raises ValueError, OverflowError ... on such values
        name = keyword_for_tag(tag) or f"{tag:08X}"
        raise InvalidRequest(f"{name}: unreadable value ({type(e).__name__})") from None


def build_query(identifier: Dataset, level: str) -> tuple[Query, list[DataElement], frozenset[int]]:
    """The ``Query`` for an identifier at ``level``, the requested keys, and those left empty.

    Keys of a lower level than ``level`` are not allowed in the identifier
    (PS3.4 C.4.1.2.1); they are answered empty rather than refused.
    """
    params: list[tuple[str, str]] = []
    keys: list[DataElement] = []
    lower = _lower(level)
    blank = set(lower)
    for key in sorted(identifier.keys()):  # tags only: values are read by _element
        tag = int(key)
        elem = _element(identifier, tag)
        if elem.tag.group in (0x0000, 0x0002) or tag in (_QR_LEVEL, _CHARSET):
            continue
        keys.append(elem)
        if elem.VR == "SQ":
            blank.add(tag)  # sequence matching is not supported: returned empty
        elif tag in lower or tag in _PATIENT_COUNTS or tag == _RETRIEVE_AE:
            continue
        elif _matchable(level, tag):
            params.append((f"{tag:08X}", text(elem.value)))
        else:
            params.append(("includefield", f"{tag:08X}"))
    return parse_qido(LEVELS[level], params), keys, frozenset(blank)


def _patients(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group study rows into patient rows, with the patient-level counts (PS3.4 C.3.4)."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        patient_id, issuer = (
            str(row.get(t, {}).get("Value", [""])[0]) for t in ("00100020", "00100021")
        )
        key = (patient_id, issuer)
        patient = groups.get(key)
        counts = [int(row.get(t, {}).get("Value", [0])[0]) for t in ("00201206", "00201208")]
        if patient is None:
            patient = dict(row)
            patient["00201200"] = {"vr": "IS", "Value": [0]}
            patient["00201202"] = {"vr": "IS", "Value": [0]}
            patient["00201204"] = {"vr": "IS", "Value": [0]}
            groups[key] = patient
        patient["00201200"]["Value"][0] += 1
        patient["00201202"]["Value"][0] += counts[0]
        patient["00201204"]["Value"][0] += counts[1]
    return list(groups.values())


def _no_bulk(tag: str, vr: str, uri: str) -> bytes:
    """Bulk data is never a C-FIND return value: an empty value instead of the URI."""
    return b""


def response(
    row: dict[str, Any],
    keys: list[DataElement],
    blank: frozenset[int],
    level: str,
    ae_title: str,
) -> Dataset:
    """The C-FIND response identifier for one row: the requested keys only (PS3.4 C.4.1.1.3.2)."""
    names = [f"{int(e.tag):08X}" for e in keys if int(e.tag) not in blank] + ["00080005"]
    wanted = {k: row[k] for k in names if row.get(k)}
    found = Dataset.from_json(wanted, bulk_data_uri_handler=_no_bulk)
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    if _CHARSET in found:
        ds.SpecificCharacterSet = found.SpecificCharacterSet
    for elem in keys:
        if elem.tag in found:
            ds.add(found[elem.tag])
        elif elem.tag == _RETRIEVE_AE:
            ds.RetrieveAETitle = ae_title
        else:
            ds.add(DataElement(elem.tag, elem.VR, [] if elem.VR == "SQ" else None))
    return ds


def find(index: Index, identifier: Dataset, sop_class: str, ae_title: str) -> Iterator[Dataset]:
    """The response identifiers for a C-FIND request (PS3.4 C.4.1.3.1)."""
    level = check_level(identifier, sop_class)
    query, keys, blank = build_query(identifier, level)
    rows = index.search(query).rows
    if level == "PATIENT":
        rows = _patients(rows)
    for row in rows:
        yield response(row, keys, blank, level, ae_title)


def handle_find(event: Any, ctx: ScpContext) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    """C-FIND SCP (PS3.4 C.4.1): a *Pending* response per match, then *Success*.

    A C-CANCEL stops it with *Cancel*; every error becomes a failure status
    (``status.py``) and never escapes.
    """
    try:
        ctx.allow(event, "find")
        sop_class = str(event.request.AffectedSOPClassUID)
        responses = list(find(ctx.store.index, event.identifier, sop_class, ctx.ae_title))
    except Exception as exc:  # handler exceptions never escape (status.py)
        yield failure(Service.FIND, exc), None
        return
    for ds in responses:
        if event.is_cancelled:
            yield CANCEL, None
            return
        yield PENDING, ds
