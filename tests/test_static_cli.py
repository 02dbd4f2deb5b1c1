"""``webpacs static build`` on the command line: --incremental, --watch --max-seconds,
--from with parallel parsers, the figures it prints, and nginx-config."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from tests.static_support import ct_series, make_store, read, settings_for, write_inputs
from webpacs.cli.main import main
from webpacs.ingest import ingest
from webpacs.static.tree import read_gz_json
from webpacs.storage.registry import open_store


def _build(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(main, ["static", "build", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _study_uids(tree: Path) -> set[str]:
    return {r["0020000D"]["Value"][0] for r in read_gz_json(tree / "studies/index.json.gz")}


def test_incremental(tmp_path: Path) -> None:
    data, tree = tmp_path / "data", tmp_path / "tree"
    _settings, st = make_store(data, ["CT_small.dcm"])
    st.close()
    first = _build("--data-dir", str(data), "--out", str(tree))
    assert first["instances"] == 1 and first["tree_bytes"] > 0
    assert _incremental(data, tree)["instances"] == 0  # nothing changed
    new = ct_series(2)
    st = open_store(settings_for(data))
    for d in new:
        ingest(st.index, st.blobs, d)
    st.close()
    assert _incremental(data, tree)["instances"] == 2  # only the new study
    assert read(new[0]).StudyInstanceUID in _study_uids(tree)
    assert len(_study_uids(tree)) == 2


def test_build_reads_the_store_static_settings_name(tmp_path: Path) -> None:
    """static.dataDir (README: the static section overrides the shared dataDir) names the
    store `static build` reads; the shared dataDir, here an empty store, is not read."""
    data, elsewhere, tree = tmp_path / "static-data", tmp_path / "shared", tmp_path / "tree"
    make_store(data, ["CT_small.dcm"])[1].close()
    make_store(elsewhere, [])[1].close()
    cfg = tmp_path / "c.json5"
    cfg.write_text(json.dumps({"dataDir": str(elsewhere), "static": {"dataDir": str(data)}}))
    assert _build("-c", str(cfg), "--out", str(tree))["instances"] == 1
    # --data-dir sets static.dataDir: the flag wins over the file
    assert (
        _build("-c", str(cfg), "--data-dir", str(elsewhere), "--out", str(tmp_path / "t2"))[
            "instances"
        ]
        == 0
    )


def _incremental(data: Path, tree: Path) -> dict[str, object]:
    return _build("--data-dir", str(data), "--out", str(tree), "--incremental")


def test_watch_follows_new_instances(tmp_path: Path) -> None:
    data, tree = tmp_path / "data", tmp_path / "tree"
    _settings, st = make_store(data, ["CT_small.dcm"])
    new = ct_series(1)[0]
    cmd = [sys.executable, "-m", "webpacs", "static", "build", "--data-dir", str(data)]
    cmd += ["--out", str(tree), "--watch", "--interval", "0.2", "--max-seconds", "6"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while not (tree / "studies/index.json.gz").exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
            time.sleep(0.1)
        ingest(st.index, st.blobs, new)
        uid = read(new).StudyInstanceUID
        while uid not in _study_uids(tree):
            assert time.monotonic() < deadline, "the watcher did not write the new study"
            time.sleep(0.1)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        st.close()
    assert proc.returncode == 0, err.decode()
    assert b"watching the change feed" in err


def test_from_files_in_parallel_with_figures(tmp_path: Path) -> None:
    files = write_inputs(tmp_path / "in", ct_series(12))
    figures = _build(
        "--dedup", "-j", "2", "--out", str(tmp_path / "tree"), "--from", *map(str, files)
    )
    assert figures["instances"] == 12
    assert figures["input_bytes"] == sum(f.stat().st_size for f in files)
    assert 0 < figures["size_ratio"] < 2  # type: ignore[operator]
    assert 0 < figures["dedup_ratio"] < 0.5  # type: ignore[operator]
    assert figures["instances_per_s"] > 0  # type: ignore[operator]


def test_nginx_config_server_only(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["static", "nginx-config", str(tmp_path), "--port", "9999", "--server-only"]
    )
    assert result.exit_code == 0
    assert result.output.startswith("    server {") and "listen 127.0.0.1:9999;" in result.output
    assert str(tmp_path.resolve()) in result.output
