"""Smoke test of the benchmark scripts (bench/): the ``small`` dataset, tiny bounds.

Checks that generate, the load driver and the runner work against webpacs and write
well-formed results; asserts no figures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bench import bulk_import, load, run
from bench.generate import Manifest, generate
from tests.conftest import missing, require_binary, require_npm_tool


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return generate("small", tmp_path_factory.mktemp("bench-data"), quiet=True)


def test_generate_reuses_the_cache(manifest: Manifest) -> None:
    assert manifest.instance_count == 200
    assert all(f.is_file() for f in manifest.files())
    again = generate("small", Path(manifest.root).parent, quiet=True)
    assert again.to_json() == manifest.to_json()


def test_load_driver_against_webpacs(manifest: Manifest, tmp_path: Path) -> None:
    with run.webpacs_server(tmp_path / "store", 1, tmp_path / "webpacs.log") as (base, pid):
        stow = load.run_stow(base, "webpacs", manifest.files()[:60], pid=pid, max_seconds=60)
        assert (stow.items, stow.errors, stow.requests) == (60, 0, 2)
        assert stow.peak_rss_mb and stow.peak_rss_mb > 0
        rest = load.run_stow(base, "webpacs", manifest.files()[60:], pid=pid, max_seconds=60)
        assert rest.errors == 0
        load.store_codec_series(base, manifest)  # what the transcoding workloads read
        names = {wl.name for wl in load.read_workloads(manifest)}
        assert {"wado-frame-j2k-native", "wado-frame-jls-native"} <= names
        for wl in load.read_workloads(manifest):
            res = load.run_read(
                base,
                "webpacs",
                wl,
                pid=pid,
                duration=0.3,
                connections=2,
                max_requests=10,
                tool="python",
            )
            assert res.check.get("status") == 200, (wl.name, res.check)
            assert res.requests > 0 and res.errors == 0, (wl.name, res)
            assert res.p50_ms is not None and res.p99_ms is not None
            assert res.p50_ms <= res.p99_ms


def test_runner_writes_results(manifest: Manifest, tmp_path: Path) -> None:
    out = tmp_path / "results"
    rc = run.main(
        [
            "--size",
            "small",
            "--cache",
            str(Path(manifest.root).parent),
            "--out",
            str(out),
            "--duration",
            "0.5",
            "--rounds",
            "3",
            "--connections",
            "2",
            "--workers",
            "1",
            "--workloads",
            "qido-studies-all,wado-series-metadata-gz",
            "--instances",  # every step of a run, on fewer instances (the suite's time)
            "60",
            "--qido-scale",  # the QIDO-at-scale rows have tests of their own (below)
            "0",
        ]
    )
    assert rc == 0
    (path,) = out.glob("*-small-60inst.json")
    doc = json.loads(path.read_text())
    assert doc["instances"] == 60
    names = {(r["workload"], r["server"]) for r in doc["results"]}
    rounds = [
        r
        for r in doc["results"]
        if r["workload"] == "qido-studies-all" and r["server"] == "webpacs"
    ]
    assert len(rounds) == 3  # every round is kept; the table shows the median
    (row,) = [row for row in doc["summary"] if row["workload"] == "qido-studies-all"]
    assert row["webpacs"] == sorted(run._rate(r) for r in rounds)[1]
    for name in ("stow", "import", "static-build", "qido-studies-all", "wado-series-metadata-gz"):
        assert (name, "webpacs") in names
    for r in doc["results"]:
        assert set(r) >= {"workload", "server", "rps", "p50_ms", "p99_ms", "mb_per_s", "errors"}
        if r["workload"] != "static-build" or not r["note"].startswith("skipped"):
            assert r["errors"] == 0, r
    assert any(row["workload"] == "peak-rss-mb" for row in doc["summary"])
    _assert_nginx_column(doc, ["qido-studies-all", "wado-series-metadata-gz"], rounds=3)


def _assert_nginx_column(doc: dict[str, Any], workloads: list[str], rounds: int) -> None:
    """nginx served each row from files (the run checked its bytes against webpacs') and the
    table has its figures, webpacs/nginx ratio and target."""
    require_binary("nginx")  # after the run: without nginx it ran without the column
    checks = doc["nginx"]["checks"]
    assert sorted(checks) == sorted(workloads)
    for name in workloads:
        check = checks[name]
        assert check["same"] and check["status"] == [200], (name, check)
        assert check["nginx_bytes"] > 0 and check["webpacs_bytes"] > 0, (name, check)
        done = [r for r in doc["results"] if (r["workload"], r["server"]) == (name, "nginx")]
        assert len(done) == rounds and all(r["errors"] == 0 for r in done), done
        assert all(r["requests"] > 0 and r["mb_per_s"] > 0 for r in done), done
        assert all(r["check"]["status"] == 200 for r in done), done
        (row,) = [row for row in doc["summary"] if row["workload"] == name]
        assert row["nginx"] > 0 and row["nginx_ratio"] > 0, row
        assert row["nginx_target"] == pytest.approx(run.nginx.TARGETS[name], abs=0.001)
    if "wado-series-metadata-gz" in checks:  # nginx sent the tree's .gz file as it is
        gz = checks["wado-series-metadata-gz"]
        assert gz["nginx_wire_bytes"] < gz["nginx_bytes"] / 5, gz
    for whole in ("wado-series", "wado-study"):  # MB/s, nginx one stored object a request
        if whole not in checks:
            continue
        (row,) = [row for row in doc["summary"] if row["workload"] == whole]
        by = {r["server"]: r for r in doc["results"] if r["workload"] == whole}
        mbs = by["webpacs"]["mb_per_s"] / by["nginx"]["mb_per_s"]
        assert row["nginx_ratio"] == pytest.approx(mbs, abs=0.01)
        assert checks[whole]["nginx_bytes"] == checks[whole]["webpacs_bytes"]
    assert "sendfile on;" in doc["nginx"]["config"] and doc["nginx"]["version"]
    assert any("nginx" in note and "same bytes" in note for note in doc["notes"])


def test_runner_with_the_orthanc_anchor(manifest: Manifest, tmp_path: Path) -> None:
    """``make bench ANCHOR=orthanc`` on the small dataset: both servers, a ratio per row."""
    require_binary("Orthanc")
    if not Path(run.ORTHANC_PLUGIN).exists():
        missing(f"{run.ORTHANC_PLUGIN} is missing (Debian package orthanc-dicomweb)")
    if os.geteuid() != 0:
        missing("Orthanc runs in its own network namespace: ip netns needs root")
    out = tmp_path / "results"
    rc = run.main(
        [
            "--size", "small", "--cache", str(Path(manifest.root).parent), "--out", str(out),
            "--anchor", "orthanc", "--duration", "0.5", "--rounds", "1", "--connections", "2",
            "--workers", "1", "--no-import", "--qido-scale", "0", "--instances", "60",
            "--workloads", "qido-studies-all,wado-frame,wado-series,wado-study",
        ]
    )  # fmt: skip
    assert rc == 0
    (path,) = out.glob("*-small-60inst-orthanc.json")
    doc = json.loads(path.read_text())
    for name in ("stow", "qido-studies-all", "wado-frame", "wado-series", "wado-study"):
        (row,) = [row for row in doc["summary"] if row["workload"] == name]
        assert row["webpacs"] and row["orthanc"], row
        assert row["ratio"] == pytest.approx(row["webpacs"] / row["orthanc"], abs=0.01)
    assert all(r["errors"] == 0 for r in doc["results"]), doc["results"]
    assert doc["machine"]["orthanc"]
    # the nginx column beside Orthanc's (on by default when nginx is installed)
    _assert_nginx_column(
        doc, ["qido-studies-all", "wado-frame", "wado-series", "wado-study"], rounds=1
    )


def test_orthanc_bulk_import_row(manifest: Manifest, tmp_path: Path) -> None:
    """The Orthanc column of the import row: each file POSTed to a fresh Orthanc's
    /instances (bench/bulk_import.py), every one stored."""
    require_binary("Orthanc")
    if not Path(run.ORTHANC_PLUGIN).exists():
        missing(f"{run.ORTHANC_PLUGIN} is missing (Debian package orthanc-dicomweb)")
    if os.geteuid() != 0:
        missing("Orthanc runs in its own network namespace: ip netns needs root")
    part = run.subset(manifest, 30)
    mpath = tmp_path / "manifest.json"
    mpath.write_text(part.to_json())
    row = bulk_import.orthanc_import(
        run.orthanc_server, run.netns_prefix, tmp_path / "orthanc", mpath, 300
    )
    assert (row["workload"], row["server"]) == ("import", "orthanc")
    assert row["items"] == 30 and row["errors"] == 0 and row["requests"] == 30, row
    assert row["items_per_s"] > 0 and row["server_cpu_s"] > 0


def test_subset_is_the_first_instances(manifest: Manifest) -> None:
    part = run.subset(manifest, 60)  # one whole study (2 x 25), 10 of the next
    assert part.instance_count == 60
    assert part.files() == manifest.files()[:60]
    assert [len(se.instances) for st in part.studies for se in st.series] == [25, 25, 10]
    assert part.total_bytes == sum(f.stat().st_size for f in part.files())


def test_runner_couchdb_s3_beside_sqlite_files(manifest: Manifest, tmp_path: Path) -> None:
    """``--backends sqlite+files,couchdb+s3``: pouchdb-server + moto, same data, same rows."""
    require_npm_tool("pouchdb-server")  # skips (or fails with WEBPACS_REQUIRE_SYSTEM_DEPS=1)
    out = tmp_path / "results"
    workloads = ["qido-studies-patientid", "wado-series-metadata", "wado-frame"]
    rc = run.main(
        ["--size", "small", "--cache", str(Path(manifest.root).parent), "--out", str(out),
         "--backends", "sqlite+files,couchdb+s3", "--instances", "60", "--duration", "1",
         "--connections", "2", "--workers", "1", "--no-import", "--qido-scale", "0",
         "--no-nginx",  # the nginx column is checked by the runs above
         "--workloads", ",".join(workloads)]
    )  # fmt: skip
    assert rc == 0
    (path,) = out.glob("*-small-60inst-couchdb-s3.json")
    doc = json.loads(path.read_text())
    assert doc["instances"] == 60
    assert doc["settings"]["backends"] == ["sqlite+files", "couchdb+s3"]
    assert any("first 60 instances" in n for n in doc["notes"])
    assert any("pouchdb-server" in n and "moto" in n for n in doc["notes"])
    by = {(r["workload"], r["server"]): r for r in doc["results"]}
    for server in ("webpacs", "webpacs (couchdb+s3)"):
        assert by[("stow", server)]["items"] == 60, by[("stow", server)]
        assert by[("stow", server)]["errors"] == 0
        for name in workloads:
            r = by[(name, server)]
            assert r["check"].get("status") == 200, r
            assert r["requests"] > 0 and r["errors"] == 0, r
    # the same answers from both backends (bodies hold each server's URL: count items)
    for name in ("qido-studies-patientid", "wado-series-metadata"):
        a, b = by[(name, "webpacs")]["check"], by[(name, "webpacs (couchdb+s3)")]["check"]
        assert a["items"] == b["items"] > 0, name
    rows = {row["workload"]: row for row in doc["summary"]}
    assert rows["wado-frame"]["couchdb_s3_ratio"] is not None
    assert rows["peak-rss-mb"]["webpacs (couchdb+s3)"] > 0
    assert doc["pouchdb_server_peak_rss_mb"] > 0


def test_runner_postgresql_files_beside_sqlite_files(
    manifest: Manifest, tmp_path: Path, postgresql_server: int
) -> None:
    """``--backends sqlite+files,postgresql+files``: a PostgreSQL of its own, same rows."""
    out = tmp_path / "results"
    workloads = ["qido-studies-patientid", "wado-series-metadata"]
    rc = run.main(
        ["--size", "small", "--cache", str(Path(manifest.root).parent), "--out", str(out),
         "--backends", "sqlite+files,postgresql+files", "--instances", "60", "--duration",
         "1", "--connections", "2", "--workers", "1", "--no-import", "--qido-scale", "0",
         "--no-nginx",  # the nginx column is checked by the runs above
         "--workloads", ",".join(workloads)]
    )  # fmt: skip
    assert rc == 0
    (path,) = out.glob("*-small-60inst-postgresql-files.json")
    doc = json.loads(path.read_text())
    assert doc["settings"]["backends"] == ["sqlite+files", "postgresql+files"]
    assert "nginx" not in doc and all(r["server"] != "nginx" for r in doc["results"])
    by = {(r["workload"], r["server"]): r for r in doc["results"]}
    pg = "webpacs (postgresql+files)"
    assert by[("stow", pg)]["items"] == 60 and by[("stow", pg)]["errors"] == 0
    for name in workloads:
        a, b = by[(name, "webpacs")]["check"], by[(name, pg)]["check"]
        assert b.get("status") == 200 and a["items"] == b["items"] > 0, name
    rows = {row["workload"]: row for row in doc["summary"]}
    assert rows["wado-series-metadata"]["postgresql_files_ratio"] is not None


def test_qido_scale_script_on_postgresql(postgresql_server: int) -> None:
    from bench import qido_scale

    rows = qido_scale.measure(2_000, 5, http=True, index="postgresql")
    timed = [r for r in rows if "p50_ms" in r]
    assert [(r["where"], r["index"]) for r in timed] == [("in process", "postgresql")] * 6 + [
        ("over HTTP", "postgresql")
    ] * 6
    assert all(r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"] for r in timed)
    _assert_reference_rows(qido_scale, timed)
    (size,) = [r for r in rows if r["workload"] == "index size"]
    assert size["with_mb"] > size["without_mb"] > size["refs_mb"] > 0


def _assert_reference_rows(qido_scale: Any, timed: list[dict[str, Any]]) -> None:
    """The by-reference rows found the study's segmentation (one match a query), in process
    and over HTTP."""
    names = (qido_scale.REFERENCE_ROW, qido_scale.REFERENCE_STUDY_ROW)
    reference = [r for r in timed if r["workload"] in names]
    assert len(reference) == 4, reference
    assert all(r["mean_matches"] == 1 for r in reference), reference


def test_qido_scale_script() -> None:
    from bench import qido_scale

    rows = qido_scale.measure(2_000, 5, http=True)
    names = [
        "studies by PatientID",
        "studies by date range (limit 100)",
        "instances by SliceThickness range (limit 100)",
        "studies by SliceThickness + PixelSpacing",
        qido_scale.REFERENCE_ROW,
        qido_scale.REFERENCE_STUDY_ROW,
    ]
    timed = [r for r in rows if "p50_ms" in r]
    assert [(r["workload"], r["where"]) for r in timed] == [
        (n, where) for where in ("in process", "over HTTP") for n in names
    ]
    assert all(r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"] for r in timed)
    cohort = [r for r in timed if "SliceThickness" in r["workload"] and r["where"] == "in process"]
    assert all(r["mean_matches"] > 0 for r in cohort)  # every query of the cohort found rows
    _assert_reference_rows(qido_scale, timed)
    (size,) = [r for r in rows if r["workload"] == "index size"]
    assert size["with_mb"] > size["without_mb"] > size["refs_mb"] > 0
    assert size["ratio"] > 1
    assert size["built_instances"] == 40 * 49  # 40 studies: 48 images and a SEG each


def test_nginx_checks_compare_content() -> None:
    """The nginx column's byte checks: multipart parts as sent, DICOM JSON equal but for
    URLs and what only the static tree holds, and a changed value is a difference."""
    import httpx

    from bench import nginx
    from webpacs.core.multipart import iter_multipart, multipart_content_type

    bodies = [b"DICM" * 1000, b"\r\n--not-the-boundary\r\n", b""]
    parts = [({"Content-Type": "application/dicom"}, [body]) for body in bodies]
    sent = httpx.Response(
        200,
        headers={"Content-Type": multipart_content_type("application/dicom", "b0und")},
        content=b"".join(iter_multipart(parts, "b0und")),
    )
    assert nginx._parts(sent) == bodies

    frames = {"vr": "OW", "BulkDataURI": "http://127.0.0.1:1/dicomweb/studies/1/series/2"}
    ours = [
        {"00100020": {"vr": "LO", "Value": ["P1"]}, "7FE00010": frames},
        {"00100020": {"vr": "LO", "Value": ["P2"]}, "00081190": {"vr": "UR", "Value": ["x"]}},
    ]
    tree = [
        {"00100020": {"vr": "LO", "Value": ["P2"]}, "00081190": {"vr": "UR", "Value": ["../"]}},
        {
            "00100020": {"vr": "LO", "Value": ["P1"]},
            "7FE00010": {"vr": "OW", "BulkDataURI": "../../series/2/frames"},
            "00083002": {"vr": "UI", "Value": ["1.2.840.10008.1.2.1"]},
        },
    ]
    assert nginx._normal(ours) == nginx._normal(tree)
    tree[0]["00100020"]["Value"] = ["P3"]
    assert nginx._normal(ours) != nginx._normal(tree)


def test_runner_cost_curves(manifest: Manifest, tmp_path: Path) -> None:
    """``bench/run.py --curves`` with tiny sizes: every curve present, with figures."""
    out = tmp_path / "results"
    rc = run.main(
        ["--curves", "--cache", str(Path(manifest.root).parent), "--out", str(out),
         "--curve-sizes", "1000,3000", "--curve-queries", "5", "--curve-rounds", "1",
         "--curve-stow-instances", "50", "--curve-study", "30", "--curve-multiframe-mb", "50"]
    )  # fmt: skip
    assert rc == 0
    (path,) = out.glob("*-curves.json")
    doc = json.loads(path.read_text())
    rows = doc["curves"]
    qido = {(r["workload"], r["where"], r["instances"]): r for r in rows if r["curve"] == "qido"}
    from bench import curves

    for name in curves.QIDO_ROWS:
        for where in ("in process", "over HTTP"):
            for n in (1000, 3000):
                r = qido[(name, where, n)]
                assert 0 < r["p50_ms"] <= r["p99_ms"], r
    series = [r for r in qido.values() if r["workload"] == "instances of a series"]
    assert all(r["mean_matches"] == 12 for r in series), series  # 48 images in 4 series
    assert all(r["mean_matches"] == 1 for r in qido.values() if "PatientID" in r["workload"])
    stow = [r for r in rows if r["curve"] == "stow"]
    assert sorted(r["held"] for r in stow) == [0, 3000]
    assert all(r["items"] == 50 and r["errors"] == 0 and r["items_per_s"] > 0 for r in stow)
    assert set(doc["stow_medians"]) == {"0", "3000"}
    assert all(r["server_cpu_ms_per_instance"] > 0 for r in stow)  # the server did the work
    meta = [r for r in rows if r["curve"] == "study-metadata"]
    assert len(meta) == 4 and all(r["peak_rss_mb"] >= r["idle_rss_mb"] > 0 for r in meta)
    assert all(r["bytes"] > 0 for r in meta)
    mf = {r["op"].split(" (")[0]: r for r in rows if r["curve"] == "multiframe"}
    assert set(mf) == {
        "STOW-RS",
        "GET instance",
        "GET frames, 100 a request",
        "GET bulkdata 7FE00010",
    }
    # (sent by sendfile, a retrieve may not raise the peak above idle at all)
    assert all(r["size"] == 50 and r["peak_rss_mb"] >= r["idle_rss_mb"] > 0 for r in mf.values())
    pixels = (50_000_000 // (512 * 512 * 2)) * 512 * 512 * 2
    assert mf["STOW-RS"]["bytes"] > pixels and mf["GET instance"]["bytes"] > pixels
    assert mf["GET frames, 100 a request"]["bytes"] > pixels
    assert doc["machine"]["webpacs_commit"] and len(doc["machine"]["loadavg_end"]) == 3


def test_a_server_answering_only_errors_has_no_rate_nor_ratio() -> None:
    """Orthanc answers 404 to a thumbnail and 500 to a JPEG 2000 frame as fast as it can:
    those rounds are errors, not a rate to divide webpacs' by."""

    def result(server: str, requests: int, errors: int, status: int) -> dict[str, Any]:
        return {"workload": "thumbnail-series-warm", "server": server, "tool": "wrk",
                "requests": requests, "errors": errors, "seconds": 5, "rps": requests / 5,
                "p50_ms": 1.0, "p99_ms": 2.0, "mb_per_s": 1.0, "items": None,
                "items_per_s": None, "peak_rss_mb": 100, "check": {"status": status},
                "note": ""}  # fmt: skip

    results = [result("webpacs", 1000, 0, 200), result("orthanc", 150000, 150000, 404)]
    table, rows = run.summarize(results, {}, ["webpacs", "orthanc"])
    row = rows[0]
    assert (row["webpacs"], row["orthanc"], row["ratio"]) == (200.0, None, None)
    cells = [str(c) for c in table.columns[4]._cells]
    assert cells[0] == "every answer an error (HTTP 404)"
    partly = [result("webpacs", 1000, 0, 200), result("orthanc", 1000, 10, 200)]
    assert run.summarize(partly, {}, ["webpacs", "orthanc"])[1][0]["ratio"] == 1.0
