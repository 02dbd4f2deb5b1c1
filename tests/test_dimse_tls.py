"""DIMSE over TLS (PS3.15 B.1): dcmtk's echoscu/storescu with ``+tls``, pynetdicom as SCU
with an ``ssl.SSLContext``, and webpacs calling TLS AEs (C-MOVE destinations, the SCU).
Certificates are made per module by ``tests.tls_support``; everything on 127.0.0.1."""

from __future__ import annotations

import io
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from tests.conftest import data_file, free_port, require_binary
from tests.test_dimse import Running, recording_scp
from tests.tls_support import Pki, make_pki
from webpacs.config import isolated
from webpacs.dimse.scu import Remote, Scu
from webpacs.dimse.tls import client_context, server_context
from webpacs.errors import ConfigError, UpstreamError

CT = data_file("CT_small.dcm")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def scp_tls(pki: Pki, **more: Any) -> dict[str, Any]:
    return {"cert": str(pki.server_cert), "key": str(pki.server_key), "ca": str(pki.ca), **more}


@pytest.fixture
def make_scp(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def make(dimse: dict[str, Any], ae: dict[str, Any] | None = None) -> Running:
        scp = Running(tmp_path / f"scp{len(started)}", dimse, ae or {})
        started.append(scp)
        return scp

    yield make
    for scp in started:
        scp.stop()


def dcmtk(
    tool: str, port: int, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``tool`` with ``args`` (TLS options, then files) against the SCP on ``port``."""
    exe = require_binary(tool)
    options = [a for a in args if not a.endswith(".dcm")]
    files = [a for a in args if a.endswith(".dcm")]
    cmd = [exe, "-aec", "WEBPACS", *options, "127.0.0.1", str(port), *files]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def client_tls(pki: Pki) -> list[str]:
    """dcmtk's options for TLS with our client certificate, checking the server's."""
    return ["+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca)]


def client_ssl(pki: Pki, *, certificate: bool = True) -> ssl.SSLContext:
    """A client context trusting the test CA, with the client certificate or none.
    (``webpacs.dimse.tls.client_context``'s: pynetdicom leaks the socket of a failed
    handshake with a plain ``SSLContext``.)"""
    tls = {"ca": str(pki.ca)}
    if certificate:
        tls |= {"cert": str(pki.client_cert), "key": str(pki.client_key)}
    return client_context(isolated({"dimse": {"tls": tls}}).dimse.tls)


def test_echoscu_and_storescu_over_tls(make_scp: Callable[..., Running], pki: Pki) -> None:
    scp = make_scp({"tls": scp_tls(pki, requireClientCert=True)})
    echo = dcmtk("echoscu", scp.port, *client_tls(pki))
    assert echo.returncode == 0, echo.stderr
    store = dcmtk("storescu", scp.port, *client_tls(pki), str(CT))
    assert store.returncode == 0, store.stderr
    sent = pydicom.dcmread(CT)
    stored = pydicom.dcmread(io.BytesIO(scp.stored(sent.SOPInstanceUID)))
    assert stored.PixelData == sent.PixelData


def test_client_certificate_required_and_checked(
    make_scp: Callable[..., Running], pki: Pki
) -> None:
    scp = make_scp({"tls": scp_tls(pki, requireClientCert=True)})
    anonymous = dcmtk("echoscu", scp.port, "+tla", "+cf", str(pki.ca))
    assert anonymous.returncode != 0
    # a client that trusts another CA does not accept our server certificate
    distrust = dcmtk("echoscu", scp.port, "+tls", str(pki.client_key), str(pki.client_cert),
                     "+cf", str(pki.other_ca))  # fmt: skip
    assert distrust.returncode != 0
    assert "certificate verify failed" in distrust.stderr
    assert dcmtk("echoscu", scp.port, *client_tls(pki)).returncode == 0


def test_without_require_client_cert_anonymous_tls_is_enough(
    make_scp: Callable[..., Running], pki: Pki
) -> None:
    scp = make_scp({"tls": {"cert": str(pki.server_cert), "key": str(pki.server_key)}})
    r = dcmtk("echoscu", scp.port, "+tla", "+cf", str(pki.ca))
    assert r.returncode == 0, r.stderr


def test_pynetdicom_scu_with_an_ssl_context(make_scp: Callable[..., Running], pki: Pki) -> None:
    scp = make_scp({"tls": scp_tls(pki, requireClientCert=True)})
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate(
        "127.0.0.1", scp.port, ae_title="WEBPACS", tls_args=(client_ssl(pki), "localhost")
    )
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0x0000
        assert assoc.send_c_store(pydicom.dcmread(CT)).Status == 0x0000
    finally:
        assoc.release()
    assert scp.store.index.get(pydicom.dcmread(CT).SOPInstanceUID) is not None
    # without a client certificate the handshake fails: no association
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(Verification)
    tls_args = (client_ssl(pki, certificate=False), "127.0.0.1")
    refused = ae.associate("127.0.0.1", scp.port, ae_title="WEBPACS", tls_args=tls_args)
    assert not refused.is_established


def test_plain_association_to_the_tls_port_fails_and_the_scp_keeps_serving(
    make_scp: Callable[..., Running], pki: Pki
) -> None:
    scp = make_scp({"tls": scp_tls(pki)})
    plain = dcmtk("echoscu", scp.port)
    assert plain.returncode != 0
    # a client that connects and says nothing holds no one up (the handshake is not
    # done in the accept loop)
    with socket.create_connection(("127.0.0.1", scp.port)):
        r = dcmtk("echoscu", scp.port, *client_tls(pki), timeout=30)
        assert r.returncode == 0, r.stderr
    store = dcmtk("storescu", scp.port, *client_tls(pki), str(CT))
    assert store.returncode == 0, store.stderr


def _tls_destination(pki: Pki, port: int, seen: dict[str, bytes]) -> tuple[AE, Any]:
    """A storage SCP on ``port`` speaking TLS only and requiring a client certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    ctx.load_cert_chain(pki.server_cert, pki.server_key)  # a certificate for 127.0.0.1
    ctx.verify_mode = ssl.CERT_REQUIRED
    return recording_scp(port, seen, ssl_context=ctx)


def test_move_to_a_tls_destination(make_scp: Callable[..., Running], pki: Pki) -> None:
    """C-MOVE to an ``ae`` entry with ``tls: true`` opens a TLS association, showing our
    certificate and checking the destination's against ``dimse.tls.ca``. (A plain
    pynetdicom association to a TLS port is not tried here: pynetdicom leaves its socket
    to the garbage collector then, which fails a test run with warnings as errors.)"""
    port = free_port()
    dest_entry = {"title": "DEST", "host": "127.0.0.1", "port": port, "tls": True}
    scp = make_scp({"tls": scp_tls(pki)}, {"dest": dest_entry})
    scp.put("CT_small.dcm")
    seen: dict[str, bytes] = {}
    dest, server = _tls_destination(pki, port, seen)
    try:
        ae = AE(ae_title="PYNETDICOM")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate(
            "127.0.0.1", scp.port, ae_title="WEBPACS", tls_args=(client_ssl(pki), "localhost")
        )
        assert assoc.is_established
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = pydicom.dcmread(CT).StudyInstanceUID
        try:
            model = StudyRootQueryRetrieveInformationModelMove
            statuses = [int(st.Status) for st, _ in assoc.send_c_move(identifier, "DEST", model)]
        finally:
            assoc.release()
    finally:
        server.shutdown()
        dest.shutdown()
    sop = pydicom.dcmread(CT).SOPInstanceUID
    assert statuses[-1] == 0x0000
    assert list(seen) == [sop]


def test_scu_to_a_tls_remote(make_scp: Callable[..., Running], pki: Pki) -> None:
    """The proxy's and ``send``'s SCU: TLS when the remote's entry says so."""
    scp = make_scp({"tls": scp_tls(pki, requireClientCert=True)})
    scp.put("CT_small.dcm")
    ours = isolated({"dimse": {"tls": scp_tls(pki)}}).dimse.tls  # our cert as client cert
    entry = {"title": "WEBPACS", "host": "127.0.0.1", "port": scp.port, "tls": True}
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    settings = isolated({"ae": {"pacs": entry}})
    remote = Remote.from_entry("pacs", settings.ae("pacs"), ours)
    [matches] = Scu("ME", remote, 10).find([identifier])
    assert [m.StudyInstanceUID for m in matches] == [pydicom.dcmread(CT).StudyInstanceUID]
    # without our certificate the SCP (requireClientCert) refuses the handshake
    anonymous = isolated({"dimse": {"tls": {"ca": str(pki.ca)}}}).dimse.tls
    with pytest.raises(UpstreamError):
        Scu("ME", Remote.from_entry("pacs", settings.ae("pacs"), anonymous), 10).find([identifier])


def test_unusable_files_are_a_config_error(pki: Pki, tmp_path: Path) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate")
    tls = isolated({"dimse": {"tls": {"cert": str(not_pem), "key": str(pki.server_key)}}})
    with pytest.raises(ConfigError, match="dimse.tls: cannot load"):
        server_context(tls.dimse.tls)
    mismatched = {"cert": str(pki.server_cert), "key": str(pki.client_key)}
    with pytest.raises(ConfigError, match="dimse.tls"):
        server_context(isolated({"dimse": {"tls": mismatched}}).dimse.tls)
    with pytest.raises(ConfigError, match="dimse.tls.ca"):
        client_context(isolated({"dimse": {"tls": {"ca": str(not_pem)}}}).dimse.tls)
