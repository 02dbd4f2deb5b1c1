"""QIDO at scale: study searches over an index of N synthetic instances.

    python bench/qido_scale.py [--instances 1000000] [--queries 200] [--http]
        [--index sqlite|postgresql]

Builds an index of ``N`` synthetic instance rows (studies of 50 instances in 4 series,
one study per patient) directly with SQL -- ingesting a million Part 10 objects would
take hours and measure ingest, not search -- then times study searches by PatientID and
by a one-month StudyDate range (``limit=100``, a worklist page) through the index's
``search`` in process and, with ``--http``, over HTTP against ``webpacs serve`` started
on the same index. The index is the embedded SQLite one, or (``--index postgresql``) a
PostgreSQL started for the run (``bench/postgres.py``), filled with ``COPY``.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import orjson

from bench import postgres
from webpacs.core.attributes import Level
from webpacs.core.query import parse_qido
from webpacs.storage.base import Index
from webpacs.storage.sqlite import SqliteIndex

PER_STUDY, SERIES_PER_STUDY = 50, 4
ROOT = "1.2.826.0.1.3680043.8.498.9"
Params = list[tuple[str, str]]


Rows = list[tuple[Any, ...]]
Sink = Callable[[Rows, Rows, Rows], None]


def build(path: Path, instances: int) -> int:
    """Write ``instances`` synthetic rows into a new index at ``path``; returns the studies."""
    SqliteIndex(path).close()  # creates the schema
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    studies = generate(instances, lambda st, se, i: _flush(db, st, se, i))
    db.execute("ANALYZE")
    db.close()
    return studies


def build_postgresql(url: str, instances: int) -> int:
    """The same rows in the PostgreSQL database at ``url`` (``COPY``); returns the studies."""
    import psycopg

    from webpacs.storage.postgresql import PgIndex

    PgIndex(url).close()  # creates the schema
    with psycopg.connect(url) as conn:

        def copy(st: Rows, se: Rows, inst: Rows) -> None:
            for table, columns, rows in (("studies", _ST, st), ("series", _SE, se),
                                         ("instances", _IN, inst)):  # fmt: skip
                with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as cp:
                    for r in rows:
                        cp.write_row(r)
            conn.commit()

        studies = generate(instances, copy)
        conn.execute("ANALYZE")
        conn.commit()
    return studies


def generate(instances: int, sink: Sink) -> int:
    """Hand the synthetic rows to ``sink`` in batches; returns the number of studies."""
    studies = max(1, instances // PER_STUDY)
    per_series = PER_STUDY // SERIES_PER_STUDY
    st_rows: list[tuple[Any, ...]] = []
    se_rows: list[tuple[Any, ...]] = []
    in_rows: list[tuple[Any, ...]] = []
    for s in range(studies):
        study = f"{ROOT}.{s}"
        date = f"{2000 + s % 25}{1 + s % 12:02d}{1 + s % 28:02d}"
        pid = f"PID{s:07d}"
        st_json = orjson.dumps(
            {
                "0020000D": {"vr": "UI", "Value": [study]},
                "00100020": {"vr": "LO", "Value": [pid]},
                "00100010": {"vr": "PN", "Value": [{"Alphabetic": f"Patient^{s:07d}"}]},
                "00080020": {"vr": "DA", "Value": [date]},
            }
        )
        st_rows.append(
            (study, pid, f"Patient^{s:07d}", date, "120000.000000", st_json, f"{study}.1.1",
             float(s), SERIES_PER_STUDY, PER_STUDY, "CT,MR")
        )  # fmt: skip
        for x in range(SERIES_PER_STUDY):
            series = f"{study}.{x + 1}"
            se_json = orjson.dumps({"0020000E": {"vr": "UI", "Value": [series]}})
            se_rows.append(
                (series, study, "CT" if x % 2 == 0 else "MR", str(x + 1), se_json,
                 f"{series}.1", float(s), per_series, s)
            )  # fmt: skip
            for i in range(per_series):
                sop = f"{series}.{i + 1}"
                in_rows.append(
                    (sop, series, study, "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1",
                     f"objects/{sop}", 0, "0", float(s), str(i + 1), b"{}", b"{}", b"{}", b"{}")
                )  # fmt: skip
        if len(in_rows) >= 200_000 or s == studies - 1:
            sink(st_rows, se_rows, in_rows)
            st_rows, se_rows, in_rows = [], [], []
    return studies


_ST = (
    "study_uid, patientid, patientname, studydate, studytime, json, rep_sop, latest,"
    " num_series, num_instances, modalities"
)
_SE = "series_uid, study_uid, modality, seriesnumber, json, rep_sop, latest, num_instances, version"
_IN = (
    "sop_uid, series_uid, study_uid, sop_class_uid, transfer_syntax, blob_key, size, digest,"
    " received, instancenumber, json, metadata, framemap, attributes"
)


def _flush(
    db: sqlite3.Connection,
    studies: list[tuple[Any, ...]],
    series: list[tuple[Any, ...]],
    instances: list[tuple[Any, ...]],
) -> None:
    for table, columns, rows in (("studies", _ST, studies), ("series", _SE, series),
                                 ("instances", _IN, instances)):  # fmt: skip
        marks = ",".join("?" * len(columns.split(",")))
        db.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
    db.commit()


def queries(studies: int, n: int) -> dict[str, list[Params]]:
    """``n`` random queries of each kind."""
    rnd = random.Random(11)
    by_pid = [[("PatientID", f"PID{rnd.randrange(studies):07d}")] for _ in range(n)]
    by_date = []
    for _ in range(n):
        y, m = 2000 + rnd.randrange(25), 1 + rnd.randrange(12)
        by_date.append([("StudyDate", f"{y}{m:02d}01-{y}{m:02d}28"), ("limit", "100")])
    return {"studies by PatientID": by_pid, "studies by date range (limit 100)": by_date}


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    ms = sorted(t * 1000 for t in seconds)
    return statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]


@contextlib.contextmanager
def server(data: Path, config: Path | None = None) -> Iterator[str]:
    """``webpacs serve`` (one worker, no DIMSE) on ``data``, on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "webpacs", "serve", "--data-dir", str(data), "--port",
           str(port), "--workers", "1", "--no-dimse"]  # fmt: skip
    if config is not None:
        cmd += ["-c", str(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/dicomweb"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/studies?limit=1", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("webpacs serve did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def measure(instances: int, n: int, http: bool, index: str = "sqlite") -> list[dict[str, Any]]:
    """Build the index, run the queries; one row per (query kind, in process | HTTP)."""
    if index == "postgresql":
        with postgres.local_postgresql(durable=True) as port:
            url = postgres.create_database(port, "webpacs_qido_scale")
            return _measure(instances, n, http, url)
    return _measure(instances, n, http, None)


def _measure(instances: int, n: int, http: bool, pg_url: str | None) -> list[dict[str, Any]]:
    data = Path(tempfile.mkdtemp(prefix="webpacs-qido-scale-"))
    rows: list[dict[str, Any]] = []
    kind = "sqlite" if pg_url is None else "postgresql"
    config = None
    if pg_url is not None:
        config = data / "webpacs.json5"
        config.write_text(
            orjson.dumps({"index": "postgresql", "postgresql": {"url": pg_url}}).decode()
        )

    def row(name: str, where: str, times: list[float]) -> None:
        p50, p99 = percentiles(times)
        rows.append({"workload": name, "where": where, "instances": instances, "index": kind,
                     "p50_ms": round(p50, 2), "p99_ms": round(p99, 2)})  # fmt: skip
        print(f"{kind:10s}  {where:10s}  {name:36s} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")

    try:
        t0 = time.monotonic()
        if pg_url is None:
            studies = build(data / "index.sqlite3", instances)
        else:
            studies = build_postgresql(pg_url, instances)
        print(f"{instances:,} instances in {studies:,} studies, built in"
              f" {time.monotonic() - t0:.0f} s")  # fmt: skip
        work = queries(studies, n)
        index: Index
        if pg_url is None:
            index = SqliteIndex(data / "index.sqlite3")
        else:
            from webpacs.storage.postgresql import PgIndex

            index = PgIndex(pg_url)
        try:
            for name, qs in work.items():
                times = []
                for params in qs:
                    q = parse_qido(Level.STUDY, params, max_limit=10000)
                    start = time.perf_counter()
                    found = index.search(q)
                    times.append(time.perf_counter() - start)
                    if "PatientID" in name and len(found.rows) != 1:  # one study per patient
                        raise RuntimeError(f"{params}: {len(found.rows)} studies, not 1")
                row(name, "in process", times)
        finally:
            index.close()
        if http:
            with server(data, config) as base, httpx.Client(base_url=base, timeout=30) as client:
                for name, qs in work.items():
                    times = []
                    for params in qs:
                        start = time.perf_counter()
                        client.get("/studies", params=params).raise_for_status()
                        times.append(time.perf_counter() - start)
                    row(name, "over HTTP", times)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--instances", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--http", action="store_true", help="also time the queries over HTTP")
    p.add_argument("--index", choices=("sqlite", "postgresql"), default="sqlite")
    args = p.parse_args(argv)
    measure(args.instances, args.queries, args.http, args.index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
