"""QIDO wildcards as PostgreSQL ``LIKE`` patterns (the rest of a search is
``storage.sqltables``'). Columns compare in byte order (``COLLATE "C"``)."""

from __future__ import annotations


def like_pattern(pattern: str) -> str:
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
