"""The ``webpacs`` command: help everywhere, import summaries, serve."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
import requests
from click.testing import CliRunner

from tests.conftest import data_file, free_port
from webpacs import __version__
from webpacs.cli.main import main

WEBPACS = [sys.executable, "-m", "webpacs"]


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out += all_commands(cmd, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


@pytest.mark.parametrize("path", all_commands(main), ids=lambda p: " ".join(p) or "webpacs")
def test_help_on_every_command(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_version() -> None:
    out = subprocess.run([*WEBPACS, "--version"], capture_output=True, text=True, check=True)
    assert __version__ in out.stdout


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WEBPACS, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_import_samples(tmp_path: Path) -> None:
    out = run("import", "--samples", "--data-dir", str(tmp_path), "-j", "2")
    assert out.returncode == 0, out.stderr
    summary = re.search(
        r"(\d+) files: (\d+) stored, (\d+) already present(?:, (\d+) repeated in the input)?,"
        r" (\d+) not stored",
        out.stderr,
    )
    assert summary, out.stderr
    files, stored, present, repeated, failed = (int(g or 0) for g in summary.groups())
    assert stored > 100 and files == stored + present + repeated + failed
    # an empty store has nothing "already present": the sample files that hold the same
    # data set as another sample file (byte-identical copies, other transfer syntaxes of
    # the same image) are "repeated in the input"
    assert present == 0 and repeated >= 2
    # a short summary: more than ten failures go to the report, which says where it is
    assert "not stored /" not in out.stderr and len(out.stderr.strip().splitlines()) <= 4
    report = tmp_path / "import-report.tsv"
    assert f"every file's outcome and reason: {report}" in out.stderr
    rows = [line.split("\t") for line in report.read_text().splitlines()[1:]]
    assert len(rows) == files and sum(r[1] in ("failed", "conflict") for r in rows) == failed
    assert any("DICOMDIR" in r[0] and r[2] for r in rows)  # failures with their reason
    again = run("import", "--samples", "--data-dir", str(tmp_path), "-j", "2")
    summary = re.search(r"(\d+) stored, (\d+) already present", again.stderr)
    assert summary and int(summary.group(1)) == 0 and int(summary.group(2)) >= stored


def test_import_reports_failures(tmp_path: Path) -> None:
    src = tmp_path / "in" / "nested"
    src.mkdir(parents=True)
    shutil.copy(data_file("CT_small.dcm"), src / "ct.dcm")
    (src / "notes.txt").write_text("not dicom")
    out = run("import", str(tmp_path / "in"), "--data-dir", str(tmp_path / "data"))
    assert out.returncode == 1
    assert "1 stored" in out.stderr and "1 not stored" in out.stderr
    assert "notes.txt" in out.stderr and "not a DICOM" in out.stderr


def test_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.json5"
    cfg.write_text("{ server: { prot: 1 } }")
    out = run("import", "--samples", "-c", str(cfg), "--data-dir", str(tmp_path))
    assert out.returncode == 2
    assert "server.prot" in out.stderr and str(cfg) in out.stderr


def test_serve_prints_urls_and_serves(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "WEBPACS_SERVER_PORT": str(port)}
    run("import", str(data_file("CT_small.dcm")), "--data-dir", str(tmp_path))
    proc = subprocess.Popen(
        [*WEBPACS, "serve", "--data-dir", str(tmp_path), "--no-dimse"]
        if "--no-dimse" in run("serve", "--help").stdout
        else [*WEBPACS, "serve", "--data-dir", str(tmp_path)],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}/dicomweb"
        deadline = time.monotonic() + 20
        while True:
            try:
                r = requests.get(base + "/studies", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):  # bound, workers still starting
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        assert r.status_code == 200 and len(r.json()) == 1
        page = requests.get(f"http://127.0.0.1:{port}/", timeout=5)  # the study browser
        assert '<meta name="webpacs-root" content="/dicomweb">' in page.text
        assert requests.get(f"http://127.0.0.1:{port}/ui/main.js", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert base in err
    assert "Viewer: " in err  # the hosted OHIF's URL, or why it is off
    assert f"Study browser: http://127.0.0.1:{port}/" in err


def test_concurrent_imports_share_one_store(tmp_path: Path) -> None:
    """Two processes writing one embedded store: every instance lands, the index stays sound."""
    import sqlite3

    from tests.contract import make_instance

    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        for i in range(30):
            uid = f"1.2.826.0.1.3680043.8.498.55.{ord(d)}.{i}"
            data = make_instance(
                {}, SOPInstanceUID=uid, SeriesInstanceUID=f"1.2.826.0.1.3680043.8.498.55.{ord(d)}"
            )
            (tmp_path / d / f"{i}.dcm").write_bytes(data)
    data_dir = tmp_path / "data"
    procs = [
        subprocess.Popen(
            [*WEBPACS, "import", str(tmp_path / d), "--data-dir", str(data_dir), "-j", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for d in ("a", "b")
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    db = sqlite3.connect(data_dir / "index.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM instances").fetchone()[0] == 60
        assert db.execute("SELECT num_instances, num_series FROM studies").fetchall() == [(60, 2)]
    finally:
        db.close()
