"""Orthanc's bulk import of the dataset's files: the row ``webpacs import`` is compared with.

Orthanc 1.10 has no command that imports a folder; its documented way (the
``ImportDicomFiles.py`` sample shipped with it) is to ``POST`` each file's bytes to its REST
``/instances`` route. Here the same requests, with ``--connections`` keep-alive connections
in flight (4 by default; the sample uses one), into a fresh Orthanc (empty storage, so no
file is "AlreadyStored"), started like the STOW anchor (``run.orthanc_server``: its own
network namespace with only loopback), the client inside that namespace.

    python bench/bulk_import.py --base http://127.0.0.1:8042 \\
        --manifest bench/.data/small/manifest.json [--connections 4] [--json out.json]

Also usable against any server with Orthanc's ``/instances`` route.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.generate import Manifest
from bench.load import Result, run_threads, tree_cpu, upload_result

HERE = Path(__file__).resolve().parent
#: Concurrent connections POSTing files (Orthanc serves 50 HTTP threads by default).
CONNECTIONS = 4


def post_instances(
    base: str, files: list[Path], *, pid: int | None, connections: int = CONNECTIONS
) -> Result:
    """POST each of ``files`` to ``{base}/instances``; instances/s over the whole run."""
    url = base.rstrip("/") + "/instances"
    lock = threading.Lock()
    state = {"next": 0, "errors": 0, "items": 0, "bytes": 0}
    latencies: list[float] = []

    def worker() -> None:
        with httpx.Client(timeout=300) as client:
            while True:
                with lock:
                    k = state["next"]
                    if k >= len(files):
                        return
                    state["next"] += 1
                body = files[k].read_bytes()  # as the sample does: the file, read when sent
                t0 = time.perf_counter()
                try:
                    r = client.post(url, content=body)
                    ok = r.status_code == 200 and r.json().get("Status") == "Success"
                except (httpx.HTTPError, ValueError):
                    ok = False
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    state["bytes"] += len(body)
                    state["items" if ok else "errors"] += 1

    secs, peak = run_threads(pid, connections, worker)
    tool = f"python (POST /instances, {connections} connections)"
    return upload_result("import", "orthanc", tool, latencies, state, secs, peak)


OrthancServer = Callable[[Path, Path, str], AbstractContextManager[tuple[str, int, str]]]


def orthanc_import(
    orthanc_server: OrthancServer,
    netns_prefix: Callable[[str], list[str]],
    work: Path,
    manifest: Path,
    bound: float,
) -> dict[str, Any]:
    """Orthanc's bulk import of ``manifest``'s files into a fresh Orthanc, as a result row.

    ``orthanc_server(workdir, log, tag)`` and ``netns_prefix(ns)`` are ``bench/run.py``'s.
    """
    with (
        orthanc_server(work, work.parent / "orthanc-import.log", "-import") as (base, pid, ns),
        tempfile.NamedTemporaryFile(suffix=".json") as out,
    ):
        root = base.removesuffix("/dicom-web")
        cmd = netns_prefix(ns) + [sys.executable, str(HERE / "bulk_import.py"), "--base", root]
        # no --pid: this second Orthanc's memory stays out of the "peak RSS under load" row
        cmd += ["--manifest", str(manifest), "--json", out.name]
        cpu = tree_cpu(pid)
        subprocess.run(cmd, check=True, timeout=bound, stdout=subprocess.DEVNULL)
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
        result["server_cpu_s"] = round(tree_cpu(pid) - cpu, 2)
        return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--base", required=True, help="Orthanc's REST root (no /dicom-web)")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--pid", type=int, default=None, help="server process (for peak RSS)")
    p.add_argument("--connections", type=int, default=CONNECTIONS)
    p.add_argument("--json", type=Path, help="write the result here")
    args = p.parse_args(argv)
    files = Manifest.load(args.manifest).files()
    res = post_instances(args.base, files, pid=args.pid, connections=args.connections)
    print("RESULT " + json.dumps(asdict(res)), flush=True)
    if args.json:
        args.json.write_text(json.dumps(asdict(res), indent=1))


if __name__ == "__main__":
    main()
