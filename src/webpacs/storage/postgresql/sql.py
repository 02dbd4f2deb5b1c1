"""QIDO conditions as PostgreSQL clauses (the rest of a search is ``storage.sqltables``').

The matching rules are PS3.4 C.2.2.2's (``core.query`` parses them); wildcards become
``LIKE`` patterns, fuzzy matching compares lower-cased words. Columns compare in byte
order (``COLLATE "C"``).
"""

from __future__ import annotations

from typing import Any

from webpacs.core.query import Condition


def _like(pattern: str) -> str:
    """A DICOM wildcard value (``*``, ``?``) as a LIKE pattern (``\\`` escapes)."""
    out = []
    for ch in pattern:
        if ch in "\\%_":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def condition_sql(cond: Condition, column: str) -> tuple[str, list[Any]]:
    """SQL for one QIDO condition on ``column`` (PS3.4 C.2.2.2 matching)."""
    v = cond.values
    if cond.attribute.keyword == "ModalitiesInStudy":
        inner = "SELECT 1 FROM series m WHERE m.study_uid = st.study_uid AND m.modality"
        if cond.kind == "wildcard":
            return f"EXISTS ({inner} LIKE %s)", [_like(v[0])]
        return f"EXISTS ({inner} = ANY(%s))", [list(v)]
    if cond.kind == "range":
        lo, hi = v
        parts, args = [], []
        if lo:
            parts.append(f"{column} >= %s")
            args.append(lo)
        if hi:
            parts.append(f"{column} <= %s")
            args.append(hi)
        if not parts:
            return "TRUE", []
        return "(" + " AND ".join(parts) + f" AND {column} IS NOT NULL)", args
    if cond.kind == "list":
        return f"{column} = ANY(%s)", [list(v)]
    if cond.kind == "wildcard":
        if cond.fuzzy:
            return f"lower({column}) LIKE %s", [_like(v[0].lower())]
        return f"{column} LIKE %s", [_like(v[0])]
    if cond.fuzzy:
        words = f"(' ' || translate(lower({column}), '^=,', '   '))"
        return (
            f"(lower({column}) = %s OR {words} LIKE %s)",
            [v[0].lower(), "% " + _escape(v[0].lower()) + "%"],
        )
    return f"{column} = %s", [v[0]]
