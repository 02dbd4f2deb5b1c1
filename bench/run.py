"""``make bench``: webpacs (and optionally Orthanc) under the same DICOMweb workloads.

    python bench/run.py [--size small|standard] [--anchor orthanc] [--duration 10]
        [--backends sqlite+files,couchdb+s3,postgresql+files] [--instances N]
    python bench/run.py --curves [--curve-sizes 10000,100000,...]   (bench/curves.py)

1. generates (or reuses) the dataset (``bench/generate.py``);
2. starts ``webpacs serve`` on a fresh embedded store (127.0.0.1, a free port) and, with
   ``--anchor orthanc``, Orthanc with its DICOMweb plugin inside a network namespace
   that has only loopback (installing Debian's ``orthanc`` and ``orthanc-dicomweb`` when
   missing); with ``--backends ...,couchdb+s3`` also a pouchdb-server (CouchDB stand-in,
   from ``.npm-tools``) and a moto S3 server on 127.0.0.1, and a second ``webpacs serve``
   with ``index: couchdb``, ``blobs: s3`` over them; with ``postgresql+files`` a
   PostgreSQL started for the run (``bench/postgres.py``) and a ``webpacs serve`` with
   ``index: postgresql`` over it;
3. stores the dataset in each by STOW-RS (batches of 50), times ``webpacs import`` of
   the same files into another fresh store, and ``webpacs static build`` when that
   command exists;
4. when nginx is installed (and unless ``--no-nginx``), serves the same bytes as files
   from nginx for the rows issue 16 compares with it (``bench/nginx.py``);
5. runs each read workload of ``bench/load.py`` against each server in turn
   (alternating which goes first), prints a table with the webpacs/Orthanc and
   webpacs/nginx ratios and the issue's target per row, and writes
   ``bench/results/<time>-<size>.json``.

Every step is bounded in time and everything started is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from rich.console import Console
from rich.table import Table

from bench import bulk_import, curves, load, nginx, postgres, qido_scale
from bench.generate import SIZES, Manifest, SeriesInfo, StudyInfo, generate

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
console = Console(stderr=True)

#: The issue's targets: minimum webpacs/Orthanc ratio of requests/s (instances/s for stow).
TARGETS: dict[str, float] = {
    "stow": 2,
    "import": 3,  # webpacs import vs Orthanc's bulk import (POST /instances)
    "qido-studies-all": 20,
    "qido-studies-all-gz": 20,
    "qido-studies-patientid": 3,
    "qido-instances-of-series": 20,
    "qido-instances-of-series-gz": 20,
    "wado-study-metadata": 50,
    "wado-study-metadata-gz": 50,
    "wado-series-metadata": 50,
    "wado-series-metadata-gz": 50,
    "wado-frame": 2,
    "wado-series": 2,  # issue 16 point 2: whole series and study, 2x Orthanc
    "wado-study": 2,
    "wado-frame-j2k-native": 2,
    "wado-frame-jls-native": 2,
    "wado-rendered-jpeg": 2,
    "thumbnail-series-warm": 2,
    "thumbnail-series-cold": 2,
}

#: Peak server RSS under load, as a share of Orthanc's at most (issue 16 point 6).
RSS_TARGET = 0.75
ORTHANC_BIN = "/usr/sbin/Orthanc"
ORTHANC_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
ORTHANC_PORT = 8042


# -- processes ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def webpacs_env() -> dict[str, str]:
    """The environment for webpacs subprocesses: this checkout's sources first."""
    env = dict(os.environ)
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def webpacs_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "webpacs", *args]


def stop(proc: subprocess.Popen[Any] | None, name: str) -> None:
    """SIGTERM, then SIGKILL after 15 s; the process only (we started it)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        console.print(f"[yellow]{name} did not stop on SIGTERM; killing it")
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def webpacs_server(
    data_dir: Path, workers: int, log: Path, config: Path | None = None
) -> Iterator[tuple[str, int]]:
    """``webpacs serve`` (DICOMweb only) on 127.0.0.1; ``config``: a JSON5 file for ``-c``."""
    port = free_port()
    cmd = webpacs_cmd(
        "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)
    )
    cmd += ["--workers", str(workers), "--no-dimse"]
    if config is not None:
        cmd += ["-c", str(config)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=webpacs_env())
    try:
        base = f"http://127.0.0.1:{port}/dicomweb"
        load.wait_ready(f"{base}/studies?limit=1", 60)
        yield base, proc.pid
    finally:
        stop(proc, "webpacs")


# -- the scale-out pair: pouchdb-server (CouchDB) + moto (S3), test stand-ins --------
#: ``--backends`` choices -> the server's label in the table and the results.
BACKENDS: dict[str, str] = {
    "sqlite+files": "webpacs",
    "couchdb+s3": "webpacs (couchdb+s3)",
    "postgresql+files": "webpacs (postgresql+files)",
}
#: Where ``make test`` installs pouchdb-server (``npm install --prefix .npm-tools``).
NPM_BIN = REPO / ".npm-tools" / "node_modules" / ".bin"


def npm_tool(name: str) -> str | None:
    """Path of an npm-installed program (project-local ``.npm-tools`` or PATH), or None."""
    local = NPM_BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


@contextlib.contextmanager
def pouchdb_server(program: str, workdir: Path) -> Iterator[tuple[str, int]]:
    """pouchdb-server in memory on 127.0.0.1 (a free port); yields (url, pid)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with open(workdir / "stdout.log", "wb") as out:
        proc = subprocess.Popen(
            [program, "--in-memory", "--port", str(port), "--host", "127.0.0.1",
             "--config", str(workdir / "config.json"), "--no-stdout-logs"],
            cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pouchdb-server did not start (see {workdir}/stdout.log)")
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        stop(proc, "pouchdb-server")


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a free port) in a thread of this process; its URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def scaleout_config(workdir: Path, couchdb_url: str, s3_url: str) -> Path:
    """A JSON5 file configuring ``index: couchdb``, ``blobs: s3`` (creates the bucket)."""
    import boto3

    s3 = {
        "bucket": "webpacs-bench",
        "prefix": "webpacs",
        "endpointUrl": s3_url,
        "region": "us-east-1",
        "accessKeyId": "testing",
        "secretAccessKey": "testing",
    }
    boto3.client(
        "s3",
        endpoint_url=s3_url,
        region_name=s3["region"],
        aws_access_key_id=s3["accessKeyId"],
        aws_secret_access_key=s3["secretAccessKey"],
    ).create_bucket(Bucket=s3["bucket"])
    cfg = {
        "index": "couchdb",
        "blobs": "s3",
        "couchdb": {"url": couchdb_url, "database": "webpacs-bench"},
        "s3": s3,
    }
    path = workdir / "webpacs-couchdb-s3.json5"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg, indent=1))  # JSON is JSON5
    return path


@contextlib.contextmanager
def postgresql_server(workdir: Path, workers: int, log: Path) -> Iterator[tuple[str, int]]:
    """A local PostgreSQL (``bench.postgres``, fsync on) + ``webpacs serve`` with
    ``index: postgresql`` over it and files under its data directory; yields (base, pid)."""
    with postgres.local_postgresql(durable=True) as port:
        url = postgres.create_database(port, "webpacs_bench")
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "webpacs-postgresql.json5"
        config.write_text(json.dumps({"index": "postgresql", "postgresql": {"url": url}}))
        with webpacs_server(workdir / "data", workers, log, config) as (base, pid):
            yield base, pid


@contextlib.contextmanager
def scaleout_server(
    program: str, workdir: Path, workers: int, log: Path
) -> Iterator[tuple[str, int, int]]:
    """pouchdb-server + moto + ``webpacs serve`` over them; yields (base, pid, pouchdb pid)."""
    with contextlib.ExitStack() as stack:
        couch, couch_pid = stack.enter_context(pouchdb_server(program, workdir / "pouchdb"))
        s3 = stack.enter_context(moto_s3())
        config = scaleout_config(workdir, couch, s3)
        base, pid = stack.enter_context(webpacs_server(workdir / "data", workers, log, config))
        yield base, pid, couch_pid


def ensure_orthanc() -> str:
    """Install Debian's orthanc + orthanc-dicomweb when missing; returns the version."""
    if not (Path(ORTHANC_BIN).exists() and Path(ORTHANC_PLUGIN).exists()):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise SystemExit("Orthanc is not installed and apt-get as root is not available")
        console.print("installing orthanc and orthanc-dicomweb (apt-get)...")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        # Keep the package's service from starting on all interfaces while installing.
        policy = Path("/usr/sbin/policy-rc.d")
        added = not policy.exists()
        if added:
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        try:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, timeout=600)
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
                + ["orthanc", "orthanc-dicomweb", "wrk"],
                env=env,
                check=True,
                timeout=900,
            )
        finally:
            if added:
                policy.unlink()
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "orthanc", "orthanc-dicomweb"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "unknown"


def netns_prefix(ns: str) -> list[str]:
    return ["ip", "netns", "exec", ns]


@contextlib.contextmanager
def orthanc_server(workdir: Path, log: Path, tag: str = "") -> Iterator[tuple[str, int, str]]:
    """Orthanc in a fresh network namespace with only loopback; yields (base, pid, netns)."""
    ns = f"wpbench-{os.getpid()}{tag}"
    storage = workdir / "storage"
    storage.mkdir(parents=True)
    cfg = {
        "Name": "webpacs-bench",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": ORTHANC_PORT,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpCompressionEnabled": True,
        "Plugins": [ORTHANC_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
    }
    cfg_path = workdir / "orthanc.json"
    cfg_path.write_text(json.dumps(cfg, indent=1))
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(netns_prefix(ns) + ["ip", "link", "set", "lo", "up"], check=True)
        with open(log, "wb") as out:
            # `ip netns exec` execs Orthanc, so proc.pid is Orthanc's pid.
            proc = subprocess.Popen(
                netns_prefix(ns) + [ORTHANC_BIN, str(cfg_path)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{ORTHANC_PORT}/dicom-web"
        subprocess.run(
            netns_prefix(ns)
            + [sys.executable, str(HERE / "load.py"), "--base", base, "--workloads", "none"]
            + ["--wait", "60"],
            check=True,
            timeout=90,
        )
        yield base, proc.pid, ns
    finally:
        stop(proc, "Orthanc")
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)


# -- driving -----------------------------------------------------------------------
def drive(
    prefix: list[str],
    base: str,
    server: str,
    pid: int,
    manifest: Path,
    args: list[str],
    bound: float,
) -> list[dict[str, Any]]:
    """Run ``load.py`` (in the server's network namespace via ``prefix``); its results."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = prefix + [sys.executable, str(HERE / "load.py"), "--base", base, "--server", server]
    cmd += ["--pid", str(pid), "--manifest", str(manifest), "--json", str(out), *args]
    try:
        subprocess.run(cmd, check=True, timeout=bound, stdout=subprocess.DEVNULL)
        results: list[dict[str, Any]] = json.loads(out.read_text())
        return results
    finally:
        out.unlink(missing_ok=True)


def timed_cli(name: str, cmd: list[str], items: int, nbytes: int, bound: float) -> dict[str, Any]:
    """Run a webpacs command, timing it and sampling its process tree's peak RSS."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=webpacs_env())
    with load.RssSampler(proc.pid) as rss:
        try:
            out, err = proc.communicate(timeout=bound)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    secs = time.monotonic() - start
    ok = proc.returncode == 0
    return asdict(
        load.Result(
            workload=name,
            server="webpacs",
            tool="cli",
            requests=1,
            errors=0 if ok else 1,
            seconds=round(secs, 2),
            mb_per_s=round(nbytes / secs / 1e6, 1) if ok else 0,
            items=items if ok else 0,
            items_per_s=round(items / secs, 1) if ok else 0,
            peak_rss_mb=rss.peak_mb,
            check=_json_line(out),
            note="" if ok else err.decode(errors="replace").strip()[-300:],
        )
    )


def _json_line(out: bytes) -> dict[str, Any]:
    """The last line of a command's output that is a JSON object (``--json`` figures)."""
    for line in reversed(out.decode(errors="replace").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return {}


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = f.readline().split(":", 1)[1].strip()
    rev = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    wrk = shutil.which("wrk")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "webpacs_commit": rev,
        "load_tool": "wrk" if wrk else "python (httpx)",
        # Other work on the machine skews the figures: note the load around the run.
        "loadavg_start": os.getloadavg(),
    }


# -- report ------------------------------------------------------------------------
def _rate(r: dict[str, Any] | None) -> float | None:
    """Requests/s (instances/s for uploads); ``None`` when nothing was done or every answer
    was an error (a server that answers 404 or 500 at once has no rate to compare)."""
    if r is None or not r["requests"] or r["errors"] >= r["requests"]:
        return None
    v = r["items_per_s"] if r.get("items_per_s") is not None else r["rps"]
    return float(v) if v is not None else None


def _fmt(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def _missing(r: dict[str, Any] | None) -> str:
    """The cell of a workload without a rate: not run, none completed, or why it failed."""
    if r is None:
        return "-"
    if r["note"]:
        return str(r["note"])[:40]
    if not r["requests"] and not r["errors"]:
        return f"none done in {r['seconds']:g} s"
    status = (r.get("check") or {}).get("status")
    if r["requests"] and r["errors"] >= r["requests"] and status:
        return f"every answer an error (HTTP {status})"
    return "failed"


def _medians(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (workload, server), the round with the median rate (rounds: ``--rounds``)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["workload"], r["server"]), []).append(r)
    out = {}
    for key, rounds in groups.items():
        rated = sorted((r for r in rounds if _rate(r) is not None), key=lambda r: _rate(r) or 0)
        out[key] = rated[(len(rated) - 1) // 2] if rated else rounds[-1]
    return out


def summarize(
    results: list[dict[str, Any]], descriptions: dict[str, str], servers: list[str]
) -> tuple[Table, list[dict[str, Any]]]:
    """The table: a column group per server; with Orthanc, webpacs/Orthanc and the target;
    with couchdb+s3 or postgresql+files, its ratio to sqlite+files (same data, same
    workload)."""
    by = _medians(results)
    order: list[str] = []
    for r in results:
        if r["workload"] not in order:
            order.append(r["workload"])
    ref, scaleout = BACKENDS["sqlite+files"], BACKENDS["couchdb+s3"]
    pairs: list[tuple[str, str, str]] = []  # (column, numerator, denominator)
    if scaleout in servers and ref in servers:
        pairs.append(("couchdb+s3 / sqlite+files", scaleout, ref))
    if BACKENDS["postgresql+files"] in servers and ref in servers:
        pairs.append(("postgresql+files / sqlite+files", BACKENDS["postgresql+files"], ref))
    anchor = "orthanc" in servers and ref in servers
    if anchor:
        pairs.append(("ratio", ref, "orthanc"))
    with_nginx = nginx.LABEL in servers and ref in servers
    if with_nginx:
        pairs.append(("webpacs / nginx", ref, nginx.LABEL))
    table = Table(title="webpacs benchmark", show_lines=False)
    table.add_column("workload")
    for s in servers:
        table.add_column(f"{s} req/s", justify="right")
        table.add_column("p50 / p99 ms", justify="right")
        table.add_column("MB/s", justify="right")
    for column, _, _ in pairs:
        table.add_column(column, justify="right")
    if anchor:
        table.add_column("target", justify="right")
    if with_nginx:
        table.add_column("nginx target", justify="right")
    rows = []
    for name in order:
        cells = [descriptions.get(name, name)]
        row: dict[str, Any] = {"workload": name}
        for s in servers:
            got = by.get((name, s))
            rate = _rate(got)
            if got is None or rate is None:
                cells += [_missing(got), "", ""]
            else:
                r = got
                unit = " inst/s" if r.get("items_per_s") is not None else ""
                err = f" [red]{r['errors']} err[/]" if r["errors"] else ""
                lat = f"{_fmt(r['p50_ms'])} / {_fmt(r['p99_ms'])}" if r["p50_ms"] else ""
                cells += [_fmt(rate) + unit + err, lat, _fmt(r["mb_per_s"])]
            row[s] = rate
        for column, num, den in pairs:
            a, b = row.get(num), row.get(den)
            ratio = a / b if a and b else None
            backend = column.split(" /")[0].replace("+", "_")
            key = "ratio" if column == "ratio" else f"{backend}_ratio"
            if den == nginx.LABEL:  # of MB/s for whole series (nginx: a file a request)
                ratio = nginx.ratio(name, by.get((name, num)), by.get((name, den)))
                key = "nginx_ratio"
            row[key] = round(ratio, 2) if ratio else None
            cells.append(f"{ratio:.2f}x" if ratio else "-")
        if anchor:
            target = TARGETS.get(name)
            row["target"] = target
            mark = ""
            if row["ratio"] is not None and target is not None:
                mark = " [green]ok[/]" if row["ratio"] >= target else " [red]missed[/]"
            cells.append((f"{target:g}x" + mark) if target else "")
        if with_nginx:
            cells.append(nginx.target_cell(name, row))
        table.add_row(*cells)
        rows.append(row)
    peak = {
        s: max(
            ((r["peak_rss_mb"] or 0) for r in results if r["server"] == s and r["tool"] != "cli"),
            default=0,
        )
        for s in servers
    }
    cells = ["peak server RSS under load (MB)"]
    for s in servers:
        cells += [f"{peak[s]:.0f}", "", ""]
    for _, num, den in pairs:
        a, b = peak[num], peak[den]
        cells.append(f"{a / b:.2f}x" if b else "-")
    if anchor:  # issue 16 point 6: at most three quarters of Orthanc's
        ok = " [green]ok[/]" if peak[ref] <= RSS_TARGET * peak["orthanc"] else " [red]missed[/]"
        cells.append(f"<= {RSS_TARGET:g}x" + ok)
    if with_nginx:
        cells.append("")
    table.add_row(*cells)
    rows.append({"workload": "peak-rss-mb", **peak})
    return table, rows


# -- main --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="standard")
    p.add_argument("--anchor", choices=["orthanc"], default=None)
    p.add_argument(
        "--backends",
        default="sqlite+files",
        help="comma-separated webpacs storage backends, each its own server and column:"
        f" {', '.join(BACKENDS)} [default: sqlite+files; it is always run]",
    )
    p.add_argument(
        "--instances",
        type=int,
        default=None,
        help="use only the first N instances of the dataset, for every server (the"
        " couchdb+s3 stand-ins ingest slowly)",
    )
    p.add_argument("--duration", type=float, default=5, help="seconds per read workload round")
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of each read workload per server, alternating; the table shows the median",
    )
    p.add_argument("--connections", type=int, default=4, help="concurrent connections")
    p.add_argument("--workers", type=int, default=2, help="webpacs server processes")
    p.add_argument("--workloads", default="all", help="comma-separated read workloads")
    p.add_argument("--no-import", action="store_true", help="skip the `webpacs import` row")
    p.add_argument("--cache", type=Path, default=HERE / ".data")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.add_argument("--keep", action="store_true", help="keep the servers' data directories")
    p.add_argument(
        "--no-nginx",
        action="store_true",
        help="leave out the nginx column (on whenever nginx is installed: bench/nginx.py)",
    )
    p.add_argument(
        "--qido-scale",
        type=int,
        default=None,
        help="synthetic index rows for the QIDO-at-scale rows [standard: 1000000, small: 20000;"
        " 0 = skip]",
    )
    curves.add_arguments(p)
    args = p.parse_args(argv)
    if args.curves:  # the cost curves instead of the table (bench/curves.py)
        curves.run_curves(args, machine())
        return 0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        p.error(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    if "sqlite+files" not in backends:
        backends.insert(0, "sqlite+files")  # the reference column (and import, static build)
    if args.instances is not None and args.instances < 1:
        p.error("--instances must be at least 1")

    started = dt.datetime.now(dt.UTC)
    notes: list[str] = []
    manifest = generate(args.size, args.cache)
    console.print(
        f"dataset [bold]{args.size}[/]: {manifest.instance_count} instances,"
        f" {manifest.total_bytes / 1e6:,.0f} MB in {manifest.root}"
    )
    work = Path(tempfile.mkdtemp(prefix="webpacs-bench-"))
    mpath = Path(manifest.root) / "manifest.json"
    if args.instances is not None and args.instances < manifest.instance_count:
        manifest = subset(manifest, args.instances)
        mpath = work / "manifest.json"
        mpath.write_text(manifest.to_json())
        notes.append(
            f"every server holds only the first {manifest.instance_count} instances of the"
            f" {args.size} dataset ({len(manifest.studies)} studies, --instances)"
        )
    pouchdb = None
    if "couchdb+s3" in backends:
        pouchdb = npm_tool("pouchdb-server")
        if pouchdb is None:
            backends.remove("couchdb+s3")
            notes.append(
                "couchdb+s3 skipped: pouchdb-server is not installed (`make test` installs it"
                " into .npm-tools with npm)"
            )
            console.print(f"[yellow]{notes[-1]}")
        else:
            notes.append(
                "couchdb+s3 runs on test stand-ins on this machine: pouchdb-server 4 (in"
                " memory) for CouchDB and moto for S3, not production CouchDB/S3; its peak RSS"
                " is webpacs' own (pouchdb-server's is in the results JSON)"
            )
    if "postgresql+files" in backends:
        try:
            import psycopg  # noqa: F401

            postgres.program("initdb")
        except (ImportError, postgres.Unavailable) as e:
            backends.remove("postgresql+files")
            notes.append(f"postgresql+files skipped: {e}")
            console.print(f"[yellow]{notes[-1]}")
        else:
            notes.append(
                "postgresql+files runs on a PostgreSQL started for the run on this machine"
                " (Debian's, default settings, fsync on)"
            )
    ngx_program = None if args.no_nginx else nginx.program()
    if ngx_program is None and not args.no_nginx:
        notes.append("nginx column skipped: nginx is not installed (Debian package nginx)")
        console.print(f"[yellow]{notes[-1]}")
    ngx: nginx.Column | None = None
    info = machine()
    if args.anchor == "orthanc":
        info["orthanc"] = ensure_orthanc()
    results: list[dict[str, Any]] = []
    read_bound = args.duration + 300
    stow_bound = 1800.0
    pouchdb_rss: load.RssSampler | None = None
    try:
        with contextlib.ExitStack() as stack:
            servers: dict[str, tuple[list[str], str, int]] = {}
            base, pid = stack.enter_context(
                webpacs_server(work / "webpacs", args.workers, work / "webpacs.log")
            )
            servers[BACKENDS["sqlite+files"]] = ([], base, pid)
            if pouchdb is not None:
                console.print("starting pouchdb-server, moto S3 and webpacs (couchdb+s3)...")
                sbase, spid, couch_pid = stack.enter_context(
                    scaleout_server(pouchdb, work / "scaleout", args.workers, work / "c+s3.log")
                )
                servers[BACKENDS["couchdb+s3"]] = ([], sbase, spid)
                pouchdb_rss = stack.enter_context(load.RssSampler(couch_pid, 0.2))
            if "postgresql+files" in backends:
                console.print("starting PostgreSQL and webpacs (postgresql+files)...")
                pbase, ppid = stack.enter_context(
                    postgresql_server(work / "postgresql", args.workers, work / "pg.log")
                )
                servers[BACKENDS["postgresql+files"]] = ([], pbase, ppid)
            if args.anchor == "orthanc":
                obase, opid, ns = stack.enter_context(
                    orthanc_server(work / "orthanc", work / "orthanc.log")
                )
                servers["orthanc"] = (netns_prefix(ns), obase, opid)
            names = list(servers)
            for name in names:
                prefix, b, spid = servers[name]
                console.print(f"STOW-RS {manifest.instance_count} instances to {name}...")
                results += drive(
                    prefix, b, name, spid, mpath, ["--stow", "--workloads", "none"], stow_bound
                )
            if not args.no_import:
                console.print("webpacs import of the same files...")
                cmd = webpacs_cmd("import", "--data-dir", str(work / "import"))
                cmd += [str(f) for f in manifest.files()]  # the STOW'd files, not the codec ones
                results.append(
                    timed_cli(
                        "import", cmd, manifest.instance_count, manifest.total_bytes, stow_bound
                    )
                )
                shutil.rmtree(work / "import", ignore_errors=True)
                if args.anchor == "orthanc":  # Orthanc's bulk import: POST /instances
                    console.print("Orthanc bulk import of the same files (POST /instances)...")
                    results.append(
                        bulk_import.orthanc_import(
                            orthanc_server, netns_prefix, work / "orthanc-import", mpath, stow_bound
                        )
                    )
            results += static_build(work, manifest, keep=ngx_program is not None)
            wanted = None if args.workloads == "all" else set(args.workloads.split(","))
            workloads = [
                w for w in load.read_workloads(manifest) if wanted is None or w.name in wanted
            ]
            if ngx_program and (work / "static").is_dir() and nginx.wanted(workloads):
                console.print("nginx: the same bytes as files, checked against webpacs...")
                ngx = stack.enter_context(
                    nginx.column(ngx_program, work / "nginx", manifest, work / "webpacs",
                                 work / "static", base, args.workers, [w.name for w in workloads])
                )  # fmt: skip
                servers[nginx.LABEL] = ([], ngx.base, ngx.pid)
                names.append(nginx.LABEL)
                results += ngx.failed
            elif ngx_program and nginx.wanted(workloads):
                notes.append("nginx column skipped: no static tree (static build failed)")
            for i, wl in enumerate(workloads):
                for k in range(args.rounds):
                    turn = names if (i + k) % 2 == 0 else names[::-1]
                    for name in turn:
                        if name == nginx.LABEL and ngx and wl.name not in ngx.rows:
                            continue
                        console.print(
                            f"{wl.name} on {name} ({args.duration:g} s,"
                            f" round {k + 1}/{args.rounds})..."
                        )
                        prefix, b, spid = servers[name]
                        extra = ["--workloads", wl.name, "--duration", str(args.duration)]
                        extra += ["--connections", str(args.connections)]
                        if name == nginx.LABEL and ngx:
                            extra += ngx.driver_args()
                        results += drive(prefix, b, name, spid, mpath, extra, read_bound)
    finally:
        if args.keep:
            console.print(f"data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    scale = args.qido_scale
    if scale is None:
        scale = 1_000_000 if args.size == "standard" else 20_000
    scale_rows = qido_scale.measure(scale, 200, http=True) if scale else []
    if scale and "postgresql+files" in backends:
        scale_rows += qido_scale.measure(scale, 200, http=True, index="postgresql")

    descriptions = {w.name: w.description for w in load.read_workloads(manifest)}
    descriptions.update(
        {
            "stow": "STOW-RS, batches of 50",
            "import": "import, same files (webpacs import; Orthanc: POST /instances)",
            "static-build": "webpacs static build",
        }
    )
    server_names = [BACKENDS[b] for b in backends] + (["orthanc"] if args.anchor else [])
    if ngx is not None:
        server_names.append(nginx.LABEL)
        notes.append(nginx.NOTE)
    table, rows = summarize(results, descriptions, server_names)
    Console(width=max(160, shutil.get_terminal_size().columns)).print(table)
    for note in notes:
        console.print(f"note: {note}")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    tags = [args.size]
    if args.instances is not None:
        tags.append(f"{manifest.instance_count}inst")
    tags += [b.replace("+", "-") for b in backends if b != "sqlite+files"]
    if args.anchor:
        tags.append(args.anchor)
    path = args.out / f"{stamp}-{'-'.join(tags)}.json"
    doc = {
        "started": started.isoformat(),
        "size": args.size,
        "dims": list(manifest.dims),
        "instances": manifest.instance_count,
        "dataset_bytes": manifest.total_bytes,
        "settings": {
            "duration": args.duration,
            "rounds": args.rounds,
            "connections": args.connections,
            "webpacs_workers": args.workers,
            "backends": backends,
            "instances": args.instances,
        },
        "machine": info,
        "notes": notes,
        "results": results,
        "summary": rows,
        "qido_scale": scale_rows,
    }
    if pouchdb_rss is not None:
        doc["pouchdb_server_peak_rss_mb"] = pouchdb_rss.peak_mb
    if ngx is not None:
        doc["nginx"] = ngx.info
    info["loadavg_end"] = os.getloadavg()
    path.write_text(json.dumps(doc, indent=1))
    console.print(f"results: {path}")
    return 0


def subset(m: Manifest, n: int) -> Manifest:
    """The first ``n`` instances of a dataset (in ``files()`` order), as a manifest.

    Its files are absolute paths, so the manifest can be written anywhere.
    """
    studies: list[StudyInfo] = []
    left = n
    for st in m.studies:
        if left <= 0:
            break
        series: list[SeriesInfo] = []
        for se in st.series:
            if left <= 0:
                break
            k = min(left, len(se.instances))
            files = [str(Path(m.root) / f) for f in se.files[:k]]
            series.append(replace(se, instances=se.instances[:k], files=files))
            left -= k
        studies.append(replace(st, series=series))
    # the compressed copies (transcoding rows) keep their own study, with absolute paths
    codecs = [replace(cs, files=[str(Path(m.root) / f) for f in cs.files]) for cs in m.codecs]
    out = replace(m, studies=studies, codecs=codecs, total_bytes=0)
    out.total_bytes = sum(f.stat().st_size for f in out.files())
    return out


def static_build(work: Path, manifest: Manifest, keep: bool = False) -> list[dict[str, Any]]:
    """``webpacs static build`` of the STOW'd store, when the command exists; ``keep``: leave
    the tree in ``work/static`` (the nginx column serves its documents)."""
    probe = subprocess.run(
        webpacs_cmd("static", "--help"),
        capture_output=True,
        env=webpacs_env(),
        check=False,
        timeout=60,
    )
    if probe.returncode != 0:
        console.print("[yellow]`webpacs static` does not exist yet: static build skipped")
        return [
            asdict(
                load.Result(
                    workload="static-build",
                    server="webpacs",
                    tool="cli",
                    note="skipped: no `webpacs static` command",
                )
            )
        ]
    console.print("webpacs static build...")
    cmd = webpacs_cmd(
        "static", "build", "--data-dir", str(work / "webpacs"),
        "--out", str(work / "static"), "--dedup", "--json",
    )  # fmt: skip
    res = timed_cli("static-build", cmd, manifest.instance_count, manifest.total_bytes, 1800)
    fig = res["check"]
    if fig.get("tree_bytes"):
        ratio = fig["tree_bytes"] / manifest.total_bytes
        dedup = fig.get("dedup_ratio")
        res["note"] = f"tree {fig['tree_bytes'] / 1e6:.0f} MB = {ratio:.2f}x the input;" + (
            f" dedup metadata {dedup:.3f}x plain" if dedup is not None else ""
        )
    if not keep or res["errors"]:
        shutil.rmtree(work / "static", ignore_errors=True)
    return [res]


if __name__ == "__main__":
    sys.exit(main())
