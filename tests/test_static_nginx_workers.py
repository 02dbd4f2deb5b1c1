"""A static tree is readable by nginx as the README runs it: a master process as root and
its workers as ``nobody`` (files 0644, directories 0755 under the usual umask)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tests.conftest import free_port, require_binary
from tests.static_support import path
from webpacs.cli.main import main
from webpacs.static.build import Options, build_from_files
from webpacs.static.tree import Tree

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
CT_SERIES = "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"
CT_SOP = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's own temporary directories are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="webpacs-nginx-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        subprocess.run(["rm", "-rf", str(d)], check=False)


def test_tree_modes(world_dir: Path, umask_022: None) -> None:
    tree = world_dir / "tree"
    build_from_files([path("CT_small.dcm"), path("MR_small.dcm")], Tree(tree), Options())
    seen = 0
    for dirpath, _dirs, files in os.walk(tree):
        assert stat.S_IMODE(os.stat(dirpath).st_mode) == 0o755, dirpath
        for name in files:
            mode = stat.S_IMODE(os.stat(Path(dirpath) / name).st_mode)
            assert mode == 0o644, (dirpath, name, oct(mode))
            seen += 1
    assert seen > 5


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid in /proc/{pid}/status")


def test_nginx_workers_as_nobody_read_the_tree(world_dir: Path, umask_022: None) -> None:
    binary = require_binary("nginx")
    if os.geteuid() != 0:
        pytest.skip("nginx starts its workers as nobody only when started as root")
    tree = world_dir / "tree"
    build_from_files([path("CT_small.dcm")], Tree(tree), Options())
    port = free_port()
    conf = CliRunner().invoke(main, ["static", "nginx-config", str(tree), "--port", str(port)])
    assert conf.exit_code == 0, conf.output
    prefix = world_dir / "prefix"
    prefix.mkdir()
    (prefix / "nginx.conf").write_text(conf.output)
    log = prefix / "nginx.log"
    with log.open("wb") as out:  # the README's command: master process, workers as nobody
        proc = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr",
             "-g", "daemon off;"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        workers = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
                   .read_text().split()]  # fmt: skip
        assert workers and all(_uid(w) == 65534 for w in workers)  # nobody
        base = f"http://127.0.0.1:{port}"
        series = f"{base}/studies/{CT_STUDY}/series/{CT_SERIES}"
        for url in (
            f"{base}/studies",
            f"{base}/studies/{CT_STUDY}/series",
            f"{series}/metadata",
            f"{series}/instances/{CT_SOP}/frames/1",
        ):
            r = httpx.get(url)
            assert r.status_code == 200, (url, r.status_code, log.read_text()[-500:])
        assert "Permission denied" not in log.read_text()
    finally:
        proc.terminate()
        proc.wait(15)
