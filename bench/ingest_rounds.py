"""Ingest speed in alternating rounds, each into fresh stores, with optional py-spy profiles.

``run.py`` STOWs the dataset once per server; on a shared 2-core machine one such figure
moves by 30 % from run to run. Here each round starts fresh servers (webpacs, and Orthanc
with ``--anchor orthanc``), STOWs the dataset into each (batches of 50, 2 in flight,
``load.run_stow``), then times ``webpacs import`` and, with the anchor, Orthanc's bulk
import (``bulk_import.py``) into fresh stores; the order alternates between rounds and
the medians and ratios are printed with the load average.

    python bench/ingest_rounds.py --size small --rounds 5 --anchor orthanc
    python bench/ingest_rounds.py --size small --rounds 3 --profile /tmp/prof --workers 1

``--profile DIR`` records each webpacs server's (and each ``webpacs import``'s) process
tree with ``py-spy record -r 200 -f raw --subprocesses`` into DIR and prints the functions
with the largest share of all samples (``--top FILE...`` prints that for existing files).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bulk_import, load, run
from bench.generate import SIZES, generate

PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


@contextmanager
def profiled(pid: int, out: Path | None) -> Iterator[None]:
    """``py-spy record`` of ``pid``'s process tree while the block runs (no-op without out)."""
    if out is None:
        yield
        return
    cmd = [PY_SPY, "record", "-r", "200", "-f", "raw", "--subprocesses", "--nonblocking"]
    spy = subprocess.Popen(
        cmd + ["-o", str(out), "--pid", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def top(files: list[Path], n: int = 25) -> list[tuple[str, float, float]]:
    """(function, inclusive share, self share) of all samples in py-spy raw ``files``."""
    incl: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for f in files:
        for line in f.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            k = int(count)
            total += k
            frames = [fr.split(" (")[0] + _where(fr) for fr in stack.split(";") if _keep(fr)]
            if not frames:
                continue
            for name in set(frames):
                incl[name] += k
            own[frames[-1]] += k
    if not total:
        return []
    return [(name, c / total, own[name] / total) for name, c in incl.most_common(n)]


#: Frames left out of the top: processes, thread and event-loop plumbing.
_PLUMBING = ("threading.py", "runpy", "concurrent/futures", "multiprocessing/", "click/")


def _keep(frame: str) -> bool:
    return (
        not frame.startswith("process ")
        and "spawn_main" not in frame
        and not any(p in frame for p in _PLUMBING)
    )


def _where(frame: str) -> str:
    """`` (module)`` of a py-spy frame ``func (path/to/module.py:line)``."""
    if " (" not in frame:
        return ""
    path = frame.split(" (", 1)[1].rsplit(":", 1)[0]
    return f" ({Path(path).stem})"


def print_top(files: list[Path], n: int) -> None:
    print(f"{'incl':>6} {'self':>6}  function (module)   [{', '.join(f.name for f in files)}]")
    for name, inc, own in top(files, n):
        print(f"{inc:6.1%} {own:6.1%}  {name}")


def _stow(name: str, prefix: list[str], base: str, pid: int, manifest: Path) -> dict[str, Any]:
    cpu = load.tree_cpu(pid)
    rows = run.drive(prefix, base, name, pid, manifest, ["--stow", "--workloads", "none"], 1800)
    rows[0]["server_cpu_s"] = round(load.tree_cpu(pid) - cpu, 2)
    return rows[0]


@contextmanager
def _env(assignment: str) -> Iterator[None]:
    """``NAME=value`` set in this process's environment (inherited by servers) meanwhile."""
    if not assignment:
        yield
        return
    name, _, value = assignment.partition("=")
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def settle(pid: int, timeout: float = 30) -> None:
    """Wait until the server's process tree is idle (started, its parser pool warm)."""
    deadline = time.monotonic() + timeout
    last = load.tree_cpu(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = load.tree_cpu(pid)
        if now - last < 0.05:
            return
        last = now


def one_round(k: int, args: argparse.Namespace, work: Path, manifest: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    names = ["webpacs"] + (["orthanc"] if args.anchor else [])
    if k % 2:
        names.reverse()
    m = load.Manifest.load(manifest)
    if args.compare:
        names.insert(1 - k % 2, "webpacs " + args.compare)
    for name in names:
        d = work / f"{name.replace(' ', '_')}-{k}"
        if name.startswith("webpacs"):
            with (
                _env(name.partition(" ")[2]),
                run.webpacs_server(d, args.workers, work / f"webpacs-{k}.log") as (base, pid),
            ):
                settle(pid)
                prof = args.profile / f"stow-{k}.txt" if args.profile else None
                with profiled(pid, prof):
                    out.append(_stow(name, [], base, pid, manifest))
        else:
            with run.orthanc_server(d, work / f"orthanc-{k}.log") as (base, pid, ns):
                out.append(_stow(name, run.netns_prefix(ns), base, pid, manifest))
        shutil.rmtree(d, ignore_errors=True)
    if args.no_import:
        return out
    for name in [n for n in names if " " not in n]:
        d = work / f"import-{name}-{k}"
        if name == "webpacs":
            cmd = run.webpacs_cmd("import", "--data-dir", str(d)) + [str(f) for f in m.files()]
            if args.profile:
                spy = [PY_SPY, "record", "-r", "200", "-f", "raw", "--subprocesses"]
                cmd = spy + ["-o", str(args.profile / f"import-{k}.txt"), "--", *cmd]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            out.append(run.timed_cli("import", cmd, m.instance_count, m.total_bytes, 1800))
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            out[-1]["server_cpu_s"] = round(
                after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2
            )
        else:
            out.append(
                bulk_import.orthanc_import(run.orthanc_server, run.netns_prefix, d, manifest, 1800)
            )
        shutil.rmtree(d, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--anchor", choices=["orthanc"], default=None)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-import", action="store_true")
    p.add_argument(
        "--compare",
        default="",
        metavar="NAME=VALUE",
        help="also STOW into a webpacs server with this environment variable, each round",
    )
    p.add_argument("--profile", type=Path, default=None, help="py-spy raw profiles go here")
    p.add_argument("--top", type=Path, nargs="*", help="print the top of these profiles, exit")
    p.add_argument("-n", type=int, default=25, help="entries of the profile's top")
    p.add_argument("--json", type=Path, default=None, help="write every round's rows here")
    args = p.parse_args(argv)
    if args.top:
        print_top(args.top, args.n)
        return 0
    if args.anchor:
        run.ensure_orthanc()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    manifest = generate(args.size, run.HERE / ".data")
    mpath = Path(manifest.root) / "manifest.json"
    work = Path(tempfile.mkdtemp(prefix="webpacs-ingest-"))
    rows: list[dict[str, Any]] = []
    load_start = os.getloadavg()
    try:
        for k in range(args.rounds):
            got = one_round(k, args, work, mpath)
            for r in got:
                r["round"] = k
                print(
                    f"round {k}: {r['workload']:6} {r['server']:8} {r['items_per_s']} inst/s,"
                    f" {1000 * r['server_cpu_s'] / max(1, r['items'] or 0):.2f} ms CPU/inst"
                    f" ({r['errors']} errors) load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
            rows += got
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at start {load_start}, at end {os.getloadavg()}")
    for wl in ("stow", "import"):
        med = {}
        servers = ["webpacs"] + ([f"webpacs {args.compare}"] if args.compare else [])
        for s in [*servers, "orthanc"]:
            vals = [r["items_per_s"] or 0 for r in rows if r["workload"] == wl and r["server"] == s]
            cpu = [
                1000 * r["server_cpu_s"] / max(1, r["items"] or 0)
                for r in rows
                if r["workload"] == wl and r["server"] == s
            ]
            if vals:
                med[s] = statistics.median(vals)
                print(
                    f"{wl:6} {s:8} median {med[s]:.1f} inst/s of {vals};"
                    f" median {statistics.median(cpu):.2f} ms CPU/inst"
                )
        ratios = [
            a["items_per_s"] / b["items_per_s"]
            for a in rows
            for b in rows
            if a["workload"] == b["workload"] == wl
            and a["round"] == b["round"]
            and a["server"].startswith("webpacs")
            and b["server"] == "orthanc"
            and b["items_per_s"]
        ]
        if ratios:
            print(f"{wl:6} webpacs/orthanc per round {[round(x, 2) for x in ratios]},"
                  f" median {statistics.median(ratios):.2f}x")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.profile:
        for kind in ("stow", "import"):
            files = sorted(args.profile.glob(f"{kind}-*.txt"))
            if files:
                print(f"\n{kind} profile:")
                print_top(files, args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
