"""No request gets a 500: every number a request carries is read by one parser.

Every numeric query parameter and path segment (QIDO offset and limit, QIDO keys of each
numeric VR at each level, frame lists, WADO-URI numbers, rendered and thumbnail
parameters) is fed overlong, non-ASCII-digit, negative, huge and malformed values; each
answer is a 400 that names the parameter or a proper answer, never a 500. C-FIND gets the
same treatment through pynetdicom.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pydicom.config
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.datadict import DicomDictionary
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from tests.conftest import RunningServer, data_file, make_settings
from webpacs.core.attributes import COMPUTED, PATIENT_ATTRIBUTES, STORED
from webpacs.dimse import start_scp
from webpacs.ingest import ingest
from webpacs.storage.registry import open_store

NUMERIC_VRS = ("IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD")

#: Overlong, non-ASCII digits, negative, huge and otherwise malformed numbers.
BAD_NUMBERS = [
    "9" * 5000,
    "-" + "9" * 5000,
    "1" + "0" * 400,
    "9999999999999999999",
    "-9999999999999999999",
    "18446744073709551616",
    "99999999999",
    "-1",
    "-0",
    "0",
    "\u00b2",  # superscript two: str.isdigit() says yes
    "\u0661\u0662",  # Arabic-Indic 12: int() and float() say yes
    "\uff11",  # fullwidth 1
    "1e999",
    "-1e999",
    "1e5",
    "nan",
    "inf",
    "1_0",
    "0x1F",
    "+3",
    " 12 ",
    "3.5",
    "1,2",
    ",",
    "\u00a0",
    "1" * 30 + ".5",
]


def _keyword_per_vr() -> dict[str, str]:
    """One current dictionary keyword of each numeric VR."""
    found: dict[str, str] = {}
    for tag, (vr, _vm, _name, retired, keyword) in sorted(DicomDictionary.items()):
        if vr in NUMERIC_VRS and keyword and not retired and tag >> 16 not in (0, 2):
            found.setdefault(vr, keyword)
    assert set(found) == set(NUMERIC_VRS)
    return found


def _numeric_keys() -> list[str]:
    """QIDO keys with a numeric VR: the ones the index keeps or computes at each level
    (study, series, instance), others of every numeric VR, and a tag written in hex."""
    kept = [
        a.keyword
        for attrs in (PATIENT_ATTRIBUTES, *STORED.values(), *COMPUTED.values())
        for a in attrs
        if a.vr in NUMERIC_VRS
    ]
    extra = ["PatientWeight", "PatientSize", "SliceThickness", "SliceLocation", "PregnancyStatus"]
    keys = dict.fromkeys([*kept, *extra, *_keyword_per_vr().values(), "00200013"])
    assert {"SeriesNumber", "InstanceNumber", "Rows", "NumberOfStudyRelatedSeries"} <= set(keys)
    return list(keys)


@dataclass
class Target:
    """The server holding CT_small, and one keep-alive session to it."""

    url: str
    ds: Dataset
    session: requests.Session

    def get(self, path: str, params: dict[str, str] | None = None) -> requests.Response:
        return self.session.get(self.url + path, params=params, timeout=30)

    @property
    def instance(self) -> str:
        ds = self.ds
        return (
            f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}"
        )


@pytest.fixture(scope="module")
def ct(module_server: RunningServer) -> Iterator[Target]:
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    DICOMwebClient(module_server.url).store_instances([ds])
    with requests.Session() as s:
        yield Target(module_server.url, ds, s)


def _check(ct: Target, path: str, params: dict[str, str], name: str) -> list[str]:
    """The ways answers to ``path`` with ``params`` went wrong (none: all fine)."""
    r = ct.get(path, params)
    shown = {k: (v[:12] + "...") if len(v) > 12 else v for k, v in params.items()}
    if r.status_code >= 500:
        return [f"{path} {shown}: {r.status_code} {r.text[:200]}"]
    if r.status_code == 400 and name not in r.json()["error"]:
        return [f"{path} {shown}: 400 without naming {name!r}: {r.json()['error']}"]
    return []


@pytest.mark.parametrize("level", ["/studies", "/series", "/instances"])
@pytest.mark.parametrize("param", ["offset", "limit"])
def test_paging(ct: Target, level: str, param: str) -> None:
    problems = [p for v in BAD_NUMBERS for p in _check(ct, level, {param: v}, param)]
    assert problems == []
    for bad in ("9999999999999999999", "9" * 5000):  # the cases: a 400 naming it
        r = ct.get(level, {param: bad})
        assert r.status_code == 400 and r.json()["error"].startswith(param)


@pytest.mark.parametrize("level", ["/studies", "/series", "/instances"])
def test_numeric_query_keys(ct: Target, level: str) -> None:
    keys = _numeric_keys()
    problems = [p for k in keys for v in BAD_NUMBERS for p in _check(ct, level, {k: v}, k)]
    assert problems == []
    r = ct.get("/instances", {"InstanceNumber": "9" * 5000})
    assert r.status_code == 400 and "InstanceNumber" in r.json()["error"]
    # a good value still answers
    r = ct.get("/instances", {"InstanceNumber": "1"})
    assert r.status_code == 200 and len(r.json()) == 1


@pytest.mark.parametrize("tail", ["", "/rendered", "/thumbnail"])
def test_frame_lists(ct: Target, tail: str) -> None:
    problems = []
    for v in BAD_NUMBERS:
        for frames in (v, f"1,{v}"):
            segment = requests.utils.quote(frames, safe=",")
            problems += _check(ct, f"{ct.instance}/frames/{segment}{tail}", {}, "frame")
    assert problems == []
    for bad in ("9" * 5000, "%C2%B2"):
        r = ct.get(f"{ct.instance}/frames/{bad}{tail}")
        assert r.status_code == 400 and "frame number" in r.json()["error"]


WADO_URI_PARAMS = {
    "frameNumber": {},
    "rows": {},
    "columns": {},
    "imageQuality": {},
    "windowCenter": {"windowWidth": "400"},
    "windowWidth": {"windowCenter": "40"},
    "region": {},
}


@pytest.mark.parametrize("param", list(WADO_URI_PARAMS))
def test_wado_uri_numbers(ct: Target, param: str) -> None:
    base = {
        "requestType": "WADO",
        "studyUID": ct.ds.StudyInstanceUID,
        "seriesUID": ct.ds.SeriesInstanceUID,
        "objectUID": ct.ds.SOPInstanceUID,
        "contentType": "image/jpeg",
        **WADO_URI_PARAMS[param],
    }
    values = BAD_NUMBERS + [f"0,0,1,{v}" for v in BAD_NUMBERS if param == "region"]
    problems = [p for v in values for p in _check(ct, "/wado", {**base, param: v}, param)]
    assert problems == []


RENDERING_PARAMS = {
    "viewport": lambda v: [v, f"{v},", f",{v}", f"64,64,{v},0,10,10", f"64,64,0,0,{v},10"],
    "quality": lambda v: [v],
    "window": lambda v: [f"{v},400", f"40,{v}", f"40,400,{v}"],
}


@pytest.mark.parametrize("resource", ["/rendered", "/thumbnail", "/frames/1/rendered"])
@pytest.mark.parametrize("param", list(RENDERING_PARAMS))
def test_rendering_numbers(ct: Target, resource: str, param: str) -> None:
    paths = [ct.instance + resource]
    if resource != "/frames/1/rendered":
        paths.append(f"/studies/{ct.ds.StudyInstanceUID}{resource}")
    problems = [
        p
        for path in paths
        for v in BAD_NUMBERS
        for text in RENDERING_PARAMS[param](v)
        for p in _check(ct, path, {param: text}, param)
    ]
    assert problems == []


def test_huge_viewport_is_refused(ct: Target) -> None:
    """A viewport far larger than the image would allocate gigabytes: refused, by name."""
    for params in ({"viewport": "65000,65000"}, {"viewport": "60000,"}):
        r = ct.get(ct.instance + "/rendered", params)
        assert r.status_code == 400 and "viewport" in r.json()["error"]
    r = ct.get(ct.instance + "/rendered", {"viewport": "256,256"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"


# --------------------------------------------------------------------------- C-FIND
def _find(port: int, elements: list[DataElement], level: str) -> tuple[int, int]:
    """C-FIND with ``elements`` in the identifier (sent in Implicit VR, so a value may be any
    bytes); the final status and the number of matches."""
    ae = AE(ae_title="FUZZ")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind, ImplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="WEBPACS")
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    for elem in elements:
        identifier.add(elem)
    status, matches = -1, 0
    try:
        for st, ds in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
            status = int(st.Status)
            matches += status in (0xFF00, 0xFF01) and ds is not None
        assert int(assoc.send_c_echo().Status) == 0  # the association survived
    finally:
        assoc.release()
    return status, matches


def test_c_find_huge_numbers(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", dimse={"port": 0})
    store = open_store(settings)
    ingest(store.index, store.blobs, data_file("CT_small.dcm").read_bytes())
    handle = start_scp(settings, store)
    try:
        matched = {  # matching keys: a failure, or no match
            "SERIES": ["SeriesNumber"],
            "IMAGE": ["InstanceNumber", "Rows", "NumberOfFrames"],
        }
        returned = {  # return keys only (PS3.4 C.6.1.1): a failure, or any answer
            "STUDY": ["NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"],
            "SERIES": ["NumberOfSeriesRelatedInstances"],
        }
        for keys, any_answer in ((matched, False), (returned, True)):
            for level, keywords in keys.items():
                for kw in keywords:
                    tag = pydicom.datadict.tag_for_keyword(kw)
                    for value in ("9" * 5000, "99999999999", "-99999999999", "\u00b2", "1e999"):
                        raw = value.encode("utf-8")
                        raw += b" " * (len(raw) % 2)
                        # sent as LO, i.e. as these bytes; the SCP reads them with the VR
                        # of the dictionary
                        with pydicom.config.disable_value_validation():  # send it anyway
                            elem = DataElement(tag, "LO", raw)
                            status, matches = _find(handle.port, [elem], level)
                        ok = status == 0x0000 and (any_answer or matches == 0)
                        failed = 0xA000 <= status <= 0xCFFF
                        assert ok or failed, (level, kw, value[:12], hex(status))
        status, matches = _find(handle.port, [DataElement(0x00200013, "IS", "1")], "IMAGE")
        assert (status, matches) == (0x0000, 1)
    finally:
        handle.shutdown()
        store.close()
