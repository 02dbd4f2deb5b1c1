"""QIDO at scale: searches over an index of N synthetic instances, and the index's size.

    python bench/qido_scale.py [--instances 1000000] [--queries 200] [--http]
        [--index sqlite|postgresql] [--keep DIR]

Builds an index of about ``N`` synthetic instances (one study per 50: 48 CT and MR
images in 4 series and a segmentation in a fifth, one study per patient) directly with
SQL -- ingesting a million Part 10 objects would take hours and measure ingest, not
search. Each instance is pydicom's ``CT_small.dcm`` as ingest stores it, re-stamped with
its own UIDs, patient, date, modality, slice thickness and pixel spacing
(``bench/synthetic.py``): its level projections, stored metadata and attribute-value
rows (the extension keys' index, ``storage/sqlattrs.py``) are what ingest would write.
Each study's segmentation (Modality SEG) references its first series and that series'
instances: its edges are rows of ``refs`` (``storage/sqlrefs.py``). Then it times,
through the index's ``search`` in process and, with ``--http``, over HTTP against
``webpacs serve`` on the same index:

* studies by PatientID, and by a one-month StudyDate range (``limit=100``);
* a cohort on a non-standard numeric attribute: instances by a SliceThickness range of
  one of 1,000 thickness values (about 0.1 % of the instances, ``limit=100``), and
  studies by PixelSpacing and a SliceThickness range;
* by reference: the segmentations of a series (``/instances?webpacsReferences=<series
  UID>&Modality=SEG``, one match) and the studies holding something that references a
  series (``/studies?webpacsReferences=<series UID>``, one match),

and reports the index's size with and without the attribute-value tables, and the
reference graph's (``refs``) own size. The index is the embedded SQLite one, or
(``--index postgresql``) a PostgreSQL started for the run (``bench/postgres.py``),
filled with ``COPY``.
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

from bench import postgres, synthetic
from webpacs.core.attributes import Level
from webpacs.core.query import parse_qido
from webpacs.storage.base import Index
from webpacs.storage.sqlite import SqliteIndex

PER_STUDY, SERIES_PER_STUDY = 50, 4
ROOT = "1.2.826.0.1.3680043.8.498.9"
Params = list[tuple[str, str]]
Rows = list[tuple[Any, ...]]
#: studies, series, instances, attr_owners, attr_values, refs rows
Batch = tuple[Rows, Rows, Rows, Rows, Rows, Rows]
Sink = Callable[[Batch], None]
ATTR_TABLES = ("attr_owners", "attr_paths", "attr_values")


def build(path: Path, instances: int) -> int:
    """Write ``instances`` synthetic instances into a new index at ``path``; returns the
    studies."""
    SqliteIndex(path).close()  # creates the schema
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1000000")  # 1 GB: the value indexes grow in random order
    # the filled tables' secondary indexes are made after the load, by one sort each, not
    # grown by random inserts (the attribute values' two indexes take 84 rows an instance)
    deferred = db.execute(
        "SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL"
        f" AND tbl_name IN ({','.join('?' * len(_TABLES))})",
        _TABLES,
    ).fetchall()
    for name, _ in deferred:
        db.execute(f'DROP INDEX "{name}"')
    template = synthetic.Template()
    _paths(db, template, "?")
    studies = generate(instances, template, lambda b: _flush(db, b))
    for _, sql in deferred:
        db.execute(sql)
    db.execute("ANALYZE")
    db.commit()
    db.close()
    return studies


def build_postgresql(url: str, instances: int) -> int:
    """The same rows in the PostgreSQL database at ``url`` (``COPY``); returns the studies."""
    import psycopg

    from webpacs.storage.postgresql import PgIndex

    PgIndex(url).close()  # creates the schema
    template = synthetic.Template()
    with psycopg.connect(url) as conn:
        _paths(conn, template, "%s")

        def copy(batch: Batch) -> None:
            for table, columns, rows in zip(_TABLES, _COLUMNS, batch, strict=True):
                with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as cp:
                    for r in rows:
                        cp.write_row(r)
            conn.commit()

        studies = generate(instances, template, copy)
        conn.execute("SELECT setval('attr_owners_id_seq', (SELECT max(id) FROM attr_owners))")
        conn.execute("ANALYZE")
        conn.commit()
    return studies


def _paths(db: Any, template: synthetic.Template, mark: str) -> None:
    from webpacs.storage.sqlattrs import path_id

    for key in template.nested:
        db.execute(
            f"INSERT INTO attr_paths (path, id) VALUES ({mark}, {mark})", (key, path_id(key))
        )
    db.commit()


def generate(instances: int, template: synthetic.Template, sink: Sink) -> int:
    """Hand the synthetic rows to ``sink`` in batches; returns the number of studies."""
    studies = max(1, instances // PER_STUDY)
    per_series = PER_STUDY // SERIES_PER_STUDY
    batch: Batch = ([], [], [], [], [], [])
    owner = 0
    for s in range(studies):
        study = f"{ROOT}.{s}"
        date = f"{2000 + s % 25}{1 + s % 12:02d}{1 + s % 28:02d}"
        pid, name = f"PID{s:07d}", f"Patient^{s:07d}"
        for x in range(SERIES_PER_STUDY):
            series = f"{study}.{x + 1}"
            modality = "CT" if x % 2 == 0 else "MR"
            for i in range(per_series):
                sop = f"{series}.{i + 1}"
                inst = template.instance(
                    study, series, sop, pid=pid, name=name, date=date, modality=modality,
                    number=i + 1, series_index=s * SERIES_PER_STUDY + x, study_index=s,
                )  # fmt: skip
                if x == 0 and i == 0:
                    batch[0].append(
                        (study, pid, name, date, "120000.000000", inst.study_json, sop, float(s),
                         SERIES_PER_STUDY + 1, SERIES_PER_STUDY * per_series + 1, "CT,MR,SEG")
                    )  # fmt: skip
                if i == 0:
                    batch[1].append(
                        (series, study, modality, str(x + 1), inst.series_json, sop, float(s),
                         per_series, s)
                    )  # fmt: skip
                owner = _add(batch, owner, inst, sop, series, study, s, i + 1, synthetic.CT_CLASS)
        # the segmentation of the study's first series, in a series of its own
        first = f"{study}.1"
        targets = [f"{first}.{i + 1}" for i in range(per_series)]
        series, sop = f"{study}.{SERIES_PER_STUDY + 1}", f"{study}.{SERIES_PER_STUDY + 1}.1"
        inst = template.instance(
            study, series, sop, pid=pid, name=name, date=date, modality="SEG", number=1,
            series_index=s * SERIES_PER_STUDY, study_index=s, sop_class=synthetic.SEG_CLASS,
            extra=synthetic.seg_references(first, targets),
        )  # fmt: skip
        batch[1].append(
            (series, study, "SEG", str(SERIES_PER_STUDY + 1), inst.series_json, sop, float(s), 1, s)
        )  # fmt: skip
        owner = _add(batch, owner, inst, sop, series, study, s, 1, synthetic.SEG_CLASS)
        if len(batch[2]) >= 20_000 or s == studies - 1:
            sink(batch)
            batch = ([], [], [], [], [], [])
    return studies


def _add(
    batch: Batch, owner: int, inst: synthetic.Instance, sop: str, series: str, study: str,
    s: int, number: int, sop_class: str,
) -> int:  # fmt: skip
    """The instance's row, its attribute values and its edges; returns its owner id."""
    batch[2].append(
        (sop, series, study, sop_class, "1.2.840.10008.1.2.1", f"objects/{sop}", 0, "0",
         float(s), str(number), inst.instance_json, inst.metadata, b"{}", b"{}")
    )  # fmt: skip
    owner += 1
    batch[3].append((owner, sop, series, study))
    batch[4].extend((owner, *v) for v in inst.values)
    batch[5].extend(inst.edges)
    return owner


def built_instances(studies: int) -> int:
    """The instances ``generate`` writes for ``studies`` studies."""
    return studies * (SERIES_PER_STUDY * (PER_STUDY // SERIES_PER_STUDY) + 1)


_TABLES = ("studies", "series", "instances", "attr_owners", "attr_values", "refs")
_COLUMNS = (
    "study_uid, patientid, patientname, studydate, studytime, json, rep_sop, latest,"
    " num_series, num_instances, modalities",
    "series_uid, study_uid, modality, seriesnumber, json, rep_sop, latest, num_instances, version",
    "sop_uid, series_uid, study_uid, sop_class_uid, transfer_syntax, blob_key, size, digest,"
    " received, instancenumber, json, metadata, framemap, attributes",
    "id, sop_uid, series_uid, study_uid",
    "owner, path, occ, pos, num, txt",
    "sop_uid, series_uid, study_uid, target, level, frame, via",
)


def _flush(db: sqlite3.Connection, batch: Batch) -> None:
    for table, columns, rows in zip(_TABLES, _COLUMNS, batch, strict=True):
        marks = ",".join("?" * len(columns.split(",")))
        db.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
    db.commit()


def sizes(index: str, where: str | Path) -> tuple[int, int, int]:
    """The index's bytes in all, in the attribute-value tables and their indexes, and in
    the reference graph's ``refs`` and its indexes."""
    if index == "sqlite":
        db = sqlite3.connect(where)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        total = db.execute("SELECT sum(pgsize) FROM dbstat").fetchone()[0]
        attrs, refs = (
            db.execute(
                "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN (SELECT name FROM"
                f" sqlite_schema WHERE tbl_name IN ({','.join('?' * len(tables))}))",
                tables,
            ).fetchone()[0]
            for tables in (ATTR_TABLES, ("refs",))
        )
        db.close()
        return int(total), int(attrs), int(refs)
    import psycopg

    with psycopg.connect(str(where)) as conn:
        total = conn.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = 'public'"
        ).fetchone()[0]
        attrs = sum(
            conn.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0]
            for t in ATTR_TABLES
        )
        refs = conn.execute("SELECT pg_total_relation_size('refs')").fetchone()[0]
    return int(total), int(attrs), int(refs)


def ensure_built(data: Path, instances: int, reuse: bool = True) -> tuple[int, float]:
    """The SQLite index of ``instances`` synthetic instances in the data directory ``data``
    (``index.sqlite3``), built unless ``reuse`` and ``built.json`` says it is there;
    returns (studies, seconds the build took)."""
    built_file = data / "built.json"  # a kept SQLite index: built once, measured again
    if reuse and built_file.is_file():
        done = orjson.loads(built_file.read_bytes())
        if done["instances"] != instances:
            raise SystemExit(f"{data} holds {done['instances']:,} instances, not {instances:,}")
        return int(done["studies"]), float(done["build_s"])
    data.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    studies = build(data / "index.sqlite3", instances)
    built = time.monotonic() - t0
    built_file.write_bytes(
        orjson.dumps({"instances": instances, "studies": studies, "build_s": built})
    )
    return studies, built


Workload = tuple[str, Level, list[Params]]


def queries(studies: int, n: int) -> list[Workload]:
    """``n`` random queries of each kind: (name, level, parameter lists)."""
    rnd = random.Random(11)
    by_pid = [[("PatientID", f"PID{rnd.randrange(studies):07d}")] for _ in range(n)]
    by_date = []
    for _ in range(n):
        y, m = 2000 + rnd.randrange(25), 1 + rnd.randrange(12)
        by_date.append([("StudyDate", f"{y}{m:02d}01-{y}{m:02d}28"), ("limit", "100")])
    cohort, studies_by = [], []
    for _ in range(n):
        st = rnd.randrange(studies)
        t = synthetic.thickness(st * SERIES_PER_STUDY + rnd.randrange(SERIES_PER_STUDY))
        bucket = ("SliceThickness", f"{t - 0.004:.3f}-{t + 0.004:.3f}")
        cohort.append([bucket, ("limit", "100")])
        ps = synthetic.spacing(st)
        studies_by.append([bucket, ("PixelSpacing", f"{ps}\\{ps}"), ("limit", "100")])
    return [
        ("studies by PatientID", Level.STUDY, by_pid),
        ("studies by date range (limit 100)", Level.STUDY, by_date),
        ("instances by SliceThickness range (limit 100)", Level.INSTANCE, cohort),
        ("studies by SliceThickness + PixelSpacing", Level.STUDY, studies_by),
    ]


#: The by-reference rows (webpacsReferences, issue 13 point 2): the segmentations of a
#: series, and the studies holding something that references a series.
REFERENCE_ROW = "instances by webpacsReferences + Modality=SEG"
REFERENCE_STUDY_ROW = "studies by webpacsReferences"


def reference_queries(studies: int, n: int) -> list[Workload]:
    """The by-reference workloads: a random study's first series as the target."""
    rnd = random.Random(13)
    targets = [f"{ROOT}.{rnd.randrange(studies)}.1" for _ in range(n)]
    return [
        (REFERENCE_ROW, Level.INSTANCE,
         [[("webpacsReferences", t), ("Modality", "SEG")] for t in targets]),
        (REFERENCE_STUDY_ROW, Level.STUDY, [[("webpacsReferences", t)] for t in targets]),
    ]  # fmt: skip


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
        deadline = time.monotonic() + 300  # opening a large index checks its schema
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


def measure(
    instances: int, n: int, http: bool, index: str = "sqlite", keep: Path | None = None
) -> list[dict[str, Any]]:
    """Build the index, run the queries; one row per (query kind, in process | HTTP).
    ``keep`` (SQLite only): the data directory to build into once and measure again."""
    if index == "postgresql":
        with postgres.local_postgresql(durable=True) as port:
            url = postgres.create_database(port, "webpacs_qido_scale")
            return _measure(instances, n, http, url)
    return _measure(instances, n, http, None, keep)


_PATH = {Level.STUDY: "/studies", Level.SERIES: "/series", Level.INSTANCE: "/instances"}


def _measure(
    instances: int, n: int, http: bool, pg_url: str | None, keep: Path | None = None
) -> list[dict[str, Any]]:
    data = keep or Path(tempfile.mkdtemp(prefix="webpacs-qido-scale-"))
    data.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    kind = "sqlite" if pg_url is None else "postgresql"
    config = None
    if pg_url is not None:
        config = data / "webpacs.json5"
        config.write_text(
            orjson.dumps({"index": "postgresql", "postgresql": {"url": pg_url}}).decode()
        )

    def row(name: str, where: str, times: list[float], matches: int | None = None) -> None:
        p50, p99 = percentiles(times)
        rows.append({"workload": name, "where": where, "instances": instances, "index": kind,
                     "p50_ms": round(p50, 2), "p99_ms": round(p99, 2)})  # fmt: skip
        if matches is not None:
            rows[-1]["mean_matches"] = matches
        print(f"{kind:10s}  {where:10s}  {name:46s} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms"
              + ("" if matches is None else f"   ({matches} rows a query)"))  # fmt: skip

    try:
        t0 = time.monotonic()
        if pg_url is None:
            studies, built = ensure_built(data, instances, reuse=keep is not None)
        else:
            studies = build_postgresql(pg_url, instances)
            built = time.monotonic() - t0
        qido_built = built_instances(studies)
        print(f"{qido_built:,} instances ({studies:,} of them SEG) in {studies:,} studies,"
              f" built in {built:.0f} s")  # fmt: skip
        total, attrs, refs = sizes(kind, data / "index.sqlite3" if pg_url is None else pg_url)
        without = total - attrs
        rows.append({"workload": "index size", "where": "on disk", "instances": instances,
                     "built_instances": qido_built, "index": kind,
                     "with_mb": round(total / 1e6, 1), "without_mb": round(without / 1e6, 1),
                     "ratio": round(total / without, 2), "refs_mb": round(refs / 1e6, 1),
                     "build_s": round(built)})  # fmt: skip
        print(f"{kind:10s}  index size: {total / 1e6:,.0f} MB with the attribute values,"
              f" {without / 1e6:,.0f} MB without ({total / without:.2f}x);"
              f" refs {refs / 1e6:,.1f} MB")  # fmt: skip
        work = queries(studies, n) + reference_queries(studies, n)
        index: Index
        if pg_url is None:
            index = SqliteIndex(data / "index.sqlite3")
        else:
            from webpacs.storage.postgresql import PgIndex

            index = PgIndex(pg_url)
        try:
            for name, level, qs in work:
                times, count = [], 0
                for params in qs:
                    q = parse_qido(level, params, max_limit=10000)
                    start = time.perf_counter()
                    found = index.search(q)
                    times.append(time.perf_counter() - start)
                    count += len(found.rows)
                    if "PatientID" in name and len(found.rows) != 1:  # one study per patient
                        raise RuntimeError(f"{params}: {len(found.rows)} studies, not 1")
                    if "Thickness" in name and not found.rows:  # a series of the bucket exists
                        raise RuntimeError(f"{params}: no match")
                    if "webpacsReferences" in name and len(found.rows) != 1:  # the study's SEG
                        raise RuntimeError(f"{params}: {len(found.rows)} matches, not 1")
                row(name, "in process", times, count // len(qs))
        finally:
            index.close()
        if http:
            with server(data, config) as base, httpx.Client(base_url=base, timeout=30) as client:
                for name, level, qs in work:
                    times = []
                    count = 0
                    for params in qs:
                        start = time.perf_counter()
                        resp = client.get(_PATH[level], params=params)
                        times.append(time.perf_counter() - start)
                        resp.raise_for_status()
                        count += len(resp.json()) if resp.status_code == 200 else 0
                    row(name, "over HTTP", times, count // len(qs))
    finally:
        if keep is None:
            shutil.rmtree(data, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--instances", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--http", action="store_true", help="also time the queries over HTTP")
    p.add_argument("--index", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument(
        "--keep", type=Path, help="SQLite: build the index into this directory once and keep it"
    )
    args = p.parse_args(argv)
    if args.keep is not None and args.index != "sqlite":
        p.error("--keep is for the SQLite index")
    measure(args.instances, args.queries, args.http, args.index, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
