"""The nginx column of ``make bench``: the same bytes webpacs serves, as files, from nginx.

Issue 16 judges whole-series retrieve, frames, series metadata and QIDO of all studies
against nginx serving the same bytes from files (the physical limit of those rows). After
the STOW and ``webpacs static build`` of a run, :func:`column` lays out a document root in
the run's temp dir, starts Debian's nginx on it, checks each row's bytes against webpacs'
answer, and hands the load driver (``bench/load.py --paths``) the nginx paths of each row:

=========================  ==================================================================
row                        nginx serves
=========================  ==================================================================
wado-series, wado-study    ``series/<S>/<X>/<I>.dcm``: webpacs' stored object files
                           (hard links into its data directory), one GET per instance,
                           rotating over every instance of every series; compared in MB/s
wado-frame                 ``frames/<S>/<X>/<I>``: frame 1's bytes (the pixel data value,
                           512 KB), written once from the stored object
wado-series-metadata[-gz]  ``metadata/<S>/<X>.json``: the static tree's ``metadata.gz``
                           (hard link) and its decompressed copy; ``gzip_static on`` sends
                           the ``.gz`` file to a client that accepts gzip, the plain file
                           otherwise
qido-studies-all[-gz]      ``studies.json``: the tree's ``studies/index.json.gz``, the same
=========================  ==================================================================

nginx runs as the user running the bench, a master and as many worker processes as webpacs
has (``--workers``), ``daemon off`` (the runner starts and stops it), on 127.0.0.1 and a
free port, with ``sendfile on; tcp_nopush on; access_log off``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pydicom
from pydicom.encaps import get_frame

from bench import load
from bench.generate import Manifest
from webpacs.core.multipart import parse_media_type
from webpacs.storage.fs import FileBlobs
from webpacs.storage.objects import PREFIX, parse_key

LABEL = "nginx"
PROGRAM = "/usr/sbin/nginx"
#: Rows whose webpacs/nginx ratio is of MB/s: webpacs answers a whole series a request,
#: nginx one stored object (a series is 50 files in the standard dataset).
MB_ROWS = frozenset({"wado-series", "wado-study"})
#: The issue's targets: minimum webpacs/nginx ratio.
TARGETS: dict[str, float] = {
    "wado-series": 1 / 1.5,
    "wado-study": 1 / 1.5,
    "wado-frame": 1 / 1.5,
    "wado-series-metadata": 1 / 10,
    "wado-series-metadata-gz": 1 / 10,
    "qido-studies-all": 1 / 10,
    "qido-studies-all-gz": 1 / 10,
}
ROWS = frozenset(TARGETS)
#: The note under the table.
NOTE = (
    "nginx (Debian's) serves the same bytes as files (bench/nginx.py): wado-series and"
    " wado-study as one GET per stored object (their req/s counts files, the ratio is of"
    " MB/s), wado-frame the frame's 512 KB, the metadata and QIDO rows the static tree's"
    " documents (gzip_static); every other row of the nginx column is '-'"
)


def program() -> str | None:
    """The nginx executable (PATH or Debian's), or None."""
    found = shutil.which("nginx")
    if found:
        return found
    return PROGRAM if os.access(PROGRAM, os.X_OK) else None


def version(nginx: str) -> str:
    out = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False, timeout=30)
    return out.stderr.strip().removeprefix("nginx version: ")


def wanted(workloads: list[load.Workload]) -> bool:
    """Whether a run's read workloads hold a row nginx serves."""
    return any(w.name in ROWS for w in workloads)


# -- the document root -------------------------------------------------------------
def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copyfile(src, dst)


def _frame_one(path: Path) -> bytes:
    """Frame 1 of a stored object: what WADO-RS ``frames/1`` sends as its one part."""
    ds = pydicom.dcmread(path)
    count = int(ds.get("NumberOfFrames", 1) or 1)
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        return bytes(get_frame(ds.PixelData, 0, number_of_frames=count))
    data: bytes = ds.PixelData
    return data[: len(data) // count]


def _document(gz: Path, dst: Path) -> None:
    """``dst`` (plain) and ``dst.gz`` (the tree's gzip'd file, as it is) for gzip_static."""
    _link(gz, dst.with_name(dst.name + ".gz"))
    dst.write_bytes(gzip.decompress(gz.read_bytes()))


def document_root(
    root: Path, manifest: Manifest, data_dir: Path, tree: Path, rows: list[str]
) -> dict[str, list[str]]:
    """Write nginx's root for ``rows`` from webpacs' data directory and static tree; the
    nginx paths of each row (relative to its root)."""
    blobs = FileBlobs(data_dir / "blobs")
    stored: dict[tuple[str, str, str], Path] = {}
    for key in blobs.keys(PREFIX):
        k = parse_key(key)
        local = blobs.local_path(key)
        if k is not None and local is not None:
            stored[(k.study_uid, k.series_uid, k.sop_uid)] = Path(local)
    paths: dict[str, list[str]] = {row: [] for row in rows}
    for st in manifest.studies:
        for se in st.series:
            for sop in se.instances:
                obj = stored[(st.uid, se.uid, sop)]
                for row in MB_ROWS & set(paths):  # the same files for series and study
                    rel = f"series/{st.uid}/{se.uid}/{sop}.dcm"
                    if not (root / rel).exists():
                        _link(obj, root / rel)
                    paths[row].append(rel)
                if "wado-frame" in paths:
                    rel = f"frames/{st.uid}/{se.uid}/{sop}"
                    (root / rel).parent.mkdir(parents=True, exist_ok=True)
                    (root / rel).write_bytes(_frame_one(obj))
                    paths["wado-frame"].append(rel)
            rel = f"metadata/{st.uid}/{se.uid}.json"
            _document(tree / f"studies/{st.uid}/series/{se.uid}/metadata.gz", root / rel)
            for row in ("wado-series-metadata", "wado-series-metadata-gz"):
                if row in paths:
                    paths[row].append(rel)
    _document(tree / "studies/index.json.gz", root / "studies.json")
    for row in ("qido-studies-all", "qido-studies-all-gz"):
        if row in paths:
            paths[row].append("studies.json")
    return paths


def config(root: Path, port: int, workers: int) -> str:
    """nginx.conf: pid and temp files under the prefix (``-p``), errors to ``error.log``."""
    # as root, the workers would run as nobody, who cannot read the run's 0700 temp dir
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    return (
        "daemon off;\n"
        "master_process on;\n"
        f"worker_processes {workers};\n"
        f"{user}"
        "pid nginx.pid;\n"
        "error_log error.log warn;\n"
        "events {\n    worker_connections 1024;\n}\n"
        "http {\n"
        "    access_log off;\n"
        "    sendfile on;\n"
        "    tcp_nopush on;\n"
        "    keepalive_requests 1000000;\n"
        "    client_body_temp_path client_body_temp;\n"
        "    proxy_temp_path proxy_temp;\n"
        "    fastcgi_temp_path fastcgi_temp;\n"
        "    uwsgi_temp_path uwsgi_temp;\n"
        "    scgi_temp_path scgi_temp;\n"
        "    types {}\n"
        "    gzip off;\n"
        "    gzip_static on;\n"
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        f'        root "{root}";\n'
        "        location /series/ { default_type application/dicom; }\n"
        "        location /frames/ { default_type application/octet-stream; }\n"
        "        location / { default_type application/dicom+json; }\n"
        "    }\n"
        "}\n"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(nginx: str, prefix: Path, root: Path, workers: int) -> Iterator[tuple[str, int]]:
    """nginx on ``root`` (127.0.0.1, a free port); yields (base URL, master pid)."""
    port = _free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(config(root, port, workers))
    with open(prefix / "stdout.log", "wb") as out:
        proc = subprocess.Popen(
            [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the master and its workers
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/studies.json", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (prefix / "error.log").read_text(errors="replace")[-500:]
                raise RuntimeError(f"nginx did not start: {log}")
            time.sleep(0.1)
        yield base, proc.pid
    finally:
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: fast shutdown of the master and its workers
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


# -- the same bytes as webpacs -----------------------------------------------------
def _parts(r: httpx.Response) -> list[bytes]:
    """The bodies of a ``multipart/related`` response's parts."""
    _, params = parse_media_type(r.headers.get("content-type", ""))
    dash = b"--" + params["boundary"].encode()
    out = []
    for chunk in (b"\r\n" + r.content).split(b"\r\n" + dash)[1:]:
        if chunk.startswith(b"--"):
            break
        out.append(chunk.partition(b"\r\n\r\n")[2])
    return out


#: What the static tree's documents hold beside webpacs' own: Retrieve URL (relative there,
#: absolute in webpacs) and Available Transfer Syntax UID (static-wado's, for OHIF).
_UNCOMPARED = frozenset({"00081190", "00083002"})


def _normal(doc: Any) -> Any:
    """A DICOM JSON document without what names a server or only the tree holds
    (:data:`_UNCOMPARED`, the value of each ``BulkDataURI``), in a fixed order."""
    if isinstance(doc, list):
        return sorted((_normal(v) for v in doc), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(doc, dict):
        return {
            k: ("" if k == "BulkDataURI" else _normal(v))
            for k, v in doc.items()
            if k not in _UNCOMPARED
        }
    return doc


def _digests(bodies: list[bytes]) -> list[str]:
    return sorted(hashlib.sha256(b).hexdigest() for b in bodies)


def verify(
    webpacs: str, base: str, manifest: Manifest, paths: dict[str, list[str]]
) -> dict[str, dict[str, Any]]:
    """Per row, webpacs' check request (the row's first path) against nginx's answer.

    ``same`` is True when the stored objects or the frame are byte for byte the same, or the
    JSON documents are equal but for server URLs, and nginx sent the ``.gz`` file exactly to
    the rows that ask for gzip.
    """
    workloads = {w.name: w for w in load.read_workloads(manifest)}
    out: dict[str, dict[str, Any]] = {}
    with httpx.Client(timeout=120) as client:
        for name, ours in paths.items():
            wl = workloads[name]
            ref = client.get(f"{webpacs.rstrip('/')}/{wl.paths[0]}", headers=wl.headers)
            if name in MB_ROWS:  # the first series' (study's) objects, one GET each
                first = manifest.studies[0]
                count = sum(
                    len(se.instances)
                    for se in (first.series if name == "wado-study" else first.series[:1])
                )
                got = [client.get(f"{base}/{p}", headers=wl.headers) for p in ours[:count]]
                bodies = _parts(ref) if ref.status_code == 200 else []
                same = _digests(bodies) == _digests([r.content for r in got])
                how = f"{count} stored objects, byte for byte"
            else:
                got = [client.get(f"{base}/{ours[0]}", headers=wl.headers)]
                bodies = [ref.content]
                if name == "wado-frame":
                    bodies = _parts(ref) if ref.status_code == 200 else []
                    same = bodies == [got[0].content]
                    how = "frame 1, byte for byte"
                else:
                    same = ref.status_code == 200 and _normal(ref.json()) == _normal(got[0].json())
                    gz = wl.headers.get("Accept-Encoding") == "gzip"
                    same = same and (got[0].headers.get("content-encoding") == "gzip") == gz
                    how = "JSON equal but for URLs" + (", the .gz file" if gz else "")
            statuses = [ref.status_code] + [r.status_code for r in got]
            out[name] = {
                "same": same and all(s == 200 for s in statuses),
                "how": how,
                "status": sorted(set(statuses)),
                "webpacs_bytes": sum(len(b) for b in bodies),
                "webpacs_wire_bytes": ref.num_bytes_downloaded,
                "nginx_bytes": sum(len(r.content) for r in got),
                "nginx_wire_bytes": sum(r.num_bytes_downloaded for r in got),
                "items": len(ref.json()) if "json" in ref.headers.get("content-type", "") else None,
            }
    return out


# -- the column --------------------------------------------------------------------
@dataclass
class Column:
    """A running nginx column: where to drive it and what was checked."""

    base: str
    pid: int
    paths_file: Path
    rows: list[str]  # rows driven (bytes checked the same)
    info: dict[str, Any] = field(default_factory=dict)  # for the results JSON
    failed: list[dict[str, Any]] = field(default_factory=list)  # results of rows not driven

    def driver_args(self) -> list[str]:
        return ["--paths", str(self.paths_file)]


@contextlib.contextmanager
def column(
    nginx: str,
    work: Path,
    manifest: Manifest,
    data_dir: Path,
    tree: Path,
    webpacs: str,
    workers: int,
    rows: list[str],
) -> Iterator[Column]:
    """nginx serving ``rows`` (those of :data:`ROWS` asked for) for the run's rounds."""
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    paths = document_root(work / "root", manifest, data_dir, tree, [r for r in rows if r in ROWS])
    secs = time.monotonic() - started
    paths_file = work / "paths.json"
    paths_file.write_text(json.dumps(paths))
    with server(nginx, work, work / "root", workers) as (base, pid):
        checks = verify(webpacs, base, manifest, paths)
        failed = [
            asdict(
                load.Result(
                    workload=name,
                    server=LABEL,
                    tool="-",
                    check=check,
                    note=f"bytes differ from webpacs ({check['how']})",
                )
            )
            for name, check in checks.items()
            if not check["same"]
        ]
        info = {
            "version": version(nginx),
            "workers": workers,
            "root_seconds": round(secs, 2),
            "checks": checks,
            "config": (work / "nginx.conf").read_text(),
        }
        good = [name for name in paths if checks[name]["same"]]
        yield Column(base, pid, paths_file, good, info, failed)


# -- the table ---------------------------------------------------------------------
def ratio(
    workload: str, webpacs: dict[str, Any] | None, nginx: dict[str, Any] | None
) -> float | None:
    """webpacs/nginx: of MB/s for :data:`MB_ROWS`, of requests/s otherwise."""
    if not webpacs or not nginx or not webpacs["requests"] or not nginx["requests"]:
        return None
    key = "mb_per_s" if workload in MB_ROWS else "rps"
    return float(webpacs[key]) / nginx[key] if nginx[key] else None


def target_cell(workload: str, row: dict[str, Any]) -> str:
    """The issue's target for a row, marked ok/missed by ``row["nginx_ratio"]``."""
    target = TARGETS.get(workload)
    row["nginx_target"] = round(target, 3) if target else None
    if target is None:
        return ""
    got = row.get("nginx_ratio")
    mark = "" if got is None else (" [green]ok[/]" if got >= target else " [red]missed[/]")
    return f">= {target:.2f}x{mark}"
