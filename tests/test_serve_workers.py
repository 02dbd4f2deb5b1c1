"""``webpacs serve --workers N``: one listening socket per process, connections spread.

A viewer opens several connections at once; every worker must get some of them (with
uvicorn's shared socket, asyncio lets the first worker to wake accept them all).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from webpacs.cli import workers

pytestmark = pytest.mark.skipif(not workers.supported(), reason="SO_REUSEPORT spreading is Linux")


def _serve(data_dir: Path, port: int, *more: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "webpacs", "serve", "--data-dir", str(data_dir)]
    cmd += ["--port", str(port), "--workers", "2", "--no-dimse", *more]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_ready(proc: subprocess.Popen[str], port: int, root: str = "/dicomweb") -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            c.request("GET", f"{root}/studies")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            c.close()
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.2)


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _is_resource_tracker(pid: int) -> bool:
    try:
        return b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _established(pid: int, port: int) -> int:
    """TCP connections of process ``pid`` established on local ``port``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            local_port = int(f[1].rsplit(":", 1)[1], 16)
            if local_port == port and f[3] == "01" and f[9] in inodes:
                count += 1
    return count


def test_parallel_connections_reach_every_worker(tmp_path: Path) -> None:
    port = free_port()
    proc = _serve(tmp_path, port)
    conns: list[http.client.HTTPConnection] = []
    try:
        _wait_ready(proc, port)
        for _ in range(16):  # all on one of 2 sockets by chance: 2 in 65,536
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/dicomweb/studies")
            assert c.getresponse().read() == b"[]"
            conns.append(c)
        per_worker = sorted(_established(p, port) for p in _children(proc.pid))
        assert sum(per_worker) >= 16
        busy = [n for n in per_worker if n]
        assert len(busy) == 2, per_worker
        # the supervisor serves no request: the app's modules (numpy among them, a shared
        # object that shows in its memory map) load in the workers only (issue 16: peak RSS)
        numpy = "_multiarray_umath"
        serving = [p for p in _children(proc.pid) if not _is_resource_tracker(p)]
        assert [numpy in Path(f"/proc/{p}/maps").read_text() for p in serving] == [True, True]
        assert numpy not in Path(f"/proc/{proc.pid}/maps").read_text()
        # another server on the same port is refused, even one with SO_REUSEPORT
        other = _serve(tmp_path / "other", port)
        _, err = other.communicate(timeout=60)
        assert other.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in err
    finally:
        for c in conns:
            c.close()
        children = _children(proc.pid) if proc.poll() is None else []
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    for pid in children:  # no worker outlives the supervisor
        if _is_resource_tracker(pid):
            continue  # multiprocessing's tracker ends on its own once the supervisor is gone
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )


def test_any_free_port_needs_one_worker(tmp_path: Path) -> None:
    """Port 0 would give each worker a port of its own: refused, with the way out."""
    out = subprocess.run(
        [sys.executable, "-m", "webpacs", "serve", "--data-dir", str(tmp_path)]
        + ["--port", "0", "--workers", "2", "--no-dimse"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "needs a single worker" in out.stderr


def test_workers_load_the_layers_and_no_secret_in_their_environment(tmp_path: Path) -> None:
    """The workers serve what the -c file says (here its rootPath) without the effective
    settings, passwords and keys included, being put in any process's environment."""
    secret = "not-in-any-environment-4711"
    cfg = tmp_path / "c.json5"
    layer = {"server": {"rootPath": "/pacs"}, "couchdb": {"password": secret}}
    layer["s3"] = {"secretAccessKey": secret}
    cfg.write_text(json.dumps(layer))
    port = free_port()
    proc = _serve(tmp_path / "data", port, "-c", str(cfg))
    try:
        _wait_ready(proc, port, "/pacs")
        pids = [proc.pid, *_children(proc.pid)]
        assert len(pids) >= 3  # the supervisor, two workers (and multiprocessing's tracker)
        for pid in pids:
            assert secret.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
