"""Numbers written in requests: the one place that reads them.

A number in a URL (``offset``, ``limit``, a frame list, a QIDO key of a numeric VR, a
WADO-URI or rendering parameter) is ASCII of bounded length: ``str.isdigit`` accepts
superscripts and other scripts' digits, ``int`` refuses more than 4,300 digits with a
ValueError and ``float`` accepts ``nan``, ``inf`` and ``1_000``. Anything else than the
forms below is an ``InvalidRequest`` whose message starts with the parameter's name, so
no such value reaches a database driver (SQLite refuses integers past 2**63) or ``int``.
"""

from __future__ import annotations

import math
import re

from webpacs.errors import InvalidRequest

#: The largest count or index a request may give: exact in every index backend (SQLite
#: and PostgreSQL integers, CouchDB's JSON numbers, which JavaScript reads as doubles).
MAX_COUNT = 2**53 - 1

#: Ranges of the integer VRs (PS3.5 6.2); IS is a decimal string of a 32-bit integer.
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "IS": (-(2**31), 2**31 - 1),
    "SS": (-(2**15), 2**15 - 1),
    "US": (0, 2**16 - 1),
    "SL": (-(2**31), 2**31 - 1),
    "UL": (0, 2**32 - 1),
    "SV": (-(2**63), 2**63 - 1),
    "UV": (0, 2**64 - 1),
}

#: Longest decimal number read (DS itself is at most 16 characters, PS3.5 Table 6.2-1).
MAX_DECIMAL_CHARS = 64

_WHOLE = re.compile(r"[0-9]{1,20}")
_SIGNED = re.compile(r"[+-]?[0-9]{1,20}")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")


def _shown(text: str) -> str:
    """``text`` quoted for a message, cut when long (a 5,000-digit value is not echoed)."""
    return repr(text) if len(text) <= 24 else repr(text[:20]) + f"... ({len(text)} characters)"


def whole(name: str, text: str, low: int = 0, high: int = MAX_COUNT) -> int:
    """A whole number of ASCII digits from ``low`` to ``high``; 400 naming ``name`` if not."""
    t = text.strip()
    if not _WHOLE.fullmatch(t) or not low <= int(t) <= high:
        raise InvalidRequest(
            f"{name}: expected a whole number from {low} to {high}, got {_shown(text)}"
        )
    return int(t)


def integer(name: str, text: str, low: int, high: int, what: str = "an integer") -> int:
    """A signed integer (``+``/``-`` and ASCII digits) from ``low`` to ``high``."""
    t = text.strip()
    if not _SIGNED.fullmatch(t):
        raise InvalidRequest(f"{name}: invalid integer {_shown(text)}")
    value = int(t)
    if not low <= value <= high:
        raise InvalidRequest(f"{name}: {_shown(text)} is not {what} from {low} to {high}")
    return value


def vr_integer(name: str, vr: str, text: str) -> int:
    """A value of the integer VR ``vr`` (IS, US, SS, UL, SL, UV, SV), within its range."""
    low, high = INTEGER_RANGES[vr]
    return integer(name, text, low, high, f"a value of VR {vr}")


def decimal(name: str, text: str) -> float:
    """A finite decimal number (``-1.5``, ``.5``, ``2e3``; ASCII, bounded length)."""
    t = text.strip()
    if len(t) > MAX_DECIMAL_CHARS or not _DECIMAL.fullmatch(t):
        raise InvalidRequest(f"{name}: {_shown(text)} is not a number")
    value = float(t)
    if not math.isfinite(value):
        raise InvalidRequest(f"{name}: {_shown(text)} is not a finite number")
    return value
