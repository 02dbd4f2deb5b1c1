"""Shared fixtures: a real webpacs server on a real socket, test data from pydicom."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
import uvicorn

from webpacs.config import Settings, isolated
from webpacs.storage.registry import Store, open_store
from webpacs.web.app import create_app
from webpacs.web.protocol import uvicorn_options

#: fixtures kept in their own modules
pytest_plugins = ["tests.browser", "tests.postgresql_support"]

REQUIRE_SYSTEM_DEPS = os.environ.get("WEBPACS_REQUIRE_SYSTEM_DEPS") == "1"


def missing(msg: str) -> NoReturn:
    """Skip a test whose outside program is absent; fail instead in CI (the programs are due)."""
    if REQUIRE_SYSTEM_DEPS:
        pytest.fail(msg + " and WEBPACS_REQUIRE_SYSTEM_DEPS=1")
    pytest.skip(msg)


def require_binary(name: str) -> str:
    """Path of a system program; skip (or fail, in CI) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed (Debian package needed; .ci/run installs it)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def data_file(name: str) -> Path:
    """A file shipped with pydicom (or pydicom-data)."""
    from pydicom.data import get_testdata_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = get_testdata_file(name)
    assert path is not None, name
    return Path(str(path))


def make_settings(data_dir: Path, **sections: Any) -> Settings:
    return isolated({"dataDir": str(data_dir), **sections})


@dataclass
class RunningServer:
    """A webpacs server on 127.0.0.1 (uvicorn in a thread) and its store."""

    url: str  # the DICOMweb root
    settings: Settings
    store: Store
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.store.close()


def start_server(data_dir: Path, **sections: Any) -> RunningServer:
    settings = make_settings(data_dir, **sections)
    store = open_store(settings)
    app = create_app(settings, store)
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        **uvicorn_options(settings.server),  # as `webpacs serve` runs it
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    root = settings.server.root_path.rstrip("/")
    return RunningServer(f"http://127.0.0.1:{port}{root}", settings, store, server, thread)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    srv = start_server(tmp_path / "data")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RunningServer, Any]]:
    """A server and a DIMSE SCP (``webpacs.dimse.ScpHandle``) on one store."""
    from webpacs.dimse import start_scp

    srv = start_server(tmp_path / "data", dimse={"port": 0})
    scp = start_scp(srv.settings, srv.store)
    try:
        yield srv, scp
    finally:
        scp.shutdown()
        srv.stop()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("data"))
    try:
        yield srv
    finally:
        srv.stop()


# --------------------------------------------------------------------------- scale-out backends
#: Where `make test` installs pouchdb-server (npm install --prefix .npm-tools pouchdb-server).
NPM_TOOLS = Path(__file__).parent.parent / ".npm-tools" / "node_modules" / ".bin"


def require_npm_tool(name: str) -> str:
    """Path of an npm-installed program (project-local or on PATH); skip (or fail in CI)."""
    local = NPM_TOOLS / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed (npm package; `make test` installs it into .npm-tools)")
    return path


@pytest.fixture(scope="session")
def couchdb_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A CouchDB-compatible server: pouchdb-server, in memory, on 127.0.0.1."""
    import subprocess

    import httpx

    program = require_npm_tool("pouchdb-server")
    workdir = tmp_path_factory.mktemp("pouchdb")
    port = free_port()
    log = open(workdir / "stdout.log", "wb")  # noqa: SIM115 (closed by the finalizer below)
    proc = subprocess.Popen(
        [program, "--in-memory", "--port", str(port), "--host", "127.0.0.1",
         "--config", str(workdir / "config.json"), "--no-stdout-logs"],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pouchdb-server did not start (see {workdir})")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def new_couchdb_section(couchdb_url: str) -> dict[str, Any]:
    """``couchdb`` settings naming a database no one used yet (the index creates it)."""
    import uuid

    return {"url": couchdb_url, "database": f"t{uuid.uuid4().hex}", "maxConcurrent": 8}


def drop_couchdb(section: dict[str, Any]) -> None:
    import httpx

    httpx.delete(f"{section['url']}/{section['database']}", timeout=30)


@pytest.fixture
def couchdb_section(couchdb_url: str) -> Iterator[dict[str, Any]]:
    """The ``couchdb`` settings of a fresh database, dropped afterwards."""
    section = new_couchdb_section(couchdb_url)
    yield section
    drop_couchdb(section)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A local S3-compatible endpoint: moto's server on 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_section(s3_endpoint: str) -> dict[str, Any]:
    """The ``s3`` settings of a fresh bucket on the moto server."""
    return new_s3_section(s3_endpoint)


def new_s3_section(s3_endpoint: str) -> dict[str, Any]:
    """``s3`` settings naming a fresh bucket on the moto server."""
    import uuid

    import boto3

    section = {
        "bucket": f"b{uuid.uuid4().hex[:20]}",
        "prefix": "webpacs",
        "endpointUrl": s3_endpoint,
        "region": "us-east-1",
        "accessKeyId": "testing",
        "secretAccessKey": "testing",
    }
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=section["bucket"])
    return section
