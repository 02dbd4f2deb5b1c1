"""``webpacs static serve`` honours the auth settings of ``webpacs serve`` (issue 15 point 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.static_support import ServerThread, path
from webpacs.auth.basic import hash_password
from webpacs.config import isolated
from webpacs.static.build import Options, build_from_files
from webpacs.static.tree import Tree
from webpacs.web.static_app import create_static_app


def test_static_serve_needs_read(tmp_path: Path) -> None:
    build_from_files([path("CT_small.dcm")], Tree(tmp_path / "tree"), Options())
    users = {"r": {"hash": hash_password("pw-r"), "role": "read"}}
    settings = isolated({"auth": {"mode": "basic", "users": users}})
    with ServerThread(create_static_app(tmp_path / "tree", settings)) as srv:
        assert httpx.get(f"{srv.url}/studies").status_code == 401
        assert httpx.get(f"{srv.url}/studies", auth=("r", "wrong")).status_code == 401
        ok = httpx.get(f"{srv.url}/studies", auth=("r", "pw-r"))
        assert ok.status_code == 200 and ok.json()
        study = ok.json()[0]["0020000D"]["Value"][0]
        assert httpx.get(f"{srv.url}/studies/{study}/series").status_code == 401
        r = httpx.get(
            f"{srv.url}/studies", headers={"Origin": "http://x.example"}, auth=("r", "pw-r")
        )
        assert "access-control-allow-origin" not in r.headers  # no '*' with auth on


def test_static_serve_refuses_anonymous_on_a_public_address(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    cmd = [sys.executable, "-m", "webpacs", "static", "serve", str(tmp_path / "tree")]
    done = subprocess.run([*cmd, "--host", "0.0.0.0", "--port", "1"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert done.returncode != 0
    assert "allowAnonymous" in done.stderr
