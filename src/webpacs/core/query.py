"""The QIDO-RS query model, shared by QIDO-RS, DIMSE C-FIND and every index backend.

``parse_qido`` turns the query parameters of a QIDO-RS request (PS3.18 8.3.4,
10.6.1) into a ``Query``: a level, a tuple of ``Condition`` s (one per matching
key that is not universal) and the paging and includefield options. Index
backends translate the conditions into their own query language; ``matches``
evaluates one condition against one stored value in memory, and is the reference
semantics the backends' contract tests compare against.

Matching follows PS3.4 C.2.2.2:

==========  ===================================================  ===============
kind        query value                                          PS3.4 section
==========  ===================================================  ===============
single      one value, exact match (PN fuzzy: see ``matches``)   C.2.2.2.1
list        UIDs or CS values separated by ``\\`` or ``,``       C.2.2.2.2, .8
wildcard    ``*`` (any sequence) and ``?`` (one character)       C.2.2.2.4
range       ``lo-hi``, ``lo-``, ``-hi`` for DA, TM, DT           C.2.2.2.5
(none)      empty value or ``*``: universal matching             C.2.2.2.3
==========  ===================================================  ===============

Dates and times are compared as normalized, fixed-width strings (``normalize_date``,
``normalize_time``, ``normalize_datetime``), so that a plain string comparison, in
Python or in SQL, orders them. The upper end of a range given with reduced precision
stands for the whole interval it names: ``StudyTime=-10`` keeps times up to
``105959.999999`` and ``AcquisitionDateTime=-20200115`` keeps the whole day.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from webpacs.core import attributes, numbers
from webpacs.core.attributes import Attribute, Level
from webpacs.core.research import LABELS_FIELD, ResearchKey, is_research_key, parse_research_key
from webpacs.core.uids import check_uid
from webpacs.errors import InvalidRequest

if TYPE_CHECKING:
    from webpacs.core.anyattr import PathMatch

__all__ = [
    "Condition",
    "Query",
    "StoredValue",
    "matches",
    "normalize_date",
    "normalize_datetime",
    "normalize_time",
    "parse_qido",
]

#: VRs whose values are integers (PS3.5 6.2).
INTEGER_VRS = frozenset({"IS", "US", "SS", "UL", "SL", "UV", "SV"})
#: VRs whose values are decimal numbers (PS3.5 6.2).
DECIMAL_VRS = frozenset({"DS", "FL", "FD"})
#: VRs whose values may contain a backslash, so are never split on one (PS3.5 6.2).
_UNSPLIT_VRS = frozenset({"LT", "ST", "UT", "UR"})
#: Reserved QIDO-RS query keys (PS3.18 8.3.4, Table 8.3.4-1).
RESERVED_KEYS = frozenset({"includefield", "limit", "offset", "fuzzymatching"})

_DA_RE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")
_DA_LEGACY_RE = re.compile(r"([0-9]{4})\.([0-9]{2})\.([0-9]{2})")
_TM_RE = re.compile(r"([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.([0-9]{1,6}))?)?)?")
_DT_RE = re.compile(
    r"([0-9]{4})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})"
    r"(?:([0-9]{2})(?:\.([0-9]{1,6}))?)?)?)?)?)?([+-][0-9]{4})?"
)

#: A value as stored: one value, several (a sequence, or a string joined by ``\\``), or none.
StoredValue = str | int | float | Sequence[str | int | float] | None


@dataclass(frozen=True)
class Condition:
    """One matching key of a query (PS3.4 C.2.2.2).

    ``values`` holds, per ``kind``: ``single`` ``(v,)``; ``list`` ``(v1, v2, ...)``;
    ``wildcard`` ``(pattern,)`` with ``*`` and ``?``; ``range`` ``(lo, hi)`` with ``""``
    for an open end. Dates, times and date-times are normalized (see the module
    docstring); integers are in canonical form (``"05"`` -> ``"5"``).

    An extension key (``webpacs.core.anyattr``: any attribute, or a path into sequences,
    that the standard does not match at the query's level) has ``kind`` ``"path"``, its
    value as given in ``values`` and its condition in ``path``.
    """

    attribute: Attribute
    kind: str
    values: tuple[str, ...]
    fuzzy: bool = False
    path: PathMatch | None = None


@dataclass(frozen=True)
class Query:
    """A parsed QIDO-RS query (PS3.18 10.6.1).

    ``includefields`` holds the tags named by ``includefield`` and the tags of the
    matching keys (PS3.18 10.6.3.3: match keys are returned, universal ones included).
    ``limit`` is already capped by the server's maximum, when there is one.
    """

    level: Level
    conditions: tuple[Condition, ...]
    study_uid: str | None = None
    series_uid: str | None = None
    includefields: frozenset[int] = frozenset()
    include_all: bool = False
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False
    #: the webpacs research keys (``core.research``): by reference, has/lacks, labels
    research: tuple[ResearchKey, ...] = ()
    #: ``includefield=webpacsLabels``: rows carry their labels
    include_labels: bool = False


# --------------------------------------------------------------------------- normalization


def normalize_date(v: str) -> str:
    """Normalize a stored DA value (PS3.5 6.2) to ``YYYYMMDD``.

    Accepts the legacy ``YYYY.MM.DD`` form (ACR-NEMA); returns ``""`` for an empty or
    unreadable value, which then matches nothing.
    """
    v = v.strip()
    m = _DA_RE.fullmatch(v) or _DA_LEGACY_RE.fullmatch(v)
    return "".join(m.groups()) if m else ""


def _pad_time(m: re.Match[str], *, high: bool = False) -> str:
    hh, mm, ss, frac = m.groups()
    fill = "9" if high else "0"
    return (
        f"{hh}{mm or ('59' if high else '00')}{ss or ('59' if high else '00')}"
        f".{(frac or '').ljust(6, fill)}"
    )


def normalize_time(v: str, *, high: bool = False) -> str:
    """Normalize a TM value (PS3.5 6.2) to ``HHMMSS.FFFFFF``: ``"0930"`` -> ``"093000.000000"``.

    Missing components are filled with zeros, or with their maximum when ``high`` is
    true (the upper end of a range). Accepts the legacy ``HH:MM:SS`` form; returns ``""``
    for an empty or unreadable value.
    """
    v = v.strip().replace(":", "")
    m = _TM_RE.fullmatch(v)
    return _pad_time(m, high=high) if m else ""


def normalize_datetime(v: str, *, high: bool = False) -> str:
    """Normalize a DT value (PS3.5 6.2) to ``YYYYMMDDHHMMSS.FFFFFF``.

    The ``&ZZXX`` UTC offset is dropped (values are compared as recorded). Missing
    components are filled with their minimum (month and day ``01``, time zeros), or
    their maximum when ``high`` is true. Returns ``""`` for an empty or unreadable value.
    """
    m = _DT_RE.fullmatch(v.strip())
    if not m:
        return ""
    yyyy, mo, dd, hh, mi, ss, frac, _offset = m.groups()
    lo = ("01", "01", "00", "00", "00")
    hi = ("12", "31", "23", "59", "59")
    pad = hi if high else lo
    parts = [p or d for p, d in zip((mo, dd, hh, mi, ss), pad, strict=True)]
    return f"{yyyy}{''.join(parts)}.{(frac or '').ljust(6, '9' if high else '0')}"


# --------------------------------------------------------------------------- validation


def _check_date(name: str, v: str) -> str:
    m = _DA_RE.fullmatch(v)
    if m:
        try:
            datetime.date(*(int(g) for g in m.groups()))
        except ValueError:
            m = None
    if not m:
        raise InvalidRequest(f"{name}: invalid date {v!r} (expected YYYYMMDD)")
    return v


def _check_time(name: str, v: str, *, high: bool = False) -> str:
    m = _TM_RE.fullmatch(v)
    if not m or int(m[1]) > 23 or int(m[2] or 0) > 59 or int(m[3] or 0) > 60:
        raise InvalidRequest(f"{name}: invalid time {v!r} (expected HH[MM[SS[.FFFFFF]]])")
    return _pad_time(m, high=high)


def _check_datetime(name: str, v: str, *, high: bool = False) -> str:
    m = _DT_RE.fullmatch(v)
    ok = m is not None
    if m:
        yyyy, mo, dd, hh, mi, ss, _frac, _offset = m.groups()
        try:
            datetime.date(int(yyyy), int(mo or 1), int(dd or 1))
        except ValueError:
            ok = False
        ok = ok and int(hh or 0) <= 23 and int(mi or 0) <= 59 and int(ss or 0) <= 60
    if not ok:
        raise InvalidRequest(
            f"{name}: invalid date-time {v!r} (expected YYYY[MM[DD[HH[MM[SS[.FFFFFF]]]]]][&ZZXX])"
        )
    return normalize_datetime(v, high=high)


# --------------------------------------------------------------------------- parsing


def _split_list(value: str) -> list[str]:
    return [p.strip() for p in re.split(r"[\\,]", value)]


def _find_attribute(level: Level, key: str) -> Attribute | None:
    """The attribute a standard key matches at ``level``; None for an extension key."""
    if "." in key:
        return None  # a path into sequences
    try:
        tag = attributes.resolve(key)
    except KeyError:
        raise InvalidRequest(f"{key}: unknown attribute {key!r}") from None
    for lvl in attributes.QUERYABLE_LEVELS[level]:
        attr = attributes.stored_at(lvl, tag)
        if attr is not None:
            return attr
    if level is Level.STUDY and tag in attributes.MATCHABLE_COMPUTED:
        for attr in attributes.COMPUTED[Level.STUDY]:
            if attr.tag == tag:
                return attr
    computed = {a.tag: a for lv in attributes.COMPUTED.values() for a in lv}
    if tag not in computed:
        return None  # any other attribute: an extension key
    label = computed[tag].keyword
    raise InvalidRequest(f"{key}: attribute {label} cannot be matched at {level.value} level")


def _valid_offset(offset: str) -> bool:
    """A UTC offset ``&ZZXX`` within -1200..+1400 (PS3.5 Table 6.2-1, DT)."""
    return int(offset[1:3]) <= 14 and int(offset[3:5]) <= 59


def _range(attr: Attribute, name: str, value: str) -> tuple[str, str] | None:
    """Split ``lo-hi`` into its ends, or return None if ``value`` is not a range."""
    if "-" not in value:
        return None
    if attr.vr == "DT":
        # "-" also signs a UTC offset: a whole value that is one DT is not a range.
        single = _DT_RE.fullmatch(value)
        if single and (single[8] is None or _valid_offset(single[8])):
            return None
        m = re.fullmatch(r"([0-9.]*(?:[+-][0-9]{4})?)-([0-9.]*(?:[+-][0-9]{4})?)", value)
        if not m:
            raise InvalidRequest(f"{name}: invalid date-time range {value!r}")
        return m[1], m[2]
    lo, sep, hi = value.partition("-")
    if "-" in hi:
        raise InvalidRequest(f"{name}: invalid range {value!r} (expected lo-hi, lo- or -hi)")
    return lo, hi


def _temporal_condition(attr: Attribute, name: str, value: str) -> Condition:
    def check(v: str, high: bool) -> str:
        if attr.vr == "DA":
            return _check_date(name, v)
        if attr.vr == "TM":
            return _check_time(name, v, high=high)
        return _check_datetime(name, v, high=high)

    ends = _range(attr, name, value)
    if ends is None:
        return Condition(attr, "single", (check(value, False),))
    lo, hi = ends
    if not lo and not hi:
        raise InvalidRequest(f"{name}: a range needs at least one end, got {value!r}")
    nlo = check(lo, False) if lo else ""
    nhi = check(hi, True) if hi else ""
    if nlo and nhi and nlo > nhi:
        raise InvalidRequest(f"{name}: range {value!r} has its lower end after its upper end")
    return Condition(attr, "range", (nlo, nhi))


def _condition(attr: Attribute, name: str, value: str, fuzzy: bool) -> Condition:
    """Build the condition for one non-universal matching key (PS3.4 C.2.2.2)."""
    vr = attr.vr
    wild = "*" in value or "?" in value
    if vr == "UI":
        uids = tuple(check_uid(u, name) for u in _split_list(value))
        return Condition(attr, "list" if len(uids) > 1 else "single", uids)
    if vr in ("DA", "TM", "DT"):
        return _temporal_condition(attr, name, value.strip())
    if vr in INTEGER_VRS or vr in DECIMAL_VRS:
        if vr in INTEGER_VRS:
            return Condition(attr, "single", (str(numbers.vr_integer(name, vr, value)),))
        numbers.decimal(name, value)
        return Condition(attr, "single", (value.strip(),))
    if vr == "CS" and ("\\" in value or "," in value):
        items = tuple(_split_list(value))
        if any(not i or "*" in i or "?" in i for i in items):
            raise InvalidRequest(
                f"{name}: invalid value list {value!r} (empty items and wildcards "
                "are not allowed in a list)"
            )
        return Condition(attr, "list", items)
    is_fuzzy = fuzzy and vr == "PN"
    if wild:
        return Condition(attr, "wildcard", (value.strip(),), is_fuzzy)
    return Condition(attr, "single", (value.strip(),), is_fuzzy)


def parse_qido(
    level: Level,
    params: Sequence[tuple[str, str]],
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    max_limit: int | None = None,
) -> Query:
    """Parse QIDO-RS query parameters (PS3.18 8.3.4 and 10.6.1) for a resource at ``level``.

    ``params`` are the decoded ``(key, value)`` pairs in request order. ``study_uid``
    and ``series_uid`` come from the URL path. ``max_limit`` caps ``limit`` and is the
    limit when the request gives none (PS3.18 8.3.4.4).

    Raises ``InvalidRequest`` naming the offending parameter for an unknown key, an
    attribute not matchable at ``level``, a repeated key or a malformed value.
    """
    if level not in attributes.QUERYABLE_LEVELS:
        raise ValueError(f"QIDO-RS has no {level.value}-level resource")
    if study_uid is not None:
        check_uid(study_uid, "StudyInstanceUID")
    if series_uid is not None:
        check_uid(series_uid, "SeriesInstanceUID")

    fuzzy = False
    limit: int | None = None
    offset = 0
    include_all = False
    includefields: set[int] = set()
    seen: set[str] = set()
    matching: list[tuple[str, str]] = []
    seen_tags: dict[int | str, str] = {}
    research: list[ResearchKey] = []
    include_labels = False

    for key, value in params:
        if key in ("limit", "offset", "fuzzymatching"):
            if key in seen:
                raise InvalidRequest(f"{key}: given more than once")
            seen.add(key)
        if key == "includefield":
            for item in (i.strip() for i in value.split(",")):
                if not item:
                    continue
                if item == "all":
                    include_all = True
                    continue
                if item == LABELS_FIELD:
                    include_labels = _labels_at(level)
                    continue
                try:
                    includefields.add(attributes.resolve(item))
                except KeyError:
                    raise InvalidRequest(
                        f"includefield: unknown attribute {item!r} "
                        "(expected a keyword, an 8-digit hex tag or 'all')"
                    ) from None
        elif key == "limit":
            limit = numbers.whole(key, value)
        elif key == "offset":
            offset = numbers.whole(key, value)
        elif key == "fuzzymatching":
            if value.strip().lower() not in ("true", "false"):
                raise InvalidRequest(f"fuzzymatching: expected 'true' or 'false', got {value!r}")
            fuzzy = value.strip().lower() == "true"
        elif is_research_key(key):
            research.append(parse_research_key(level, key, value))
        else:
            matching.append((key, value))

    conditions: list[Condition] = []
    for key, value in matching:
        found = _find_attribute(level, key)
        if found is None:  # an extension key
            from webpacs.core import anyattr

            attr, path = anyattr.condition(key, value)
            # not returned unless asked (includefield): a series or study row is not the
            # instance matched, and an instance's would cost a read of its metadata
            ident: int | str = path.path.key if path else anyattr.parse_path(key).key
        else:
            attr, path, ident = found, None, found.tag
            includefields.add(attr.tag)
        if ident in seen_tags:
            raise InvalidRequest(
                f"{key}: attribute {attr.keyword} given more than once "
                f"(also as {seen_tags[ident]!r}); use a value list instead"
            )
        seen_tags[ident] = key
        if value.strip() in ("", "*"):
            continue  # universal matching (PS3.4 C.2.2.2.3)
        if found is None:
            if path is not None:
                conditions.append(Condition(attr, "path", (value.strip(),), path=path))
            continue
        conditions.append(_condition(attr, key, value, fuzzy))

    if max_limit is not None:
        limit = max_limit if limit is None else min(limit, max_limit)
    return Query(
        level=level,
        conditions=tuple(conditions),
        study_uid=study_uid,
        series_uid=series_uid,
        includefields=frozenset(includefields),
        include_all=include_all,
        limit=limit,
        offset=offset,
        fuzzy=fuzzy,
        research=tuple(research),
        include_labels=include_labels,
    )


def _labels_at(level: Level) -> bool:
    if level is Level.INSTANCE:
        raise InvalidRequest(f"includefield: {LABELS_FIELD} are kept on studies and series")
    return True


# --------------------------------------------------------------------------- matching


def _stored_values(vr: str, value: object) -> list[str]:
    """The stored value as a list of strings, one per value (multi-valued -> several)."""
    if value is None:
        return []
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str):
        items = [value] if vr in _UNSPLIT_VRS else value.split("\\")
    elif isinstance(value, Sequence):
        items = [str(v) for v in value if v is not None]
    else:
        items = [str(value)]
    if vr in _UNSPLIT_VRS:
        return [i for i in items if i]
    return [s for s in (i.strip(" \x00") for i in items) if s]


def _wildcard_re(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _fuzzy_name(query: str, stored: str) -> bool:
    """PN fuzzy matching: case-insensitive, whole name or any component's prefix."""
    q = query.casefold()
    if stored.casefold() == q:
        return True
    return any(c.casefold().startswith(q) for c in re.split(r"[\^= ]+", stored) if c)


_NORMALIZERS: dict[str, Callable[[str], str]] = {
    "DA": normalize_date,
    "TM": normalize_time,
    "DT": normalize_datetime,
}


def _match_one(condition: Condition, vr: str, stored: str) -> bool:
    kind = condition.kind
    norm = _NORMALIZERS.get(vr)
    if norm is not None:
        stored = norm(stored)
        if not stored:
            return False
    if kind == "range":
        lo, hi = condition.values
        return (not lo or lo <= stored) and (not hi or stored <= hi)
    if kind == "wildcard":
        return bool(
            _wildcard_re(condition.values[0], ignore_case=condition.fuzzy).fullmatch(stored)
        )
    if vr in INTEGER_VRS or vr in DECIMAL_VRS:
        try:
            number = int(stored) if vr in INTEGER_VRS else float(stored)
        except ValueError:
            return False
        cast = int if vr in INTEGER_VRS else float
        return any(number == cast(v) for v in condition.values)
    if condition.fuzzy and kind == "single":
        return _fuzzy_name(condition.values[0], stored)
    return stored in condition.values  # single and list: exact, case-sensitive


def matches(condition: Condition, value: StoredValue) -> bool:
    """Whether one stored value satisfies ``condition`` (PS3.4 C.2.2.2), in memory.

    ``value`` is the value as stored: a string (multiple values separated by ``\\``),
    a number (pydicom gives ints for US), a sequence of those, or None. A multi-valued
    value matches if any of its values does; an empty or missing value never matches.
    Dates and times are normalized before comparing. Single and list matching are exact
    and case-sensitive, except for a fuzzy PN condition: case-insensitive, and also true
    when any name component (split on ``^``, ``=`` and spaces) starts with the query
    value. Wildcard matching covers the whole value (``*`` any sequence, ``?`` one
    character), case-insensitive when fuzzy.
    """
    if condition.path is not None:  # an extension key: one occurrence of the attribute
        from webpacs.core import anyattr

        return anyattr.matches_stored(condition.path, value)
    vr = condition.attribute.vr
    return any(_match_one(condition, vr, v) for v in _stored_values(vr, value))


def include_extra(query: Query, meta: dict[str, Any]) -> dict[str, Any]:
    """The ``includefield`` attributes (PS3.18 8.3.4.3) of one DICOM JSON object.

    With ``includefield=all``: every attribute of the query's level, i.e. not one kept at
    a lower level, never bulk data; otherwise the requested tags. Computed attributes are
    the index's to give, so they are left out here.
    """
    if not (query.include_all or query.includefields):
        return {}
    lower: set[int] = set()
    if query.level is Level.STUDY:
        lower = {a.tag for lv in (Level.SERIES, Level.INSTANCE) for a in attributes.STORED[lv]}
    elif query.level is Level.SERIES:
        lower = {a.tag for a in attributes.STORED[Level.INSTANCE]}
    computed = {a.tag for a in attributes.COMPUTED[query.level]}
    picked: dict[str, Any] = {}
    if not query.include_all:  # a few tags: look them up rather than walk the data set
        for tag in query.includefields:
            key = f"{tag:08X}"
            if tag not in computed and key in meta:
                picked[key] = meta[key]
        return picked
    for key, value in meta.items():
        tag = int(key, 16)
        if tag in computed:
            continue
        if query.include_all:
            if tag not in lower and "BulkDataURI" not in value:
                picked[key] = value
        elif tag in query.includefields:
            picked[key] = value
    return picked
