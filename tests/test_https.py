"""HTTPS for the web server (``server.tls``): the dicomweb-client package over TLS with the
test CA, URLs the server writes are https, plain HTTP to the HTTPS port gets nowhere; and
``webpacs serve`` (two worker processes) and ``webpacs static serve`` with the same
settings. Certificates come from ``tests.tls_support``; everything on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import requests
import uvicorn
from dicomweb_client.api import DICOMwebClient

from tests.conftest import data_file, free_port, make_settings
from tests.tls_support import Pki, make_pki
from webpacs.cli.workers import tls_options
from webpacs.ingest import ingest
from webpacs.storage.registry import open_store
from webpacs.web.app import create_app
from webpacs.web.protocol import uvicorn_options

CT = data_file("CT_small.dcm")


@pytest.fixture(autouse=True)
def _no_ca_bundle_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` override a session's
    ``verify``: these tests name the CA they trust."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def server_tls(pki: Pki) -> dict[str, str]:
    return {"cert": str(pki.server_cert), "key": str(pki.server_key)}


@pytest.fixture
def https_server(tmp_path: Path, pki: Pki) -> Iterator[int]:
    """The app under uvicorn with ``tls_options(server.tls)``, as ``webpacs serve`` runs it;
    holding CT_small. Yields the port."""
    settings = make_settings(tmp_path / "data", server={"tls": server_tls(pki)})
    store = open_store(settings)
    ingest(store.index, store.blobs, CT.read_bytes())
    port = free_port()
    options = tls_options(settings.server.tls)
    assert set(options) == {"ssl_certfile", "ssl_keyfile"}
    config = uvicorn.Config(
        create_app(settings, store), host="127.0.0.1", port=port, log_level="warning",
        **uvicorn_options(settings.server), **options,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()
    assert not thread.is_alive(), "the server did not stop (an idle TLS connection held it)"


def test_dicomweb_client_over_https(https_server: int, pki: Pki) -> None:
    session = requests.Session()
    session.verify = str(pki.ca)
    client = DICOMwebClient(f"https://127.0.0.1:{https_server}/dicomweb", session=session)
    ds = pydicom.dcmread(CT)
    studies = client.search_for_studies()
    assert [s["0020000D"]["Value"][0] for s in studies] == [ds.StudyInstanceUID]
    got = client.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert got.PixelData == ds.PixelData
    [meta] = client.retrieve_series_metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    uri = meta["7FE00010"]["BulkDataURI"]  # no publicUrl: from the request, https
    assert uri.startswith(f"https://127.0.0.1:{https_server}/dicomweb/studies/"), uri
    assert session.get(uri, headers={"Accept": "application/octet-stream"}).status_code == 200
    session.close()


def test_plain_http_and_unknown_ca_fail(https_server: int, pki: Pki) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{https_server}/dicomweb/studies", timeout=10)
    with pytest.raises(requests.exceptions.SSLError):  # the certificate is the test CA's
        requests.get(f"https://127.0.0.1:{https_server}/dicomweb/studies", timeout=10)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(
            f"https://127.0.0.1:{https_server}/dicomweb/studies",
            verify=str(pki.other_ca),
            timeout=10,
        )
    # and it keeps serving
    r = requests.get(f"https://127.0.0.1:{https_server}/healthz", verify=str(pki.ca), timeout=10)
    assert r.status_code == 200


def _start(cmd: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "webpacs", *cmd], cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def _wait_https(proc: subprocess.Popen[str], url: str, ca: Path) -> requests.Response:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            return requests.get(url, verify=str(ca), timeout=5)
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
            # (a worker's socket may take connections before its loop runs the handshake)
            pass
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM; the server must exit at once, although the test's client still holds an
    idle TLS connection to it (one it would otherwise wait on for its close_notify)."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"the server did not stop on SIGTERM:\n{out}") from None
    return out


def test_serve_with_workers_over_https(tmp_path: Path, pki: Pki) -> None:
    """``webpacs serve`` with two worker processes: each serves HTTPS; the URLs it prints
    are https."""
    conf = tmp_path / "webpacs.json5"
    conf.write_text(f'{{server: {{tls: {{cert: "{pki.server_cert}", key: "{pki.server_key}"}}}}}}')
    port = free_port()
    proc = _start(
        ["serve", "-c", str(conf), "--data-dir", str(tmp_path / "data"), "--port", str(port),
         "--workers", "2", "--no-dimse"], tmp_path,
    )  # fmt: skip
    try:
        url = f"https://127.0.0.1:{port}/dicomweb/studies"
        assert _wait_https(proc, url, pki.ca).status_code == 200
        for _ in range(4):  # new connections, spread over the workers
            assert requests.get(url, verify=str(pki.ca), timeout=10).status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/dicomweb/studies", timeout=10)
    finally:
        out = _stop(proc)
    assert f"https://127.0.0.1:{port}/dicomweb" in out
    assert "http://" not in out


def test_static_serve_over_https(tmp_path: Path, pki: Pki) -> None:
    conf = tmp_path / "webpacs.json5"
    conf.write_text(f'{{server: {{tls: {{cert: "{pki.server_cert}", key: "{pki.server_key}"}}}}}}')
    tree = tmp_path / "tree"
    tree.mkdir()
    port = free_port()
    proc = _start(["static", "serve", str(tree), "-c", str(conf), "--port", str(port)], tmp_path)
    try:
        r = _wait_https(proc, f"https://127.0.0.1:{port}/studies", pki.ca)
        assert r.status_code < 500
        # the request-head limits of `webpacs serve` (its HTTP protocol) hold here too
        big = requests.get(
            f"https://127.0.0.1:{port}/studies", headers={"X-Big": "a" * 70_000},
            verify=str(pki.ca), timeout=10,
        )  # fmt: skip
        assert big.status_code == 431 and "server.maxHeaderBytes" in big.text
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/studies", timeout=10)
    finally:
        out = _stop(proc)
    assert f"https://127.0.0.1:{port}/studies" in out
