"""What the CouchDB index keeps in the database, and how QIDO conditions become Mango.

Documents (one database):

* ``<SOP Instance UID>`` (``type: "instance"``): the record fields, the DICOM JSON as a
  string ``m`` (bulk data as relative URIs), the frame map ``f``, the instance-level
  projection ``j``, every normalized match value in ``a`` (all levels: an instance
  carries its own patient, study and series values), a sort key ``k`` and ``vh``, a
  31-bit hash of (SOP Instance UID, digest) whose sum is the series version. Deleting
  an instance leaves a tombstone that keeps ``study``/``series``/``sop`` for the
  change feed.
* ``series:<uid>`` and ``study:<uid>``: summaries following the newest instance
  (``rep``, ``latest``), with the level's projection ``j`` and match values ``a``.
* ``conflict:<study>:<id>``: study attributes that disagreed between instances.
* ``label:<study>:<series>:<label>``: labels, and the edges ``r`` of instance documents
  (see ``refs``, which also holds their views).

Aggregates come from the views of ``_design/webpacs`` (``agg``: ``_stats`` of ``vh``
by study, series and modality; ``mods``: studies by modality; ``newest``: instances
by series/study and received time; ``attrs``: every attribute value, see
``couchdb.attrs``). The design document carries ``DESIGN_VERSION``
and is replaced when it differs; the Mango indexes live in design documents named
with the same version, and older ones are removed.
"""

from __future__ import annotations

import re
from typing import Any

from webpacs.core.attributes import Level
from webpacs.core.query import Condition
from webpacs.storage.couchdb import attrs, refs

#: Bump when a view or an index definition changes: existing databases are upgraded
#: (6: the reference graph's and labels' views and index, ``refs``; 7: the attribute
#: values' view, ``attrs``; 8: instances per series, ``nser``, for a QIDO page's counts
#: in one multi-key query).
DESIGN_VERSION = 8
DESIGN_ID = "_design/webpacs"

VIEWS: dict[str, dict[str, str]] = {
    "attrs": attrs.VIEW,
    "agg": {
        "map": "function (doc) { if (doc.type === 'instance') {"
        " emit([doc.study, doc.series, (doc.a && doc.a.Modality) || ''], doc.vh); } }",
        "reduce": "_stats",
    },
    "nser": {
        "map": "function (doc) { if (doc.type === 'instance') {"
        " emit([doc.study, doc.series], null); } }",
        "reduce": "_count",
    },
    "mods": {
        "map": "function (doc) { if (doc.type === 'instance') {"
        " emit([(doc.a && doc.a.Modality) || '', doc.study], null); } }",
        "reduce": "_count",
    },
    "names": {
        "map": "function (doc) { if (doc.type === 'study' && doc.a && doc.a.PatientName) {"
        " var n = doc.a.PatientName.toLowerCase(); emit(n, null);"
        " n.split(/[ ^=,]+/).forEach(function (c) { if (c) { emit(c, null); } }); } }",
    },
    "newest": {
        "map": "function (doc) { if (doc.type === 'instance') {"
        " emit(['se', doc.series, doc.received], null);"
        " emit(['st', doc.study, doc.received], null); } }",
    },
    **refs.VIEWS,
}

#: Mango indexes: name -> fields. Each query level's documents are selected by ``type``.
MANGO_INDEXES: dict[str, list[str]] = {
    "sortkey": ["type", "k"],
    "study": ["type", "study"],
    "series": ["type", "series"],
    "patientid": ["type", "a.PatientID"],
    "patientname": ["type", "a.PatientName"],
    "studydate": ["type", "a.StudyDate"],
    "accession": ["type", "a.AccessionNumber"],
    "modality": ["type", "a.Modality"],
    "sopclass": ["type", "a.SOPClassUID"],
    **refs.MANGO_INDEXES,
}

#: Per level, the fields a condition can use an index on (besides UID scoping).
INDEXED: dict[Level, frozenset[str]] = {
    Level.STUDY: frozenset(
        {"study", "a.PatientID", "a.PatientName", "a.StudyDate", "a.AccessionNumber"}
    ),
    Level.SERIES: frozenset({"study", "series", "a.Modality"}),
    Level.INSTANCE: frozenset({"study", "series", "sop", "a.SOPClassUID"}),
}

_UID_FIELDS = {"StudyInstanceUID": "study", "SeriesInstanceUID": "series", "SOPInstanceUID": "sop"}


def keyword_of(field: str) -> str:
    """The attribute keyword a document field holds."""
    names = {v: k for k, v in _UID_FIELDS.items()}
    return names.get(field, field.removeprefix("a."))


def index_ddoc(name: str) -> str:
    """The design document (without ``_design/``) holding one Mango index."""
    return f"webpacs-idx-{name}-v{DESIGN_VERSION}"


def design_document() -> dict[str, Any]:
    """The views' design document, versioned."""
    return {"_id": DESIGN_ID, "language": "javascript", "views": VIEWS, "version": DESIGN_VERSION}


def field_of(cond: Condition) -> str:
    """The document field a condition applies to."""
    kw = cond.attribute.keyword
    return _UID_FIELDS.get(kw, f"a.{kw}")


def _ci(text: str) -> str:
    """A regex matching ``text`` literally, ignoring case, without inline flags.

    (PouchDB evaluates ``$regex`` with JavaScript, CouchDB with PCRE; ``(?i)`` is not
    portable, character classes are.)
    """
    out = []
    for ch in text:
        lo, up = ch.lower(), ch.upper()
        out.append(f"[{re.escape(lo)}{re.escape(up)}]" if lo != up else re.escape(ch))
    return "".join(out)


def _wildcard_regex(pattern: str, *, ignore_case: bool) -> str:
    body = []
    for ch in pattern:
        if ch == "*":
            body.append(".*")
        elif ch == "?":
            body.append(".")
        else:
            body.append(_ci(ch) if ignore_case else re.escape(ch))
    return "^" + "".join(body) + "$"


def literal_prefix(pattern: str) -> str:
    """The characters of a wildcard pattern before its first ``*`` or ``?``."""
    return re.split(r"[*?]", pattern, maxsplit=1)[0]


def selector_for(cond: Condition) -> dict[str, Any]:
    """A Mango selector for one QIDO condition (PS3.4 C.2.2.2 semantics, as SQLite does)."""
    field = field_of(cond)
    v = cond.values
    if cond.kind == "range":
        lo, hi = v
        ops: dict[str, Any] = {}
        if lo:
            ops["$gte"] = lo
        if hi:
            ops["$lte"] = hi
        return {field: ops}
    if cond.kind == "list":
        return {field: {"$in": list(v)}}
    if cond.kind == "wildcard":
        ops = {"$regex": _wildcard_regex(v[0], ignore_case=cond.fuzzy)}
        prefix = literal_prefix(v[0])
        if prefix and not cond.fuzzy:  # a range the index can use
            ops["$gte"] = prefix
            ops["$lt"] = prefix + "\ufff0"
        return {field: ops}
    if cond.fuzzy:  # PN: whole name or any component's prefix, ignoring case
        if any(sep in v[0] for sep in " ^=,"):
            return {field: {"$regex": "^" + _ci(v[0]) + "$"}}
        return {field: {"$regex": "(^|[ ^=,])" + _ci(v[0])}}
    return {field: {"$eq": v[0]}}


def name_prefix(cond: Condition) -> str | None:
    """For a fuzzy PatientName condition: the lower-case prefix the ``names`` view finds."""
    if not cond.fuzzy or cond.attribute.keyword != "PatientName":
        return None
    prefix = literal_prefix(cond.values[0]) if cond.kind == "wildcard" else cond.values[0]
    return prefix.lower() or None


def indexable(cond: Condition, level: Level) -> bool:
    """Whether a Mango index can narrow the documents for this condition."""
    if field_of(cond) not in INDEXED[level]:
        return False
    if cond.fuzzy:
        return False
    return cond.kind != "wildcard" or bool(literal_prefix(cond.values[0]))


def _num(value: str | None) -> str:
    """An integer string as a fixed-width sort key; missing values sort first."""
    try:
        return f"{int(str(value).split(chr(92))[0]) + 2**40:013d}"
    except (TypeError, ValueError):
        return ""


def sort_key(level: Level, attrs: dict[str, str], uids: tuple[str, str, str]) -> str:
    """The level's result order as one string (study level: listed newest first)."""
    study, series, sop = uids
    if level is Level.STUDY:
        return f"{attrs.get('StudyDate', '')}{attrs.get('StudyTime', '')}|{study}"
    if level is Level.SERIES:
        return f"{study}|{_num(attrs.get('SeriesNumber'))}|{series}"
    return (
        f"{study}|{_num(attrs.get('SeriesNumber'))}|{series}"
        f"|{_num(attrs.get('InstanceNumber'))}|{sop}"
    )
