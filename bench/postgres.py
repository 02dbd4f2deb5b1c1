"""A throwaway PostgreSQL: Debian's ``initdb``/``pg_ctl`` into a temp dir, on 127.0.0.1.

Used by the benchmark (``--backends ...,postgresql+files``) and the tests' fixture.
Trust authentication for the role ``webpacs``; ``initdb`` refuses to run as root, so as
root the server runs as the ``postgres`` system user (or ``nobody``) through ``runuser``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


class Unavailable(RuntimeError):
    """PostgreSQL's programs, or a user to run them as, are not on this machine."""


def program(name: str) -> str:
    """``initdb``/``pg_ctl`` from Debian's versioned directory, else from PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise Unavailable(f"PostgreSQL's {name} is not installed (Debian package postgresql)")
    return path


def _as_user() -> tuple[list[str], int, int]:
    """The command prefix, uid and gid to run the server with."""
    if os.geteuid() != 0:
        return [], os.geteuid(), os.getegid()
    runuser = shutil.which("runuser")
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            if runuser is None:
                raise Unavailable("runuser is not installed (needed to run PostgreSQL as root)")
            return [runuser, "-u", name, "--"], entry.pw_uid, entry.pw_gid
    raise Unavailable("no unprivileged user (postgres, nobody) to run PostgreSQL as")


def url(port: int, database: str) -> str:
    return f"postgresql://webpacs@127.0.0.1:{port}/{database}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_postgresql(*, durable: bool = False) -> Iterator[int]:
    """A running PostgreSQL in a temp dir (removed afterwards); yields its port.
    ``durable=False`` turns ``fsync`` off (tests); the benchmark keeps it on."""
    initdb, pg_ctl = program("initdb"), program("pg_ctl")
    prefix, uid, gid = _as_user()
    root = Path(tempfile.mkdtemp(prefix="webpacs-pg-"))
    os.chown(root, uid, gid)
    data = root / "data"
    port = _free_port()
    options = f"-h 127.0.0.1 -p {port} -k {root} -c max_connections=200"
    if not durable:
        options += " -c fsync=off"
    try:
        subprocess.run([*prefix, initdb, "-D", str(data), "-U", "webpacs", "-A", "trust",
                        "-E", "UTF8", "--locale=C", "--no-sync"],
                       check=True, capture_output=True, timeout=120)  # fmt: skip
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-o", options,
                        "-l", str(root / "log"), "-w", "-t", "60", "start"],
                       check=True, capture_output=True, timeout=120)  # fmt: skip
    except subprocess.CalledProcessError as e:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {e.stderr.decode(errors='replace')}") from e
    try:
        yield port
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def create_database(port: int, name: str) -> str:
    """Create database ``name``; returns its URL."""
    import psycopg

    with psycopg.connect(url(port, "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url(port, name)


def drop_database(port: int, name: str) -> None:
    import psycopg

    with psycopg.connect(url(port, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
