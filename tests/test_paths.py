"""``~`` is expanded wherever a path is taken: command-line arguments and options (their
defaults too), and settings."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tests.conftest import free_port, make_settings
from tests.static_support import path
from webpacs.cli.main import main
from webpacs.config import isolated
from webpacs.static.build import Options, build_from_files
from webpacs.static.tree import Tree
from webpacs.web.viewer import ohif_dist


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    (h / "dicomweb").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(h))
    return h


def test_static_commands_default_to_the_expanded_tree(home: Path) -> None:
    """`static nginx-config` without DIR uses ~/dicomweb, which `static build` writes."""
    r = CliRunner().invoke(main, ["static", "nginx-config", "--port", "8099"])
    assert r.exit_code == 0, r.output
    assert f'root "{home / "dicomweb"}";' in r.output
    r = CliRunner().invoke(main, ["static", "nginx-config", "~/dicomweb", "--server-only"])
    assert r.exit_code == 0, r.output
    assert f'root "{home / "dicomweb"}";' in r.output


def test_static_serve_default_directory(home: Path) -> None:
    build_from_files([path("CT_small.dcm")], Tree(home / "dicomweb"), Options())
    port = free_port()
    env = {**os.environ, "HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "webpacs", "static", "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/studies", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert r.status_code == 200 and len(r.json()) == 1
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_options_with_tilde(home: Path) -> None:
    """``--opt=~/x`` (which the shell leaves as it is) reaches the command expanded."""
    out = home / "tree-out"
    r = CliRunner().invoke(
        main, ["static", "build", "--out=~/tree-out", "--from", str(path("CT_small.dcm"))]
    )
    assert r.exit_code == 0, r.output
    assert (out / "studies" / "index.json.gz").is_file()
    assert not Path("~").exists()


def test_settings_paths(home: Path) -> None:
    s = isolated({"dataDir": "~/pacs"})
    assert s.data_dir == home / "pacs"
    assert s.for_service("server").data_dir == home / "pacs"
    s = isolated({"server": {"dataDir": "~/srv"}})
    assert s.for_service("server").data_dir == home / "srv"
    dist = home / "ohif" / "dist"
    dist.mkdir(parents=True)
    (dist / "index.html").write_text("<html></html>")
    found, why = ohif_dist(make_settings(home / "d", viewer={"ohifPath": "~/ohif/dist"}))
    assert found == dist and not why
