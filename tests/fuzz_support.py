"""What the fuzz tests share: the invariant, hypothesis settings, strategies and mutators.

The invariant (README "Hardening"): whatever bytes arrive, a parser returns a result or
raises one of webpacs' typed errors whose HTTP status is a 4xx (for DIMSE: a failure
status). Any other exception is a crash.

``make test`` runs a few examples of each property, derandomized (the same ones every
run) and with no example database, so the suite stays fast and repeatable;
``make fuzz`` sets ``WEBPACS_FUZZ=long`` for many more, random ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

import pydicom
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pydicom.datadict import DicomDictionary

from tests.conftest import data_file
from tests.test_no_500 import BAD_NUMBERS
from webpacs.core.attributes import COMPUTED, PATIENT_ATTRIBUTES, STORED
from webpacs.core.research import LABELS_FIELD
from webpacs.errors import WebpacsError
from webpacs.web.errors import status_for

T = TypeVar("T")

LONG = os.environ.get("WEBPACS_FUZZ") == "long"


def fuzz_settings(quick: int, long: int = 5000) -> settings:
    """Hypothesis settings: ``quick`` examples (derandomized) in ``make test``, ``long``
    random ones under ``make fuzz``."""
    return settings(
        max_examples=long if LONG else quick,
        derandomize=not LONG,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


def refused(exc: BaseException) -> str | None:
    """Why ``exc`` breaks the invariant (None: a typed error answered with a 4xx)."""
    if not isinstance(exc, WebpacsError):
        return f"{type(exc).__name__}: {exc}"
    status = status_for(exc)
    if not 400 <= status < 500:
        return f"{type(exc).__name__} answers {status}: {exc}"
    return None


def parses_or_refuses(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | WebpacsError:
    """``fn``'s result, or the typed 4xx error it raised; anything else fails the test."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        why = refused(exc)
        if why is not None:
            raise AssertionError(f"crash: {why}") from exc
        assert isinstance(exc, WebpacsError)
        return exc


# --------------------------------------------------------------------------- text and bytes
#: Text a URL can carry once decoded (no lone surrogates).
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
#: Characters that mean something to one of the parsers.
SPECIALS = list("*?\\,-=;:\"'.%/ \t\r\n\0") + ["\u00b2", "\uff11", "\u0661", "--", "\r\n\r\n"]
tricky_text = st.one_of(
    any_text,
    st.sampled_from(BAD_NUMBERS),
    st.lists(st.sampled_from(SPECIALS + ["1", "a", "A", "20200101", "1.2.3"]), max_size=12).map(
        "".join
    ),
)


# --------------------------------------------------------------------------- QIDO keys
@cache
def qido_keys() -> list[str]:
    """Keys a QIDO-RS request may carry: the kept attributes, others of every VR, hex tags,
    paths, the reserved and the research keys."""
    kept = [
        a.keyword
        for attrs in (PATIENT_ATTRIBUTES, *STORED.values(), *COMPUTED.values())
        for a in attrs
    ]
    by_vr: dict[str, str] = {}
    for _tag, (vr, _vm, _name, retired, keyword) in sorted(DicomDictionary.items()):
        if keyword and not retired:
            by_vr.setdefault(vr, keyword)
    extra = [
        "includefield", "limit", "offset", "fuzzymatching", "00100010", "0020000D",
        "00081115.0020000E", "52009229.00289110.00280030", "00289110.00280030", "7FE00010",
        "webpacsReferences", "webpacsReferencedBy", "webpacsHas", "webpacsLacks",
        "webpacsLabel", LABELS_FIELD, "", "*", "PatientName.", "0010", "ZZZZZZZZ",
    ]  # fmt: skip
    return list(dict.fromkeys([*kept, *by_vr.values(), *extra]))


qido_key = st.one_of(st.sampled_from(qido_keys()), any_text)
qido_params = st.lists(st.tuples(qido_key, tricky_text), max_size=8)


# --------------------------------------------------------------------------- Part 10 bytes
#: Real files of different encodings (pydicom's test files): explicit and implicit VR,
#: big endian, deflate, JPEG, RLE, sequences, SR, multi-frame.
PART10_FILES = (
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "MR_small_bigendian.dcm",
    "image_dfl.dcm",
    "JPEG2000.dcm",
    "MR_small_RLE.dcm",
    "SC_rgb_small_odd.dcm",
    "emri_small.dcm",
    "test-SR.dcm",
    "MR_small_implicit.dcm",
    "ExplVR_BigEnd.dcm",
)


@cache
def part10(name: str) -> bytes:
    return data_file(name).read_bytes()


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few random edits: bytes overwritten, 32-bit lengths made huge or
    odd, a piece cut out or repeated, the end cut off."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["byte", "length", "cut", "repeat", "truncate", "insert"]))
        if not buf:
            break
        pos = draw(st.integers(0, len(buf) - 1))
        if kind == "byte":
            buf[pos] = draw(st.integers(0, 255))
        elif kind == "length":
            value = draw(st.sampled_from([0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFE, 1, 3, 0]))
            buf[pos : pos + 4] = value.to_bytes(4, "little")
        elif kind == "cut":
            del buf[pos : pos + draw(st.integers(1, 64))]
        elif kind == "repeat":
            buf[pos:pos] = buf[pos : pos + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del buf[pos:]
        else:
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(buf)


part10_bytes = st.sampled_from(PART10_FILES).flatmap(lambda n: mutated(part10(n)))


# --------------------------------------------------------------------------- DICOM JSON
@cache
def dicom_json(name: str) -> dict[str, Any]:
    """A test file's DICOM JSON (bulk data as URIs naming parts ``bulk/<tag>``)."""
    ds = pydicom.dcmread(data_file(name))
    return ds.to_json_dict(
        bulk_data_threshold=256, bulk_data_element_handler=lambda e: f"bulk/{e.tag:08X}"
    )


json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), tricky_text
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(tricky_text, st.just("vr")), inner)
    ),
    max_leaves=20,
)
VRS = ["AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF",
       "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN",
       "UR", "US", "UT", "UV", "XX", ""]  # fmt: skip


@st.composite
def mutated_json(draw: st.DrawFn, obj: dict[str, Any]) -> Any:
    """A real DICOM JSON object with a few elements changed: a value replaced by any JSON,
    the VR changed, a key removed or renamed, inline binary or a bulk data URI made up."""
    out = dict(obj)
    tags = sorted(out)
    for _ in range(draw(st.integers(1, 5))):
        tag = draw(st.sampled_from(tags)) if tags else "00100010"
        elem = out.get(tag)
        elem = dict(elem) if isinstance(elem, dict) else {}
        kind = draw(st.sampled_from(["value", "vr", "drop", "key", "inline", "bulk", "whole"]))
        if kind == "value":
            elem["Value"] = draw(json_value)
        elif kind == "vr":
            elem["vr"] = draw(st.sampled_from(VRS))
        elif kind == "drop":
            elem.pop(draw(st.sampled_from(["vr", "Value", "InlineBinary", "BulkDataURI"])), None)
        elif kind == "key":
            out[draw(st.one_of(tricky_text, st.sampled_from(["7FE00010", "00080018"])))] = elem
        elif kind == "inline":
            elem["InlineBinary"] = draw(st.one_of(tricky_text, st.just("AAAA"), json_value))
        elif kind == "bulk":
            elem["BulkDataURI"] = draw(st.one_of(tricky_text, st.just(f"bulk/{tag}")))
        out[tag] = elem if kind != "whole" else draw(json_value)
    return out


JSON_FILES = ("CT_small.dcm", "rtplan.dcm", "test-SR.dcm", "MR_small.dcm")
dicom_json_objects = st.one_of(
    st.sampled_from(JSON_FILES).flatmap(lambda n: mutated_json(dicom_json(n))),
    json_value,
)
