"""``webpacs viewer install``: npm fetches the pinned OHIF 3 (``@ohif/app``) and its
``dist/`` lands where ``webpacs serve`` looks, which then hosts it at ``/viewer/``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings, require_binary, start_server
from webpacs.web.viewer import OHIF_VERSION, installed_dist, ohif_dist


def _webpacs(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webpacs", *args],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip


def test_install_fetches_ohif_where_serve_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_binary("npm")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    env = dict(os.environ)
    dist = installed_dist()
    assert dist == tmp_path / "share" / "webpacs-viewer" / f"ohif-{OHIF_VERSION}" / "dist"
    done = _webpacs("viewer", "install", env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    assert (dist / "index.html").is_file() and (dist / "app-config.js").is_file()
    assert not [p for p in dist.parent.parent.iterdir() if p.name != dist.parent.name]
    again = _webpacs("viewer", "install", env=env)  # nothing to do the second time
    assert again.returncode == 0 and "already" in again.stderr + again.stdout
    settings = make_settings(tmp_path / "data")
    assert settings.viewer.ohif_path == "" and ohif_dist(settings) == (dist, "")
    srv = start_server(tmp_path / "data")
    try:
        origin = srv.url.rsplit("/", 1)[0]
        page = httpx.get(f"{origin}/viewer/")
        assert page.status_code == 200 and "/viewer/app-config.js" in page.text
        config = httpx.get(f"{origin}/viewer/app-config.js").text
        assert srv.url in config  # its data source is this server
    finally:
        srv.stop()


def test_install_without_npm_says_what_to_do(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path / "empty"), XDG_DATA_HOME=str(tmp_path))
    done = _webpacs("viewer", "install", env=env)
    assert done.returncode == 1
    assert "npm is needed" in done.stderr and "viewer.ohifPath" in done.stderr
    assert not (tmp_path / "webpacs-viewer").exists()
