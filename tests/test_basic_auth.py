"""``webpacs.auth.basic``: the delay after repeated failures, and hashes kept out of listings."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from webpacs.auth import basic
from webpacs.errors import Unauthorized


def _header(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_failures_from_one_address_are_slowed(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(basic.asyncio, "sleep", fake_sleep)
    users = basic.BasicUsers({"a": {"hash": basic.hash_password("right"), "role": "read"}})

    async def attempt(password: str, client: str) -> str:
        try:
            return (await users.check(_header("a", password), client, "Basic")).name
        except Unauthorized:
            return "refused"

    async def run() -> list[str]:
        out = [await attempt("wrong", "10.0.0.1") for _ in range(basic.FAILURES_BEFORE_DELAY + 2)]
        out.append(await attempt("right", "10.0.0.2"))  # another address: not slowed
        out.append(await attempt("right", "10.0.0.1"))  # slowed, then let in
        out.append(await attempt("wrong", "10.0.0.1"))  # the count started again
        return out

    results = asyncio.run(run())
    assert results[-3:] == ["a", "a", "refused"]
    assert results[: basic.FAILURES_BEFORE_DELAY + 2] == ["refused"] * (
        basic.FAILURES_BEFORE_DELAY + 2
    )
    assert waits == [0.5, 1.0, 2.0]  # the 6th and 7th tries, and the successful 8th


def test_config_show_masks_password_hashes(tmp_path: Path) -> None:
    conf = tmp_path / "c.json5"
    digest = basic.hash_password("pw")
    conf.write_text('{auth: {users: {bob: {hash: "HASH", role: "admin"}}}}'.replace("HASH", digest))
    shown = subprocess.run([sys.executable, "-m", "webpacs", "config", "show", "-c", str(conf)],
                           capture_output=True, text=True, check=True, cwd=tmp_path,
                           env={**os.environ, "COLUMNS": "300"})  # fmt: skip
    out = shown.stdout + shown.stderr  # the table goes to the console's stream
    assert "auth.users.bob" in out and "admin" in out
    assert digest not in out and "$argon2" not in out
