"""``webpacs user add`` writes an argon2 hash (never the password) that basic auth accepts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import start_server
from webpacs.config import load, load_file


def test_user_add_then_log_in(tmp_path: Path) -> None:
    conf = tmp_path / "webpacs.json5"
    conf.write_text('{auth: {mode: "basic"}, server: {qidoMaxResults: 50}}')
    cmd = [sys.executable, "-m", "webpacs", "user", "add", "alice", "--role", "read", "-c"]
    done = subprocess.run([*cmd, str(conf)], input="s3cret pw\n", capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert "alice" in done.stdout
    assert "s3cret" not in conf.read_text()
    values = load_file(conf)
    assert values["server"]["qidoMaxResults"] == 50  # the rest of the file kept
    assert values["auth"]["users"]["alice"]["role"] == "read"
    settings = load([str(conf)], {})
    srv = start_server(tmp_path / "d", auth={"mode": "basic", "users": settings.auth.users})
    try:
        assert httpx.get(srv.url + "/studies", auth=("alice", "s3cret pw")).status_code == 200
        assert httpx.get(srv.url + "/studies", auth=("alice", "s3cret")).status_code == 401
    finally:
        srv.stop()


def test_user_add_needs_a_password(tmp_path: Path) -> None:
    conf = tmp_path / "webpacs.json5"
    cmd = [sys.executable, "-m", "webpacs", "user", "add", "bob", "--role", "admin", "-c"]
    done = subprocess.run([*cmd, str(conf)], input="", capture_output=True, text=True)
    assert done.returncode != 0 and "password" in done.stderr
    assert not conf.exists()
