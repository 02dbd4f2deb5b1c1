"""Updates as users write them, turned into ``update.Change``\\ s.

* command line: ``Keyword=value`` assignments (``Keyword=`` empties it) and removals;
* a JSON object (the HTTP body, an item of a JSON5 file)::

    {"study": "1.2.3", "set": {"PatientName": "Doe^Jane"}, "remove": ["OtherPatientIDs"],
     "reason": "CORRECT"}
    {"series": "1.2.3.4", "moveTo": "1.2.5"}

  naming its target by ``patient`` (a Patient ID), ``study``, ``series`` or ``instance``
  (``study`` with ``series`` or ``instance`` narrows the search); over HTTP the path names it;
* a CSV file: a header row with the target columns (``patient``, ``study``, ``series``,
  ``instance``), optionally ``moveTo`` and ``reason``, and one column per attribute to set;
  an empty cell leaves that attribute as it is.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import json5

from webpacs.core import modify
from webpacs.core.attributes import Level
from webpacs.core.uids import check_uid
from webpacs.errors import InvalidRequest
from webpacs.update import Change

TARGETS = {
    "patient": Level.PATIENT,
    "study": Level.STUDY,
    "series": Level.SERIES,
    "instance": Level.INSTANCE,
}
_CONTROL = {"moveTo", "reason", "set", "remove"}


def _text(key: str, value: Any) -> str | None:
    """A JSON value as DICOM's string form (``\\`` between values); None removes."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidRequest(f"{key}: a boolean is not a DICOM value")
    if isinstance(value, list):
        return "\\".join("" if v is None else str(v) for v in value)
    if isinstance(value, int | float | str):
        return str(value)
    raise InvalidRequest(f"{key}: {type(value).__name__} values cannot be set")


def assignment(text: str) -> tuple[str, str]:
    """``Keyword=value`` as ``(keyword, value)``."""
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise InvalidRequest(f"{text!r} is not KEYWORD=VALUE")
    return key.strip(), value


def change(
    level: Level,
    uid: str,
    values: Mapping[str, str | None],
    *,
    move_to: str | None = None,
    reason: str | None = None,
    study: str | None = None,
) -> Change:
    """A checked ``Change``: ``values`` maps keywords to new values (None removes)."""
    if not uid:
        raise InvalidRequest(f"no {level.value} given")
    reason = reason or modify.DEFAULT_REASON
    if reason not in modify.REASONS:
        raise InvalidRequest(f"reason must be one of {', '.join(modify.REASONS)}")
    edits = tuple(modify.edit(k, v, level) for k, v in values.items())
    if not edits and move_to is None:
        raise InvalidRequest("nothing to change")
    if move_to is not None and level is not Level.SERIES:
        raise InvalidRequest("moveTo applies to a series")
    if move_to:
        check_uid(move_to, "moveTo")
    return Change(level, uid, edits, move_to or None, reason, study)


def target(obj: Mapping[str, Any]) -> tuple[Level, str, str | None]:
    """The level and UID an object names (the most specific of its target keys) and the
    study that narrows it."""
    named = [(lvl, str(obj[k])) for k, lvl in TARGETS.items() if obj.get(k)]
    if not named:
        raise InvalidRequest(f"an update names one of {', '.join(TARGETS)}")
    level, uid = named[-1]
    study = (
        str(obj["study"]) if obj.get("study") and level in (Level.SERIES, Level.INSTANCE) else None
    )
    return level, uid, study


def from_json(
    obj: Any, level: Level | None = None, uid: str | None = None, study: str | None = None
) -> Change:
    """A ``Change`` from a JSON object; ``level``, ``uid`` (and the ``study`` of a series or
    instance) when the URL names the target."""
    if not isinstance(obj, dict):
        raise InvalidRequest("an update is a JSON object")
    if level is None or uid is None:
        level, uid, study = target(obj)
    unknown = set(obj) - _CONTROL - set(TARGETS)
    if unknown:
        raise InvalidRequest(f"unknown keys {', '.join(sorted(unknown))} (set attributes in 'set')")
    sets = obj.get("set") or {}
    removes = obj.get("remove") or []
    if not isinstance(sets, dict) or not isinstance(removes, list):
        raise InvalidRequest("'set' is an object of attributes, 'remove' a list of them")
    values: dict[str, str | None] = {str(k): _text(str(k), v) for k, v in sets.items()}
    values |= {str(k): None for k in removes}
    move = obj.get("moveTo")
    return change(
        level,
        uid,
        values,
        move_to=None if move is None else str(move),
        reason=obj.get("reason"),
        study=study,
    )


def from_rows(rows: Iterable[Mapping[str, str]]) -> list[Change]:
    """``Change``\\ s from CSV rows (``csv.DictReader``); empty cells change nothing."""
    out = []
    for n, row in enumerate(rows, start=2):
        try:
            obj: dict[str, Any] = {k: v for k, v in row.items() if k in TARGETS and v}
            obj |= {k: row[k] for k in ("moveTo", "reason") if row.get(k)}
            sets = {k: v for k, v in row.items() if k not in TARGETS and k not in _CONTROL and v}
            if sets:
                obj["set"] = sets
            out.append(from_json(obj))
        except InvalidRequest as e:
            raise InvalidRequest(f"line {n}: {e}") from None
    return out


def from_file(path: Path) -> list[Change]:
    """``Change``\\ s from a ``.csv`` file or a JSON5 file (an object or an array of them)."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        return from_rows(csv.DictReader(io.StringIO(text)))
    try:
        data = json5.loads(text)
    except ValueError as e:
        raise InvalidRequest(f"{path}: not JSON5: {e}") from None
    items = data if isinstance(data, list) else [data]
    out = []
    for i, item in enumerate(items):
        try:
            out.append(from_json(item))
        except InvalidRequest as e:
            raise InvalidRequest(f"{path} item {i}: {e}") from None
    return out
