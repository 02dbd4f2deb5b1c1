"""Cost curves (issue 16 point 4): how a request's cost grows with the archive, and how the
server's memory grows with the size of what it serves.

    python bench/run.py --curves [--curve-sizes 10000,100000,1000000,10000000]
        [--curve-queries 200] [--curve-study 50,500,5000] [--curve-multiframe-mb 50,500,2000]

1. **QIDO p50 at N indexed instances** (each of ``--curve-sizes``), in process (the index's
   ``search``) and over HTTP (``webpacs serve``, one worker): studies by PatientID, studies
   by a one-month StudyDate range (``limit=100``), and the instances of a series
   (``/studies/{s}/series/{x}/instances``, 12 a series). The index is the SQLite one built
   from synthetic rows by ``bench/qido_scale.py`` (its ``ensure_built``), kept under
   ``<cache>/curves/qido-<N>`` and reused by later runs.
2. **STOW-RS instances/s into an empty store and into one holding N instances** (the
   largest N above): the ``small`` bench dataset (200 instances of 526 KB, batches of 50,
   ``bench/load.py``'s driver) into a fresh empty store and into a copy of the synthetic
   index of N instances, alternating, ``--curve-rounds`` rounds each (median). The synthetic
   store has index rows and no object files: STOW's cost is index inserts plus writing new
   files, so what the store already holds acts through the index (README "Cost curves").
3. **Peak memory** (``bench/curves_memory.py``): the server's process tree RSS serving study
   metadata of studies of ``--curve-study`` instances, and storing (STOW-RS, the body
   streamed from the file) and retrieving (the instance, every frame 100 a request, the pixel
   data in one request) a multi-frame instance of each of ``--curve-multiframe-mb`` MB.

Prints each curve and writes ``<out>/<time>-curves.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench import curves_memory, load, qido_scale
from bench.generate import generate
from webpacs.core.attributes import Level
from webpacs.core.query import Query, parse_qido
from webpacs.storage.sqlite import SqliteIndex

QIDO_ROWS = ("studies by PatientID", "studies by date range (limit 100)", "instances of a series")


def _sizes(text: str) -> list[int]:
    return [int(v.replace("_", "")) for v in text.split(",") if v.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The curve options of ``bench/run.py``."""
    g = p.add_argument_group("cost curves (--curves: run these instead of the bench table)")
    g.add_argument("--curves", action="store_true", help="measure the cost curves (issue 16)")
    g.add_argument(
        "--curve-sizes", type=_sizes, default=[10_000, 100_000],
        help="indexed instances of each QIDO point; the largest is the full store of the STOW"
        " curve [default: 10000,100000]",
    )  # fmt: skip
    g.add_argument("--curve-queries", type=int, default=200, help="queries of each kind a point")
    g.add_argument("--curve-rounds", type=int, default=3, help="STOW rounds per store (median)")
    g.add_argument(
        "--curve-stow-held", type=int, default=None,
        help="instances the full store of the STOW curve holds, one of --curve-sizes"
        " [default: the largest; 0: no STOW curve]",
    )  # fmt: skip
    g.add_argument(
        "--curve-stow-instances", type=int, default=None,
        help="STOW only the first N instances of the small dataset [default: all 200]",
    )  # fmt: skip
    g.add_argument(
        "--curve-study", type=_sizes, default=[50, 500, 5000],
        help="instances of the studies whose metadata is served [default: 50,500,5000]",
    )  # fmt: skip
    g.add_argument(
        "--curve-multiframe-mb", type=_sizes, default=[50, 500, 2000],
        help="sizes of the multi-frame instances stored and retrieved [default: 50,500,2000]",
    )  # fmt: skip


# -- QIDO ----------------------------------------------------------------------------
def _series_queries(studies: int, n: int) -> list[tuple[str, str]]:
    rnd = random.Random(17)
    out = []
    for _ in range(n):
        study = f"{qido_scale.ROOT}.{rnd.randrange(studies)}"
        out.append((study, f"{study}.{1 + rnd.randrange(qido_scale.SERIES_PER_STUDY)}"))
    return out


@dataclass
class _Point:
    """One size of the QIDO curve: its index and its queries, as a Query and as a request."""

    instances: int
    data: Path
    studies: int
    build_s: float
    queries: dict[str, list[Query]]
    requests: dict[str, list[tuple[str, list[tuple[str, str]]]]]


def _point(data: Path, instances: int, n: int) -> _Point:
    studies, build_s = qido_scale.ensure_built(data, instances)
    print(f"qido: {qido_scale.built_instances(studies):,} instances in {studies:,} studies"
          f" (built in {build_s:.0f} s)", flush=True)  # fmt: skip
    by_pid, by_date = (qs for _, _, qs in qido_scale.queries(studies, n)[:2])
    series = _series_queries(studies, n)
    return _Point(
        instances, data, studies, build_s,
        {QIDO_ROWS[0]: [parse_qido(Level.STUDY, p, max_limit=10000) for p in by_pid],
         QIDO_ROWS[1]: [parse_qido(Level.STUDY, p, max_limit=10000) for p in by_date],
         QIDO_ROWS[2]: [parse_qido(Level.INSTANCE, [], study_uid=s, series_uid=x,
                                   max_limit=10000) for s, x in series]},
        {QIDO_ROWS[0]: [("/studies", p) for p in by_pid],
         QIDO_ROWS[1]: [("/studies", p) for p in by_date],
         QIDO_ROWS[2]: [(f"/studies/{s}/series/{x}/instances", []) for s, x in series]},
    )  # fmt: skip


def _qido_row(pt: _Point, name: str, where: str, times: list[float], matches: float
              ) -> dict[str, Any]:  # fmt: skip
    p50, p99 = qido_scale.percentiles(times)
    print(f"  {pt.instances:>10,}  {where:10s}  {name:34s} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms"
          f"  ({matches:.1f} rows a query)", flush=True)  # fmt: skip
    return {"curve": "qido", "workload": name, "where": where, "instances": pt.instances,
            "built_instances": qido_scale.built_instances(pt.studies),
            "build_s": round(pt.build_s), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
            "mean_matches": round(matches, 1)}  # fmt: skip


def qido_curve(sizes: list[int], cache: Path, n: int) -> list[dict[str, Any]]:
    """Build (or reuse) the index of each size; then p50/p99 of each row at each size, in
    process and over HTTP (a server per size, all up at once). The sizes take turns query
    by query, so that the machine's other load falls on every point alike."""
    points = [_point(cache / f"qido-{k}", k, n) for k in sizes]
    rows: list[dict[str, Any]] = []

    def turns(name: str, where: str, fn: Callable[[int, int], int]) -> None:
        times: list[list[float]] = [[] for _ in points]
        found = [0] * len(points)
        for i in range(n):
            order = range(len(points)) if i % 2 == 0 else reversed(range(len(points)))
            for j in order:
                t0 = time.perf_counter()
                found[j] += fn(j, i)
                times[j].append(time.perf_counter() - t0)
        for j, pt in enumerate(points):
            rows.append(_qido_row(pt, name, where, times[j], found[j] / n))

    indexes = [SqliteIndex(pt.data / "index.sqlite3") for pt in points]
    try:
        for name in QIDO_ROWS:
            turns(
                name,
                "in process",
                lambda j, i, name=name: len(indexes[j].search(points[j].queries[name][i]).rows),
            )
    finally:
        for index in indexes:
            index.close()
    with contextlib.ExitStack() as stack:
        clients = []
        for pt in points:
            base = stack.enter_context(qido_scale.server(pt.data))
            clients.append(stack.enter_context(httpx.Client(base_url=base, timeout=60)))

        def get(j: int, i: int, name: str) -> int:
            path, params = points[j].requests[name][i]
            r = clients[j].get(path, params=params)
            r.raise_for_status()
            return len(r.json()) if r.status_code == 200 else 0

        for name in QIDO_ROWS:
            turns(name, "over HTTP", functools.partial(get, name=name))
    return rows


# -- STOW into an empty and a full store -----------------------------------------------
def stow_curve(
    full: Path, instances: int, files: list[Path], rounds: int, work: Path
) -> list[dict[str, Any]]:
    """STOW ``files`` into a fresh empty store and into a copy of the store ``full``
    (``instances`` synthetic instances), alternating; a row per round and store."""
    from bench import run

    rows: list[dict[str, Any]] = []
    for k in range(rounds):
        order = [0, instances] if k % 2 == 0 else [instances, 0]
        for held in order:
            data = work / f"stow-{held}-{k}"
            data.mkdir(parents=True)
            if held:
                shutil.copyfile(full / "index.sqlite3", data / "index.sqlite3")
            os.sync()  # the copy's dirty pages would be written during the STOW's fsyncs
            with run.webpacs_server(data, 2, work / f"stow-{held}-{k}.log") as (base, pid):
                cpu0 = load.tree_cpu(pid)
                res = load.run_stow(base, "webpacs", files, pid=pid, max_seconds=600)
                cpu_ms = (load.tree_cpu(pid) - cpu0) * 1000 / max(1, res.items)
            shutil.rmtree(data, ignore_errors=True)
            rows.append({"curve": "stow", "held": held, "round": k + 1, "items": res.items,
                         "errors": res.errors, "seconds": res.seconds,
                         "items_per_s": res.items_per_s, "p50_ms": res.p50_ms,
                         "peak_rss_mb": res.peak_rss_mb,
                         "server_cpu_ms_per_instance": round(cpu_ms, 2)})  # fmt: skip
            print(f"  stow into a store holding {held:>10,}: {res.items_per_s:7.1f} instances/s"
                  f" ({res.items} in {res.seconds} s, {res.errors} errors; server CPU"
                  f" {cpu_ms:.1f} ms an instance;"
                  f" round {k + 1}/{rounds})", flush=True)  # fmt: skip
    return rows


def stow_medians(rows: list[dict[str, Any]], key: str = "items_per_s") -> dict[int, float]:
    """Held instances -> the median ``key`` (instances/s) of its rounds."""
    by: dict[int, list[float]] = {}
    for r in rows:
        if r["curve"] == "stow":
            by.setdefault(r["held"], []).append(r[key])
    return {held: statistics.median(v) for held, v in by.items()}


# -- the run ---------------------------------------------------------------------------
def run_curves(args: argparse.Namespace, machine: dict[str, Any]) -> Path:
    """Every curve; writes and returns the results JSON."""
    started = dt.datetime.now(dt.UTC)
    cache: Path = args.cache / "curves"
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="webpacs-curves-"))
    sizes = sorted(set(args.curve_sizes))
    if args.curve_stow_held and args.curve_stow_held not in sizes:
        raise SystemExit(f"--curve-stow-held {args.curve_stow_held} is not one of --curve-sizes")
    rows: list[dict[str, Any]] = []
    try:
        rows += qido_curve(sizes, cache, args.curve_queries)
        held = sizes[-1] if args.curve_stow_held is None else args.curve_stow_held
        if held:
            files = generate("small", args.cache, quiet=True).files()[: args.curve_stow_instances]
            print(f"stow: {len(files)} instances, empty store vs {held:,}", flush=True)
            rows += stow_curve(cache / f"qido-{held}", held, files, args.curve_rounds, work)
        rows += curves_memory.study_metadata_curve(args.curve_study, cache, work)
        rows += curves_memory.multiframe_curve(args.curve_multiframe_mb, cache, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    machine["loadavg_end"] = os.getloadavg()
    doc = {
        "started": started.isoformat(),
        "settings": {
            "sizes": sizes, "queries": args.curve_queries, "rounds": args.curve_rounds,
            "study": args.curve_study, "multiframe_mb": args.curve_multiframe_mb,
        },
        "machine": machine,
        "stow_medians": {str(k): v for k, v in stow_medians(rows).items()},
        "stow_cpu_medians": {
            str(k): v for k, v in stow_medians(rows, "server_cpu_ms_per_instance").items()
        },
        "curves": rows,
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    path: Path = args.out / f"{started.strftime('%Y%m%dT%H%M%SZ')}-curves.json"
    path.write_text(json.dumps(doc, indent=1))
    print(f"results: {path}")
    return path
