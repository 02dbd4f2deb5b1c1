"""Who may call the DIMSE SCP: calling AEs restricted to the ``ae`` table whenever HTTP auth
is on (or explicitly), and each known AE only for its ``services`` (issue 15, point 4).
dcmtk's echoscu, storescu and findscu, and pynetdicom as SCU; everything on 127.0.0.1."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from tests.conftest import data_file, require_binary
from tests.test_dimse import Running, pynetdicom_find
from webpacs.config import isolated
from webpacs.dimse.context import restricts_calling_ae
from webpacs.errors import ConfigError

CT = data_file("CT_small.dcm")
#: a known AE that may query but not store
WORKSTATION = {
    "ws": {"title": "WORKSTATION", "host": "127.0.0.1", "port": 104, "services": ["find"]}
}
BASIC = {"mode": "basic"}


@pytest.fixture
def make_scp(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def make(dimse: dict[str, Any], ae: dict[str, Any], **sections: Any) -> Running:
        scp = Running(tmp_path / f"scp{len(started)}", dimse, ae, **sections)
        started.append(scp)
        return scp

    yield make
    for scp in started:
        scp.stop()


TOOLS = {
    "echoscu": (),
    "storescu": (str(CT),),
    "findscu": ("-S", "-k", "QueryRetrieveLevel=STUDY"),
}


def _call(tool: str, aet: str, port: int) -> subprocess.CompletedProcess[str]:
    exe = require_binary(tool)
    args = list(TOOLS[tool])
    files = [args.pop()] if tool == "storescu" else []
    cmd = [exe, "-v", "-aet", aet, "-aec", "WEBPACS", *args, "127.0.0.1", str(port), *files]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("tool", list(TOOLS))
def test_auth_on_rejects_unknown_calling_aes(make_scp: Callable[..., Running], tool: str) -> None:
    """With auth.mode basic and restrictCallingAe unset, an AE missing from the ae table
    cannot associate (A-ASSOCIATE-RJ, calling AE title not recognized)."""
    scp = make_scp({}, WORKSTATION, auth=BASIC)
    refused = _call(tool, "STRANGER", scp.port)
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stderr + refused.stdout
    assert scp.store.index.get(pydicom.dcmread(CT).SOPInstanceUID) is None


def test_known_ae_may_use_its_services_only(make_scp: Callable[..., Running]) -> None:
    scp = make_scp({}, WORKSTATION, auth=BASIC)
    assert _call("echoscu", "WORKSTATION", scp.port).returncode == 0
    found = _call("findscu", "WORKSTATION", scp.port)
    assert found.returncode == 0, found.stderr
    # storescu: associated, and the C-STORE is refused 0124 (dcmtk has no name for it)
    stored = _call("storescu", "WORKSTATION", scp.port)
    assert "Association Accepted" in stored.stderr
    assert "0x124" in stored.stderr, stored.stderr
    assert scp.store.index.get(pydicom.dcmread(CT).SOPInstanceUID) is None
    # the same with pynetdicom: the status exactly, 0124 Refused: Not Authorized (PS3.7 C.5)
    ae = AE(ae_title="WORKSTATION")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="WEBPACS")
    assert assoc.is_established
    try:
        assert assoc.send_c_store(pydicom.dcmread(CT)).Status == 0x0124
    finally:
        assoc.release()
    assert scp.store.index.get(pydicom.dcmread(CT).SOPInstanceUID) is None


def test_store_service_lets_a_known_ae_store(make_scp: Callable[..., Running]) -> None:
    """The refusal above is the services list, not the restriction as such."""
    ae = {"ws": {**WORKSTATION["ws"], "services": ["store"]}}
    scp = make_scp({}, ae, auth=BASIC)
    stored = _call("storescu", "WORKSTATION", scp.port)
    assert stored.returncode == 0, stored.stderr
    assert scp.store.index.get(pydicom.dcmread(CT).SOPInstanceUID) is not None
    status, _ = pynetdicom_find(scp.port, {"QueryRetrieveLevel": "STUDY"}, aet="WORKSTATION")
    assert status == 0x0124  # no "find" this time


def test_auth_off_on_loopback_accepts_any_ae(make_scp: Callable[..., Running]) -> None:
    scp = make_scp({}, WORKSTATION)
    stored = _call("storescu", "STRANGER", scp.port)
    assert stored.returncode == 0, stored.stderr
    assert scp.store.index.get(pydicom.dcmread(CT).SOPInstanceUID) is not None


def test_explicit_false_with_auth_on_is_honoured_and_warned(
    make_scp: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="webpacs.dimse"):
        scp = make_scp({"restrictCallingAe": False}, WORKSTATION, auth=BASIC)
    assert any(
        "restrictCallingAe is false" in r.getMessage() and "basic" in r.getMessage()
        for r in caplog.records
    )
    stored = _call("storescu", "STRANGER", scp.port)
    assert stored.returncode == 0, stored.stderr
    assert scp.store.index.get(pydicom.dcmread(CT).SOPInstanceUID) is not None


def test_explicit_true_without_auth_restricts(make_scp: Callable[..., Running]) -> None:
    scp = make_scp({"restrictCallingAe": True}, WORKSTATION)
    assert _call("echoscu", "STRANGER", scp.port).returncode != 0
    assert _call("echoscu", "WORKSTATION", scp.port).returncode == 0


@pytest.mark.parametrize(
    ("dimse", "auth", "why"),
    [
        ({}, BASIC, "auth.mode is basic"),
        ({"restrictCallingAe": True}, {}, "dimse.restrictCallingAe is true"),
    ],
)
def test_restricted_with_an_empty_ae_table_refuses_to_start(
    make_scp: Callable[..., Running], dimse: dict[str, Any], auth: dict[str, Any], why: str
) -> None:
    with pytest.raises(ConfigError, match=why) as e:
        make_scp(dimse, {}, auth=auth)
    assert "restrictCallingAe: false" in str(e.value)  # and it says how to open it


@pytest.mark.parametrize(
    ("host", "mode", "explicit", "restricted"),
    [
        ("127.0.0.1", "none", None, False),
        ("127.0.0.1", "basic", None, True),
        ("127.0.0.1", "oidc", None, True),
        ("0.0.0.0", "none", None, True),  # DESIGN: DIMSE off loopback defaults to restricted
        ("0.0.0.0", "basic", False, False),  # the deliberate opening
        ("127.0.0.1", "none", True, True),
    ],
)
def test_when_calling_aes_are_restricted(
    host: str, mode: str, explicit: bool | None, restricted: bool
) -> None:
    settings = isolated(
        {"auth": {"mode": mode}, "dimse": {"host": host, "restrictCallingAe": explicit}}
    )
    assert restricts_calling_ae(settings) is restricted
