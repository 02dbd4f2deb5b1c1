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
from typing import Any

import pytest
import uvicorn

from webpacs.config import Settings, load
from webpacs.storage.registry import Store, open_store
from webpacs.web.app import create_app

REQUIRE_SYSTEM_DEPS = os.environ.get("WEBPACS_REQUIRE_SYSTEM_DEPS") == "1"


def require_binary(name: str) -> str:
    """Path of a system program; skip (or fail, in CI) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (Debian package needed; .ci/run installs it)"
        if REQUIRE_SYSTEM_DEPS:
            pytest.fail(msg + " and WEBPACS_REQUIRE_SYSTEM_DEPS=1")
        pytest.skip(msg)
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
    overrides: dict[str, Any] = {"dataDir": str(data_dir)}
    overrides.update(sections)
    return load(overrides=overrides, environ={}, home=data_dir / "nohome", cwd=data_dir / "nocwd")


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
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    root = settings.get("server", "rootPath").rstrip("/")
    return RunningServer(f"http://127.0.0.1:{port}{root}", settings, store, server, thread)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    srv = start_server(tmp_path / "data")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("data"))
    try:
        yield srv
    finally:
        srv.stop()
