"""``webpacs serve`` as an operator runs it: metrics from every worker process and from the
DIMSE SCP, JSON and plain logs on a pipe, the URLs last, one-line port conflicts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pydicom
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from tests.conftest import data_file, free_port
from webpacs.cli import workers

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
CT_SERIES = "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"
CT_SOP = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"


def serve(data: Path, port: int, *more: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "webpacs", "serve", "--data-dir", str(data), "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEBPACS_", "PROMETHEUS_"))}
    return subprocess.Popen(
        [*cmd, *more], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def wait_ready(proc: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.2)


def stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return err


def metric(body: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def fresh_get(url: str) -> httpx.Response:
    """A request on a connection of its own (so that the kernel picks a worker for it)."""
    with httpx.Client() as c:
        return c.get(url, headers={"Connection": "close"})


@pytest.mark.skipif(not workers.supported(), reason="SO_REUSEPORT workers are Linux only")
def test_two_workers_metrics_dimse_and_json_logs(tmp_path: Path) -> None:
    port, dimse_port = free_port(), free_port()
    proc = serve(tmp_path / "data", port, "--workers", "2", "--log-format", "json",
                 "-c", str(_dimse_config(tmp_path, dimse_port)))  # fmt: skip
    try:
        wait_ready(proc, port)
        base = f"http://127.0.0.1:{port}"
        pids = _children(proc.pid)
        metrics_dir = _environ(pids, "PROMETHEUS_MULTIPROC_DIR")
        assert metrics_dir and Path(metrics_dir).is_dir()
        # DIMSE in the supervisor: an echo and a store, counted with the workers' requests
        ae = AE(ae_title="OPS")
        ae.add_requested_context(Verification)
        ae.add_requested_context(CTImageStorage)
        assoc = ae.associate("127.0.0.1", dimse_port, ae_title="WEBPACS")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assert assoc.send_c_store(pydicom.dcmread(data_file("CT_small.dcm"))).Status == 0
        assoc.release()
        n = 16  # on one of the two workers by chance: 2 in 65,536
        for _ in range(n):
            assert fresh_get(f"{base}/dicomweb/studies/{CT_STUDY}/series").status_code == 200
        for _ in range(4):  # whichever worker answers sees every worker's requests
            body = fresh_get(f"{base}/metrics").text
            route = "/dicomweb/studies/{study}/series"
            assert metric(body, "webpacs_http_requests_total", route=route, status="200") == n
            assert metric(body, "webpacs_dimse_operations_total", operation="C-ECHO",
                          status="success") == 1  # fmt: skip
            assert metric(body, "webpacs_dimse_operations_total", operation="C-STORE",
                          status="success") == 1  # fmt: skip
            assert metric(body, "webpacs_dimse_associations_total", event="accepted") == 1
            assert metric(body, "webpacs_store_instances") == 1
        assert fresh_get(f"{base}/healthz").status_code == 200
        url = f"{base}/dicomweb/studies/{CT_STUDY}/series/{CT_SERIES}"
        assert httpx.delete(url).status_code == 204
    finally:
        err = stop(proc)
    assert proc.returncode == 0, err
    assert not Path(metrics_dir).exists()  # the supervisor removed it
    records = [json.loads(line) for line in err.splitlines() if line.strip()]  # JSON only
    access = [r for r in records if r["logger"] == "webpacs.access"]
    assert len(access) >= n + 4
    one = next(r for r in access if r["path"].endswith("/series"))
    assert one["method"] == "GET" and one["status"] == 200 and one["bytes"] > 0
    assert one["ms"] >= 0 and one["client"].startswith("127.0.0.1:")
    changes = {(r.get("change"), r.get("sop")) for r in records}
    assert ("stored", CT_SOP) in changes and ("deleted", CT_SOP) in changes
    deleted = next(r for r in records if r.get("change") == "deleted")
    assert deleted["study"] == CT_STUDY and deleted["series"] == CT_SERIES


def _dimse_config(tmp_path: Path, port: int) -> Path:
    cfg = tmp_path / "dimse.json5"
    cfg.write_text(json.dumps({"dimse": {"port": port}}))
    return cfg


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _environ(pids: list[int], name: str) -> str | None:
    for pid in pids:
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            key, _, value = item.partition(b"=")
            if key.decode() == name:
                return value.decode()
    return None


def test_plain_log_lines_unwrapped_and_urls_last(tmp_path: Path) -> None:
    """Written to a pipe, log lines are whole (a long URL is not wrapped at 80 columns) and
    the server's URLs are the last lines before the requests'."""
    port = free_port()
    proc = serve(tmp_path / "data", port, "--workers", "1", "--no-dimse")
    try:
        wait_ready(proc, port)
        long_path = f"/dicomweb/studies?StudyInstanceUID={CT_STUDY}&includefield=all&limit=25"
        assert httpx.get(f"http://127.0.0.1:{port}{long_path}").status_code == 200
    finally:
        err = stop(proc)
    lines = err.splitlines()
    access = [line for line in lines if "webpacs.access" in line and long_path in line]
    assert len(access) == 1, err
    assert len(access[0]) > 120  # one line, longer than a terminal's 80 columns
    fields = access[0].split("webpacs.access: ", 1)[1].split()
    assert fields[:3] == ["GET", long_path, "200"]
    assert fields[4] == "B" and fields[6] == "ms" and fields[7].startswith("127.0.0.1:")
    first_request = next(i for i, line in enumerate(lines) if "webpacs.access" in line)
    assert lines[first_request - 1].startswith("Operations: "), err  # the URLs come last
    assert "Uvicorn running" not in err and "Started server process" not in err


@pytest.mark.parametrize("workers_n", ["1", "2"])
def test_port_conflicts_are_one_line(tmp_path: Path, workers_n: str) -> None:
    """A taken DIMSE port ends `serve` as a taken HTTP port does: one line, status 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        cfg = _dimse_config(tmp_path, busy)
        for args, what in (
            (["--port", str(free_port()), "-c", str(cfg)], "DIMSE"),
            (["--port", str(busy), "--no-dimse"], "HTTP"),
        ):
            out = subprocess.run(
                [sys.executable, "-m", "webpacs", "serve", "--data-dir", str(tmp_path / "d"),
                 "--workers", workers_n, *args],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert out.returncode == 1, out.stderr
            assert f"cannot listen on 127.0.0.1:{busy} ({what}): " in out.stderr
            assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
        out = subprocess.run(
            [sys.executable, "-m", "webpacs", "scp", "--data-dir", str(tmp_path / "d"),
             "--port", str(busy)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert f"cannot listen on 127.0.0.1:{busy} (DIMSE): " in out.stderr
