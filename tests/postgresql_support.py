"""A PostgreSQL server for the tests: Debian's ``initdb``/``pg_ctl`` into a temp dir.

Session-scoped, bound to 127.0.0.1 on a free port, trust authentication for the test
role ``webpacs``. ``initdb`` refuses to run as root: as root, the server runs as the
``postgres`` system user (or ``nobody``) through ``runuser``. Each test gets a fresh
database (``postgresql_url``), dropped afterwards.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, missing


def _program(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        missing(f"PostgreSQL's {name} is not installed (Debian package postgresql)")
    return path


def _as_user() -> tuple[list[str], int, int]:
    """The command prefix, uid and gid to run the server with."""
    if os.geteuid() != 0:
        return [], os.geteuid(), os.getegid()
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        runuser = shutil.which("runuser")
        if runuser is None:
            missing("runuser is not installed (needed to run PostgreSQL as root)")
        return [runuser, "-u", name, "--"], entry.pw_uid, entry.pw_gid
    missing("no unprivileged user (postgres, nobody) to run PostgreSQL as")


def _url(port: int, database: str) -> str:
    return f"postgresql://webpacs@127.0.0.1:{port}/{database}"


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[int]:
    """A running PostgreSQL; yields its port."""
    initdb, pg_ctl = _program("initdb"), _program("pg_ctl")
    prefix, uid, gid = _as_user()
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install psycopg)")
    root = Path(tempfile.mkdtemp(prefix="webpacs-pg-"))
    os.chown(root, uid, gid)
    data = root / "data"
    port = free_port()
    run = {"check": True, "capture_output": True, "timeout": 120}
    try:
        subprocess.run([*prefix, initdb, "-D", str(data), "-U", "webpacs", "-A", "trust",
                        "-E", "UTF8", "--locale=C", "--no-sync"], **run)  # type: ignore[call-overload]  # fmt: skip
        options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-o", options,
                        "-l", str(root / "log"), "-w", "-t", "60", "start"], **run)  # type: ignore[call-overload]  # fmt: skip
    except subprocess.CalledProcessError as e:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {e.stderr.decode(errors='replace')}") from e
    try:
        yield port
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def new_database(port: int) -> str:
    """A fresh database on the test server; returns its URL."""
    import psycopg

    name = f"t{uuid.uuid4().hex}"
    with psycopg.connect(_url(port, "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _url(port, name)


def drop_database(url: str) -> None:
    import psycopg

    port, name = url.rsplit(":", 1)[1].split("/")
    with psycopg.connect(_url(int(port), "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgresql_url(postgresql_server: int) -> Iterator[str]:
    """The URL of a fresh database, dropped afterwards."""
    url = new_database(postgresql_server)
    yield url
    drop_database(url)
