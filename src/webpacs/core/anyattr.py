"""Any attribute as a QIDO key (issue 13 point 3): paths, value tests, index entries.

A key the standard does not allow at a query's level (``SliceThickness`` on
``/instances``, ``Modality`` on ``/studies``, a path into sequences) is an *extension
key*. It names an attribute by keyword or tag, or a path of them through sequences
(``SharedFunctionalGroupsSequence.PixelMeasuresSequence.PixelSpacing``,
``52009229.00289110.00280030``). It is matched against the instance's own values; a
series or study matches when one of its instances does.

* A single keyword or tag matches the attribute at the top level of the data set. A
  path of two or more matches that chain of sequences at the top level and further
  down (``00289110.00280030`` finds Pixel Spacing in the shared and in the per-frame
  functional groups).
* Numeric VRs (``NUMERIC_VRS``) compare as numbers: ``0.5`` matches ``0.50``, ``.5`` and
  ``5e-1``; DS, FL and FD within a relative ``TOLERANCE``. Ranges ``a-b``, ``a-`` and
  ``-b`` (so a negative bound goes inside a closed range: ``-5--1``; exactly -2.5 is
  ``-2.5--2.5``), inclusive.
* Dates and times follow the standard (single value or range); other text VRs match a
  single value exactly, or a wildcard pattern (``*``, ``?``); UIDs singly or as a list.
* An attribute whose VM allows several values (``PixelSpacing``, ``ImageType``): one
  value matches any position; ``a\\b`` matches an occurrence whose values are ``a`` then
  ``b`` (each position by the rules above, ``*`` for any value) and no more. For a
  single-valued attribute ``a\\b`` is a list: any of them.

``entries`` turns an instance's DICOM JSON into what an index keeps (one value per
path, occurrence and position); ``matches_instance`` is the reference semantics every
index backend is tested against.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VM, dictionary_VR, keyword_for_tag

from webpacs.core import attributes, query
from webpacs.core.attributes import Attribute, Level
from webpacs.core.uids import check_uid
from webpacs.errors import InvalidRequest

#: VRs matched as numbers (PS3.5 6.2).
NUMERIC_VRS = query.INTEGER_VRS | query.DECIMAL_VRS
#: Relative tolerance of equality (and of range bounds) for DS, FL and FD.
TOLERANCE = 1e-6
#: Values of one attribute occurrence an index keeps (the first ones): ContourData or
#: LUT-like lists are not worth a row per value.
MAX_VALUES = 64
#: Longer text values (an LT/UT paragraph) are not kept: no one matches on them, and an
#: index entry has a size limit (PostgreSQL's B-tree: about 2,700 bytes).
MAX_TEXT = 512
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"})
_NUM = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_NUM_RE = re.compile(_NUM)
_RANGE_RE = re.compile(f"({_NUM})?-({_NUM})?")
_TEMPORAL = frozenset({"DA", "TM", "DT"})

Value = float | str
#: One index entry: (path key, occurrence, position, number, text); one of the last two set.
Entry = tuple[str, int, int, float | None, str | None]


@dataclass(frozen=True)
class AttrPath:
    """An attribute named by a key: its tags from the top level, its VR and VM."""

    tags: tuple[int, ...]
    vr: str
    multi: bool  # the dictionary VM allows more than one value

    @property
    def key(self) -> str:
        """The tags as ``GGGGEEEE`` joined with ``.``: what the index keeps."""
        return ".".join(f"{t:08X}" for t in self.tags)

    @property
    def name(self) -> str:
        """Keywords joined with ``.`` (tags where there is none)."""
        return ".".join(keyword_for_tag(t) or f"{t:08X}" for t in self.tags)

    @property
    def nested(self) -> bool:
        """A path into sequences, matched wherever the chain occurs."""
        return len(self.tags) > 1

    @property
    def numeric(self) -> bool:
        return self.vr in NUMERIC_VRS

    def covers(self, stored_key: str) -> bool:
        """Whether values kept under ``stored_key`` (an index path) belong to this key."""
        key = self.key
        return stored_key == key or (self.nested and stored_key.endswith("." + key))


@dataclass(frozen=True)
class ValueTest:
    """A test of one value.

    ``op``: ``num`` (within one of ``bounds``, ``None`` for an open end), ``in`` (equal to
    one of ``texts``), ``glob`` (``texts[0]`` with ``*`` and ``?``), ``range``
    (``texts[0] <= v <= texts[1]``, ``""`` for an open end) or ``any``.
    """

    op: str
    texts: tuple[str, ...] = ()
    bounds: tuple[tuple[float | None, float | None], ...] = ()

    def accepts(self, value: Value | None) -> bool:
        if value is None:
            return False
        if self.op == "any":
            return True
        if self.op == "num":
            if not isinstance(value, float):
                return False
            return any(
                (lo is None or lo <= value) and (hi is None or value <= hi)
                for lo, hi in self.bounds
            )
        if not isinstance(value, str) or not value:
            return False
        if self.op == "in":
            return value in self.texts
        if self.op == "glob":
            return glob_re(self.texts[0]).fullmatch(value) is not None
        lo, hi = self.texts
        return (not lo or lo <= value) and (not hi or value <= hi)


@dataclass(frozen=True)
class PathMatch:
    """An extension key's condition: ``tests[0]`` on any value, or (``positional``)
    ``tests[i]`` on value ``i`` and no value past the last test."""

    path: AttrPath
    tests: tuple[ValueTest, ...]
    positional: bool = False

    def accepts(self, values: Sequence[Value | None]) -> bool:
        """Whether one occurrence (values by position, ``None`` where empty) matches."""
        values = values[:MAX_VALUES]
        if not self.positional:
            return any(self.tests[0].accepts(v) for v in values)
        n = len(self.tests)
        if any(v is not None for v in values[n:]):
            return False
        padded = list(values) + [None] * (n - len(values))
        return all(t.op == "any" or t.accepts(v) for t, v in zip(self.tests, padded, strict=False))


def glob_re(pattern: str) -> re.Pattern[str]:
    """A DICOM wildcard pattern (``*``, ``?``; the rest literal) as a regex."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL)


# --------------------------------------------------------------------------- keys


def parse_path(key: str) -> AttrPath:
    """The attribute a key names (keyword, tag, or a ``.`` path through sequences).

    Raises ``InvalidRequest`` with the reason for an unknown or private attribute, a
    path through something that is not a sequence, or an attribute that holds a
    sequence or binary data (neither is matched).
    """
    tags = []
    parts = key.split(".")
    for i, part in enumerate(parts):
        try:
            tag = attributes.resolve(part.strip())
        except KeyError:
            raise InvalidRequest(f"{key}: unknown attribute {part!r}") from None
        if tag >> 16 & 1:
            raise InvalidRequest(f"{key}: private attribute {part} cannot be a query key")
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            raise InvalidRequest(f"{key}: unknown attribute {part!r}") from None
        if i < len(parts) - 1 and vr != "SQ":
            raise InvalidRequest(f"{key}: {keyword_for_tag(tag) or part} is not a sequence")
        tags.append(tag)
    last = tags[-1]
    vr = dictionary_VR(last)
    if vr == "SQ":
        raise InvalidRequest(
            f"{key}: a sequence cannot be matched; name an attribute inside it ({key}.<keyword>)"
        )
    if vr in _BINARY_VRS:
        raise InvalidRequest(f"{key}: binary data ({vr}) cannot be matched")
    if " or " in vr:  # "US or SS": integers either way
        vr = vr.split(" or ")[0]
    return AttrPath(tuple(tags), vr, dictionary_VM(last) != "1")


def _number(name: str, text: str) -> float:
    if not _NUM_RE.fullmatch(text):
        raise InvalidRequest(f"{name}: invalid number {text!r}")
    value = float(text)
    if not math.isfinite(value):
        raise InvalidRequest(f"{name}: invalid number {text!r}")
    return value


def _widen(vr: str, v: float, direction: int) -> float:
    return v + direction * TOLERANCE * abs(v) if vr in query.DECIMAL_VRS else v


def _numeric(path: AttrPath, name: str, text: str) -> ValueTest:
    text = text.strip()
    if _NUM_RE.fullmatch(text) and not text.startswith("-"):
        v = _number(name, text)
        if path.vr in query.INTEGER_VRS and v != int(v):
            raise InvalidRequest(f"{name}: invalid integer {text!r}")
        return ValueTest("num", bounds=((_widen(path.vr, v, -1), _widen(path.vr, v, 1)),))
    m = _RANGE_RE.fullmatch(text)
    if not m:
        raise InvalidRequest(
            f"{name}: invalid number or range {text!r} (expected a number, lo-hi, lo- or -hi;"
            " a negative bound goes inside a closed range: -5--1)"
        )
    if m[1] is None and m[2] is None:
        raise InvalidRequest(f"{name}: a range needs at least one end, got {text!r}")
    lo = None if m[1] is None else _number(name, m[1])
    hi = None if m[2] is None else _number(name, m[2])
    if lo is not None and hi is not None and lo > hi:
        raise InvalidRequest(f"{name}: range {text!r} has its lower end after its upper end")
    return ValueTest(
        "num",
        bounds=(
            (
                None if lo is None else _widen(path.vr, lo, -1),
                None if hi is None else _widen(path.vr, hi, 1),
            ),
        ),
    )


def _textual(path: AttrPath, name: str, text: str) -> ValueTest:
    vr = path.vr
    if vr == "UI":
        return ValueTest("in", (check_uid(text.strip(), name),))
    if vr in _TEMPORAL:
        probe = Attribute(path.tags[-1], path.name, vr, Level.INSTANCE)
        cond = query._temporal_condition(probe, name, text.strip())
        if cond.kind == "range":
            return ValueTest("range", cond.values)
        return ValueTest("in", cond.values)
    if "*" in text or "?" in text:
        return ValueTest("glob", (text.strip(),))
    return ValueTest("in", (text.strip(),))


def _test(path: AttrPath, name: str, text: str) -> ValueTest:
    if text.strip() in ("", "*"):
        return ValueTest("any")
    if path.numeric:
        return _numeric(path, name, text)
    return _textual(path, name, text)


def parse_value(path: AttrPath, name: str, value: str) -> PathMatch | None:
    """The condition of an extension key, or None when it is universal (``*`` or empty)."""
    if value.strip() in ("", "*"):
        return None
    parts = value.split("\\")
    if path.vr == "UI" and not path.multi:
        parts = [p for chunk in parts for p in chunk.split(",")]
    if len(parts) == 1:
        return PathMatch(path, (_test(path, name, value),))
    tests = tuple(_test(path, name, p) for p in parts)
    if path.multi:
        if all(t.op == "any" for t in tests):
            return None
        return PathMatch(path, tests, positional=True)
    if any(t.op in ("any", "glob") for t in tests):
        raise InvalidRequest(
            f"{name}: invalid value list {value!r} (empty items and wildcards are not allowed"
            " in a list)"
        )
    if path.numeric:
        bounds = tuple(b for t in tests for b in t.bounds)
        return PathMatch(path, (ValueTest("num", bounds=bounds),))
    if all(t.op == "in" for t in tests):
        return PathMatch(path, (ValueTest("in", tuple(t.texts[0] for t in tests)),))
    raise InvalidRequest(f"{name}: a list of ranges is not supported, got {value!r}")


def condition(key: str, value: str) -> tuple[Attribute, PathMatch | None]:
    """The ``Attribute`` (leaf tag, path name, VR; instance level) and the condition of an
    extension key with ``value`` (None when universal)."""
    path = parse_path(key)
    return Attribute(path.tags[-1], path.name, path.vr, Level.INSTANCE), parse_value(
        path, key, value
    )


# --------------------------------------------------------------------------- index entries


def _text(vr: str, value: object) -> str:
    if isinstance(value, dict):  # PN: Alphabetic=Ideographic=Phonetic
        groups = [value.get(g) or "" for g in ("Alphabetic", "Ideographic", "Phonetic")]
        return "=".join(groups).rstrip("=")
    s = str(value)
    if vr == "DA":
        return query.normalize_date(s)
    if vr == "TM":
        return query.normalize_time(s)
    if vr == "DT":
        return query.normalize_datetime(s)
    return s


def _stored_number(value: object) -> float | None:
    if type(value) is float or type(value) is int:
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            return None
    return number if number - number == 0 else None  # finite (inf - inf and nan are nan)


def normalize(vr: str, value: object) -> Value | None:
    """One stored value as the index keeps it: a float for numeric VRs, normalized text
    for dates and times, the text otherwise; None for an empty or unreadable value."""
    if value is None:
        return None
    if vr in NUMERIC_VRS:
        return _stored_number(value)
    text = value if type(value) is str and vr not in _TEMPORAL else _text(vr, value)
    return text if text and len(text) <= MAX_TEXT else None


def occurrences(meta: dict[str, Any]) -> Iterator[tuple[str, tuple[Value | None, ...]]]:
    """Every non-bulk attribute occurrence of a DICOM JSON data set, sequences walked:
    (path key, values by position). The same path may occur several times (one per
    sequence item); identical occurrences of one path are given once."""
    seen: set[tuple[str, tuple[Value | None, ...]]] = set()
    stack: list[tuple[str, dict[str, Any]]] = [("", meta)]
    while stack:
        prefix, ds = stack.pop()
        for tag, elem in ds.items():
            if tag[3] in "13579BDFbdf" or tag[4:] == "0000":  # private, group length
                continue
            items = elem.get("Value")
            if not items:
                continue
            vr = elem.get("vr", "")
            key = prefix + tag if prefix else tag
            if vr == "SQ":
                stack.extend((key + ".", item) for item in items if isinstance(item, dict))
                continue
            if vr in _BINARY_VRS:
                continue
            values: tuple[Value | None, ...]
            if vr in NUMERIC_VRS:
                values = tuple([_stored_number(v) for v in items[:MAX_VALUES]])
            else:
                values = tuple([normalize(vr, v) for v in items[:MAX_VALUES]])
            if prefix:  # only paths into sequences repeat
                if (key, values) in seen:
                    continue
                seen.add((key, values))
            if any(v is not None for v in values):
                yield key, values


def entries(meta: dict[str, Any]) -> list[Entry]:
    """The index entries of a DICOM JSON data set: one per non-empty value."""
    out: list[Entry] = []
    append = out.append
    for occ, (key, values) in enumerate(occurrences(meta)):
        for pos, v in enumerate(values):
            if v is None:
                continue
            if type(v) is float:
                append((key, occ, pos, v, None))
            else:
                append((key, occ, pos, None, v))  # type: ignore[arg-type]
    return out


# --------------------------------------------------------------------------- reference matching


def matches_instance(match: PathMatch, meta: dict[str, Any]) -> bool:
    """Whether an instance (its DICOM JSON) satisfies an extension key's condition."""
    return any(match.accepts(values) for key, values in occurrences(meta) if match.path.covers(key))


def matches_stored(match: PathMatch, value: query.StoredValue) -> bool:
    """Whether one stored occurrence (a string with ``\\`` between values, or a list)
    satisfies an extension key's condition; ``query.matches`` for extension keys."""
    if value is None:
        return False
    if isinstance(value, str):
        items: Sequence[object] = value.split("\\")
    elif isinstance(value, Sequence):
        items = value
    else:
        items = [value]
    vr = match.path.vr
    return match.accepts(tuple(normalize(vr, str(v).strip(" \x00")) for v in items))
