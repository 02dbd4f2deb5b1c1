"""DICOMweb load driver: the same workloads against any server, given its base URL.

Each workload reports requests/s, p50/p99 latency, MB/s (bytes on the wire, so a
gzip'd response counts compressed), errors, and the peak RSS of the server's process
tree (``--pid``: VmRSS of the process and its descendants, sampled every 50 ms).
Reads use ``wrk`` when it is installed (a Lua script rotates the request paths and
prints a JSON summary), else a bounded Python loop (httpx, a few threads). STOW-RS is
always the Python loop (each batch is a new multipart body of 50 instances).

    python bench/load.py --base http://127.0.0.1:8042/dicomweb \\
        --manifest bench/.data/small/manifest.json --pid 1234 --stow --duration 5

Prints one JSON object per workload (a line starting with ``RESULT``) and, with
``--json FILE``, writes the list there. Every run is bounded by ``--duration`` per
workload and ``--max-requests``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.generate import Manifest

GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}
JSON_ACCEPT = {"Accept": "application/dicom+json"}


# -- memory ------------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its descendants, reaped
    children included: less sensitive to the machine's other load than wall time."""
    kids = _children()
    total, todo, tick = 0, [pid], os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        todo += kids.get(p, [])
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / tick


def run_threads(pid: int | None, n: int, work: Callable[[], None]) -> tuple[float, float | None]:
    """Run ``work`` on ``n`` threads; the seconds they took and the peak RSS (MB) of the
    process tree of ``pid`` meanwhile."""
    start = time.monotonic()
    with RssSampler(pid) as rss:
        threads = [threading.Thread(target=work) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return time.monotonic() - start, rss.peak_mb


def tree_rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` and all its descendants, in kB (0 when it is gone)."""
    kids = _children()
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += kids.get(p, [])
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


class RssSampler:
    """Samples the RSS of a process tree in a thread; ``peak_mb`` after ``stop``."""

    def __init__(self, pid: int | None, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        assert self.pid is not None
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, tree_rss_kb(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        if self.pid:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.pid:
            self._thread.join()
            self.peak_kb = max(self.peak_kb, tree_rss_kb(self.pid))

    @property
    def peak_mb(self) -> float | None:
        return round(self.peak_kb / 1024, 1) if self.pid else None


# -- results -----------------------------------------------------------------------
@dataclass
class Result:
    """One workload against one server."""

    workload: str
    server: str
    tool: str
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    mb_per_s: float = 0.0
    items: int | None = None  # instances stored (ingest rows)
    items_per_s: float | None = None
    peak_rss_mb: float | None = None
    check: dict[str, Any] = field(default_factory=dict)  # one request's status/size/items
    note: str = ""


@dataclass
class Workload:
    """A read workload: GET requests rotating over ``paths`` (relative to the base URL)."""

    name: str
    description: str
    paths: list[str]
    headers: dict[str, str]


def _transcode_workloads(m: Manifest) -> list[Workload]:
    """One frame of a compressed instance asked as native pixels (the server decodes it)."""
    names = {"1.2.840.10008.1.2.4.90": "j2k", "1.2.840.10008.1.2.4.80": "jls"}
    labels = {"j2k": "JPEG 2000 lossless", "jls": "JPEG-LS lossless"}
    native = {"Accept": 'multipart/related; type="application/octet-stream"', **IDENTITY}
    out = []
    for cs in m.codecs:
        name = names.get(cs.transfer_syntax)
        if name is None:
            continue
        paths = [
            f"studies/{cs.study}/series/{cs.series}/instances/{sop}/frames/1"
            for sop in cs.instances
        ]
        out.append(
            Workload(
                f"wado-frame-{name}-native",
                f"WADO one frame, {labels[name]} -> native",
                paths,
                native,
            )
        )
    return out


def read_workloads(m: Manifest) -> list[Workload]:
    """The read workloads for a dataset (paths rotate over its studies/series/instances)."""
    studies = m.studies
    series = [(st, se) for st in studies for se in st.series]
    dates = sorted(st.date for st in studies)
    quarter = max(1, len(dates) // 4)
    ranges = [
        f"{dates[i]}-{dates[min(i + quarter, len(dates)) - 1]}" for i in range(min(4, len(dates)))
    ]
    frames = [
        f"studies/{st.uid}/series/{se.uid}/instances/{sop}/frames/1"
        for st, se in series
        for sop in se.instances
    ]
    mp_octet = {"Accept": 'multipart/related; type="application/octet-stream"'}
    mp_dicom = {"Accept": 'multipart/related; type="application/dicom"'}
    n_study = sum(len(se.instances) for se in studies[0].series)
    n_series = len(studies[0].series[0].instances)
    return [
        Workload(
            "qido-studies-all",
            f"QIDO all studies ({len(studies)})",
            ["studies"],
            {**JSON_ACCEPT, **IDENTITY},
        ),
        Workload(
            "qido-studies-all-gz",
            "QIDO all studies, gzip",
            ["studies"],
            {**JSON_ACCEPT, **GZIP},
        ),
        Workload(
            "qido-studies-patientid",
            "QIDO studies by PatientID",
            [f"studies?PatientID={st.patient_id}" for st in studies],
            {**JSON_ACCEPT, **IDENTITY},
        ),
        Workload(
            "qido-studies-date",
            "QIDO studies by date range",
            [f"studies?StudyDate={r}" for r in ranges],
            {**JSON_ACCEPT, **IDENTITY},
        ),
        Workload(
            "qido-series-of-study",
            "QIDO series of a study",
            [f"studies/{st.uid}/series" for st in studies],
            {**JSON_ACCEPT, **IDENTITY},
        ),
        Workload(
            "qido-instances-of-series",
            f"QIDO instances of a series ({n_series})",
            [f"studies/{st.uid}/series/{se.uid}/instances" for st, se in series],
            {**JSON_ACCEPT, **IDENTITY},
        ),
        Workload(
            "qido-instances-of-series-gz",
            "QIDO instances of a series, gzip",
            [f"studies/{st.uid}/series/{se.uid}/instances" for st, se in series],
            {**JSON_ACCEPT, **GZIP},
        ),
        Workload(
            "wado-study-metadata",
            f"WADO study metadata ({n_study} instances)",
            [f"studies/{st.uid}/metadata" for st in studies],
            {**JSON_ACCEPT, **IDENTITY},
        ),
        Workload(
            "wado-study-metadata-gz",
            "WADO study metadata, gzip",
            [f"studies/{st.uid}/metadata" for st in studies],
            {**JSON_ACCEPT, **GZIP},
        ),
        Workload(
            "wado-series-metadata",
            f"WADO series metadata ({n_series} instances)",
            [f"studies/{st.uid}/series/{se.uid}/metadata" for st, se in series],
            {**JSON_ACCEPT, **IDENTITY},
        ),
        Workload(
            "wado-series-metadata-gz",
            "WADO series metadata, gzip",
            [f"studies/{st.uid}/series/{se.uid}/metadata" for st, se in series],
            {**JSON_ACCEPT, **GZIP},
        ),
        Workload("wado-frame", "WADO one frame (512 KB)", frames, {**mp_octet, **IDENTITY}),
        *_transcode_workloads(m),
        Workload(
            "wado-rendered-jpeg",
            "WADO rendered JPEG of a 512x512 CT frame",
            [f"{p.removesuffix('/frames/1')}/rendered" for p in frames],
            {"Accept": "image/jpeg", **IDENTITY},
        ),
        # warm: the series thumbnail is a derived document after the first request; cold:
        # a thumbnail with a viewport is rendered on every request (decode, window, resize)
        Workload(
            "thumbnail-series-warm",
            "Series thumbnail, kept (warm)",
            [f"studies/{st.uid}/series/{se.uid}/thumbnail" for st, se in series],
            {"Accept": "image/jpeg", **IDENTITY},
        ),
        Workload(
            "thumbnail-series-cold",
            "Series thumbnail, rendered each time (cold)",
            [f"studies/{st.uid}/series/{se.uid}/thumbnail?viewport=127,127" for st, se in series],
            {"Accept": "image/jpeg", **IDENTITY},
        ),
        Workload(
            "wado-series",
            f"WADO whole series ({n_series} instances, multipart DICOM)",
            [f"studies/{st.uid}/series/{se.uid}" for st, se in series],
            {**mp_dicom, **IDENTITY},
        ),
        Workload(
            "wado-study",
            f"WADO whole study ({n_study} instances, multipart DICOM)",
            [f"studies/{st.uid}" for st in studies],
            {**mp_dicom, **IDENTITY},
        ),
    ]


# -- one request, as a check -------------------------------------------------------
def check_one(base: str, wl: Workload) -> dict[str, Any]:
    """One request of the workload: status, body size (decoded), JSON item count."""
    url = f"{base.rstrip('/')}/{wl.paths[0]}"
    try:
        r = httpx.get(url, headers=wl.headers, timeout=120)
    except httpx.HTTPError as e:
        return {"error": str(e)}
    out: dict[str, Any] = {
        "status": r.status_code,
        "bytes": len(r.content),
        "wire_bytes": r.num_bytes_downloaded,
        "encoding": r.headers.get("content-encoding", ""),
    }
    if "json" in r.headers.get("content-type", "") and r.status_code == 200:
        try:
            body = r.json()
            out["items"] = len(body) if isinstance(body, list) else 1
        except ValueError:
            out["items"] = None
    return out


# -- wrk ---------------------------------------------------------------------------
_LUA = """
local paths = {%(paths)s}
local i = 0
%(headers)s
request = function()
  i = i + 1
  if i > #paths then i = 1 end
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"bytes":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,' ..
    '"write":%%d,"status":%%d,"timeout":%%d,"p50_us":%%d,"p99_us":%%d}\\n',
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def _lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_wrk(
    base: str, wl: Workload, duration: float, connections: int, timeout: float
) -> dict[str, Any]:
    prefix = urlsplit(base).path.rstrip("/")
    paths = ",".join(_lua_str(f"{prefix}/{p}") for p in wl.paths)
    headers = "\n".join(
        f"wrk.headers[{_lua_str(k)}] = {_lua_str(v)}" for k, v in wl.headers.items()
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_LUA % {"paths": paths, "headers": headers})
        script = f.name
    try:
        cmd = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            f"--timeout={round(timeout)}s",
            "-s",
            script,
            base,
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration + timeout + 30, check=False
        )
    finally:
        os.unlink(script)
    for line in proc.stdout.splitlines():
        if line.startswith("WRKJSON "):
            d: dict[str, Any] = json.loads(line[8:])
            return d
    raise RuntimeError(f"wrk printed no summary: {proc.stdout[-500:]} {proc.stderr[-500:]}")


# -- python loop -------------------------------------------------------------------
def run_python(
    base: str,
    wl: Workload,
    duration: float,
    connections: int,
    timeout: float,
    max_requests: int,
) -> dict[str, Any]:
    deadline = time.monotonic() + duration
    lock = threading.Lock()
    latencies: list[float] = []
    state = {"bytes": 0, "errors": 0, "n": 0}

    def worker(offset: int) -> None:
        with httpx.Client(base_url=base.rstrip("/") + "/", timeout=timeout) as client:
            i = offset
            # at least one request each, however long starting the client took (a busy
            # machine can spend a short run's whole duration there)
            while i == offset or time.monotonic() < deadline:
                with lock:
                    if state["n"] >= max_requests:
                        return
                    state["n"] += 1
                path = wl.paths[i % len(wl.paths)]
                i += connections
                t0 = time.perf_counter()
                try:
                    with client.stream("GET", path, headers=wl.headers) as r:
                        nbytes = sum(len(c) for c in r.iter_raw())
                    ok = r.status_code < 400
                except httpx.HTTPError:
                    nbytes, ok = 0, False
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    state["bytes"] += nbytes
                    state["errors"] += 0 if ok else 1

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    return {
        "requests": len(latencies),
        "bytes": state["bytes"],
        "duration_us": int(elapsed * 1e6),
        "status": state["errors"],
        "p50_us": int(_percentile(latencies, 50) * 1e6),
        "p99_us": int(_percentile(latencies, 99) * 1e6),
    }


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


def run_read(
    base: str,
    server: str,
    wl: Workload,
    *,
    pid: int | None,
    duration: float,
    connections: int,
    timeout: float = 60,
    max_requests: int = 1_000_000,
    tool: str = "auto",
) -> Result:
    """Run one read workload and return its result."""
    use_wrk = tool == "wrk" or (tool == "auto" and shutil.which("wrk") is not None)
    check = check_one(base, wl)
    with RssSampler(pid) as rss:
        if use_wrk:
            d = run_wrk(base, wl, duration, connections, timeout)
        else:
            d = run_python(base, wl, duration, connections, timeout, max_requests)
    secs = d["duration_us"] / 1e6 or 1e-9
    # wrk counts a response ended by the server closing the connection (no Content-Length,
    # ``Connection: close``, as Orthanc does for multipart) as a read error although the
    # request completed: those are reported in the note, not as errors.
    errors = sum(int(d.get(k, 0)) for k in ("connect", "write", "status", "timeout"))
    reads = int(d.get("read", 0))
    note = f"{reads} connection(s) closed by the server after the response" if reads else ""
    return Result(
        workload=wl.name,
        server=server,
        tool="wrk" if use_wrk else "python",
        requests=d["requests"],
        errors=errors,
        seconds=round(secs, 2),
        rps=round(d["requests"] / secs, 1),
        p50_ms=round(d["p50_us"] / 1000, 2),
        p99_ms=round(d["p99_us"] / 1000, 2),
        mb_per_s=round(d["bytes"] / secs / 1e6, 1),
        peak_rss_mb=rss.peak_mb,
        check=check,
        note=note,
    )


# -- STOW-RS -----------------------------------------------------------------------
def _multipart(files: list[Path]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    for f in files:
        chunks.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        chunks.append(f.read_bytes())
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="application/dicom"; boundary={boundary}'


def _stow_failures(body: bytes) -> int:
    try:
        doc = json.loads(body)
    except ValueError:
        return 0
    failed = doc.get("00081198", {}).get("Value", []) if isinstance(doc, dict) else []
    return len(failed)


def run_stow(
    base: str,
    server: str,
    files: list[Path],
    *,
    pid: int | None,
    batch: int = 50,
    concurrency: int = 2,
    max_seconds: float = 600,
    timeout: float = 300,
    progress: Callable[[int, int], None] | None = None,
) -> Result:
    """POST ``files`` in batches of ``batch`` (``concurrency`` requests in flight)."""
    batches = [files[i : i + batch] for i in range(0, len(files), batch)]
    lock = threading.Lock()
    latencies: list[float] = []
    state = {"next": 0, "bytes": 0, "errors": 0, "items": 0}
    deadline = time.monotonic() + max_seconds
    url = base.rstrip("/") + "/studies"

    def worker() -> None:
        with httpx.Client(timeout=timeout) as client:
            while time.monotonic() < deadline:
                with lock:
                    k = state["next"]
                    if k >= len(batches):
                        return
                    state["next"] += 1
                body, ctype = _multipart(batches[k])
                t0 = time.perf_counter()
                try:
                    r = client.post(
                        url,
                        content=body,
                        headers={"Content-Type": ctype, "Accept": "application/dicom+json"},
                    )
                    failed = _stow_failures(r.content) if r.status_code < 500 else len(batches[k])
                    if r.status_code >= 400 and not failed:
                        failed = len(batches[k])
                except httpx.HTTPError:
                    failed = len(batches[k])
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    state["bytes"] += len(body)
                    state["errors"] += failed
                    state["items"] += len(batches[k]) - failed
                    if progress:
                        progress(state["items"], len(files))

    secs, peak = run_threads(pid, concurrency, worker)
    note = "" if state["next"] >= len(batches) else f"stopped after {max_seconds:.0f} s"
    return upload_result("stow", server, "python", latencies, state, secs, peak, note)


def upload_result(
    workload: str, server: str, tool: str, latencies: list[float], state: dict[str, Any],
    secs: float, peak_rss_mb: float | None, note: str = "",
) -> Result:  # fmt: skip
    """The figures of an upload loop (STOW, Orthanc's POST /instances): ``state`` counts
    its ``errors``, ``bytes`` and ``items`` (instances)."""
    return Result(
        workload=workload,
        server=server,
        tool=tool,
        requests=len(latencies),
        errors=state["errors"],
        seconds=round(secs, 2),
        rps=round(len(latencies) / secs, 2),
        p50_ms=round(_percentile(latencies, 50) * 1000, 1),
        p99_ms=round(_percentile(latencies, 99) * 1000, 1),
        mb_per_s=round(state["bytes"] / secs / 1e6, 1),
        items=state["items"],
        items_per_s=round(state["items"] / secs, 1),
        peak_rss_mb=peak_rss_mb,
        note=note,
    )


def store_codec_series(base: str, m: Manifest) -> None:
    """STOW the compressed series (untimed: they only feed the transcoding workloads)."""
    files = m.codec_files()
    if not files:
        return
    body, ctype = _multipart(files)
    r = httpx.post(
        base.rstrip("/") + "/studies", content=body, headers={"Content-Type": ctype}, timeout=120
    )
    if r.status_code >= 400 or _stow_failures(r.content):
        raise RuntimeError(f"STOW of the compressed series failed: {r.status_code} {r.text[:300]}")


def wait_ready(url: str, timeout: float = 60) -> None:
    """Wait until ``url`` answers (any status below 500)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code < 500:
                return
        except httpx.HTTPError as e:
            last = str(e)
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s ({last})")


# -- CLI ---------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--base", required=True, help="DICOMweb base URL")
    p.add_argument("--manifest", type=Path, help="manifest.json of a generated dataset")
    p.add_argument("--server", default="server", help="label for the results")
    p.add_argument("--pid", type=int, default=None, help="server process (for peak RSS)")
    p.add_argument("--stow", action="store_true", help="first STOW the dataset (batches of 50)")
    p.add_argument("--stow-concurrency", type=int, default=2)
    p.add_argument("--stow-max-seconds", type=float, default=900)
    p.add_argument("--workloads", default="all", help="comma-separated names, 'all' or 'none'")
    p.add_argument("--duration", type=float, default=10, help="seconds per read workload")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--max-requests", type=int, default=1_000_000, help="python loop bound")
    p.add_argument("--tool", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--wait", type=float, default=0, help="wait up to N s for the server first")
    p.add_argument("--json", type=Path, help="write the results list here")
    p.add_argument(
        "--paths",
        type=Path,
        help="JSON {workload: [paths]}: run only these workloads, on these paths (a server"
        " that holds the same bytes elsewhere, e.g. nginx: bench/nginx.py)",
    )
    args = p.parse_args(argv)

    if args.wait:
        wait_ready(args.base.rstrip("/") + "/studies?limit=1", args.wait)
    results: list[Result] = []
    manifest = Manifest.load(args.manifest) if args.manifest else None
    if args.stow:
        if manifest is None:
            p.error("--stow needs --manifest")
        res = run_stow(
            args.base,
            args.server,
            manifest.files(),
            pid=args.pid,
            concurrency=args.stow_concurrency,
            max_seconds=args.stow_max_seconds,
        )
        results.append(res)
        print("RESULT " + json.dumps(asdict(res)), flush=True)
        store_codec_series(args.base, manifest)
    if args.workloads != "none":
        if manifest is None:
            p.error("read workloads need --manifest")
        wanted = None if args.workloads == "all" else set(args.workloads.split(","))
        paths = json.loads(args.paths.read_text()) if args.paths else None
        for wl in read_workloads(manifest):
            if wanted is not None and wl.name not in wanted:
                continue
            if paths is not None:
                if wl.name not in paths:
                    continue
                wl = replace(wl, paths=paths[wl.name])
            res = run_read(
                args.base,
                args.server,
                wl,
                pid=args.pid,
                duration=args.duration,
                connections=args.connections,
                max_requests=args.max_requests,
                tool=args.tool,
            )
            results.append(res)
            print("RESULT " + json.dumps(asdict(res)), flush=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))


if __name__ == "__main__":
    main()
