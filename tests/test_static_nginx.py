"""Debian's nginx serves a tree with the configuration ``webpacs static nginx-config`` prints:
OHIF's paths parse with static-wado's rules, and dicomweb-client gets the same answers as from
``webpacs static serve``."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from tests.conftest import require_binary
from tests.static_support import (
    FILES,
    ServerThread,
    free_port,
    multi_series_study,
    path,
    read,
    write_inputs,
)
from tests.static_walk import http_fetcher, walk
from webpacs.cli.main import main
from webpacs.core.media import UNCOMPRESSED, frame_media_type
from webpacs.static.build import Options, build_from_files
from webpacs.static.tree import Tree
from webpacs.web.static_app import create_static_app


@dataclass
class Nginx:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


def start_nginx(binary: str, conf: Path, prefix: Path, port: int) -> Nginx:
    """nginx in the foreground, one process, as this user; everything under ``prefix``."""
    log = prefix / "nginx.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(conf), "-e", "stderr"]
            + ["-g", "daemon off; master_process off;"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"nginx did not start: {log.read_text()}") from None
            time.sleep(0.05)
    return Nginx(f"http://127.0.0.1:{port}", proc, log)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, dict[str, Any]]]:
    binary = require_binary("nginx")
    tmp = tmp_path_factory.mktemp("nginx")
    inputs = [path(n) for n in FILES] + write_inputs(tmp / "in", multi_series_study(2, 2))
    build_from_files(inputs, Tree(tmp / "tree"), Options())
    port = free_port()
    result = CliRunner().invoke(
        main, ["static", "nginx-config", str(tmp / "tree"), "--port", str(port)]
    )
    assert result.exit_code == 0, result.output
    prefix = tmp / "prefix"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(result.output)
    originals = {}
    for f in inputs:
        ds = read(f)
        originals[ds.SOPInstanceUID] = ds
    ngx = start_nginx(binary, conf, prefix, port)
    try:
        with ServerThread(create_static_app(tmp / "tree")) as static:
            yield ngx.url, static.url, originals
    finally:
        ngx.proc.terminate()
        try:
            ngx.proc.wait(10)
        except subprocess.TimeoutExpired:
            ngx.proc.kill()
            ngx.proc.wait()


def test_walk_through_nginx(served: tuple[str, str, dict[str, Dataset]]) -> None:
    url, _static, originals = served
    with httpx.Client() as client:
        rep = walk(http_fetcher(url, client), originals)
    assert rep.instances == len(originals) and rep.frames and rep.bulk


def test_dicomweb_client_same_as_static_serve(served: tuple[str, str, Any]) -> None:
    url, static_url, originals = served
    a, b = DICOMwebClient(url=url), DICOMwebClient(url=static_url)
    studies = a.search_for_studies()
    assert studies == b.search_for_studies()
    frames = 0
    for row in studies:
        study = row["0020000D"]["Value"][0]
        series_rows = a.search_for_series(study_instance_uid=study)
        assert series_rows == b.search_for_series(study_instance_uid=study)
        for srow in series_rows:
            series = srow["0020000E"]["Value"][0]
            kw = {"study_instance_uid": study, "series_instance_uid": series}
            assert a.search_for_instances(**kw) == b.search_for_instances(**kw)
            meta = a.retrieve_series_metadata(study, series)
            assert meta == b.retrieve_series_metadata(study, series)
            for m in meta:
                if "7FE00010" not in m:
                    continue
                sop = m["00080018"]["Value"][0]
                ts = m["00083002"]["Value"][0]
                n = int((m.get("00280008", {}).get("Value") or [1])[0])
                media = None if ts in UNCOMPRESSED else [(frame_media_type(ts), ts)]
                for k in range(1, n + 1):  # nginx answers one frame per request
                    fa = a.retrieve_instance_frames(study, series, sop, [k], media_types=media)
                    fb = b.retrieve_instance_frames(study, series, sop, [k], media_types=media)
                    assert fa == fb and len(fa) == 1
                    frames += 1
                one = a.retrieve_instance_metadata(study, series, sop)
                assert one == b.retrieve_instance_metadata(study, series, sop)
                assert one.keys() == m.keys()
    assert frames > len(originals) // 2


def test_headers(served: tuple[str, str, Any]) -> None:
    url, _static, _ = served
    studies = httpx.get(f"{url}/studies").json()
    study = studies[0]["0020000D"]["Value"][0]
    r = httpx.get(f"{url}/studies", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["content-type"] == "application/dicom+json"
    assert r.headers["access-control-allow-origin"] == "*"
    # a client that does not accept gzip gets it decompressed
    plain = httpx.get(f"{url}/studies/{study}/series", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.json()
    pre = httpx.options(f"{url}/studies", headers={"Origin": "http://viewer.example"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "*"
    assert "GET" in pre.headers["access-control-allow-methods"]
    assert httpx.get(f"{url}/.webpacs-static.json").status_code == 404
    assert httpx.get(f"{url}/studies/1.2.3/series").status_code == 404
