"""The operator's endpoints at the origin root (/healthz, /readyz, /metrics, /openapi.json,
/docs) and the Retrieve Capabilities at rootPath, on a real server."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningServer, data_file, start_server
from webpacs.web.openapi import app_routes

WADL = "{http://wadl.dev.java.net/2009/02}"
CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
CT_SERIES = "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"


def origin(srv: RunningServer) -> str:
    return srv.url.rsplit("/dicomweb", 1)[0]


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def stow(url: str, *files: Path) -> httpx.Response:
    boundary = "XXbXX"
    body = b""
    for f in files:
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        body += f.read_bytes() + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    ctype = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return httpx.post(f"{url}/studies", content=body, headers={"Content-Type": ctype})


def test_healthz_and_readyz(server: RunningServer) -> None:
    o = origin(server)
    assert httpx.get(f"{o}/healthz").json()["status"] == "ok"
    r = httpx.get(f"{o}/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    # the blob directory goes away: not ready, and the reason says which part
    shutil.rmtree(server.settings.data_dir / "blobs")
    r = httpx.get(f"{o}/readyz")
    assert r.status_code == 503
    assert r.json()["status"] == "unavailable"
    assert any(reason.startswith("blobs:") for reason in r.json()["reasons"]), r.json()
    assert httpx.get(f"{o}/healthz").status_code == 200  # alive all the same


class Forwarder:
    """A TCP forwarder to ``target`` on a port of its own, that can be cut (then nothing
    listens there: connections are refused, as when a database server is down)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with contextlib.suppress(OSError):  # wakes the accept() (a close alone does not)
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for s in self.open:  # kept-alive connections end too
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def test_readyz_index_unreachable(tmp_path: Path, couchdb_url: str) -> None:
    """An index server that stops answering makes the process not ready (and alive)."""
    from tests.conftest import drop_couchdb, new_couchdb_section

    host, port = couchdb_url.rsplit("/", 1)[-1].split(":")
    fwd = Forwarder((host, int(port)))
    section = new_couchdb_section(f"http://127.0.0.1:{fwd.port}")
    srv = start_server(tmp_path / "data", index="couchdb", couchdb=section)
    try:
        o = origin(srv)
        assert httpx.get(f"{o}/readyz").status_code == 200
        fwd.cut()
        r = httpx.get(f"{o}/readyz")
        assert r.status_code == 503
        assert any(reason.startswith("index:") for reason in r.json()["reasons"]), r.json()
        assert httpx.get(f"{o}/healthz").status_code == 200
    finally:
        srv.stop()
        drop_couchdb({**section, "url": couchdb_url})


def test_metrics_count_requests_stow_and_store(server: RunningServer) -> None:
    o = origin(server)
    before = samples(httpx.get(f"{o}/metrics").text)
    ct, mr = data_file("CT_small.dcm"), data_file("MR_small.dcm")
    assert stow(server.url, ct, mr).status_code == 200
    assert stow(server.url, ct).status_code == 200  # already stored
    for _ in range(3):
        assert httpx.get(f"{server.url}/studies/{CT_STUDY}/metadata").status_code == 200
    assert httpx.get(f"{server.url}/studies/1.2.3/metadata").status_code == 404
    assert httpx.get(f"{o}/no/such/path").status_code == 404
    r = httpx.get(f"{o}/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    after = samples(r.text)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    route = "/dicomweb/studies/{study}/metadata"
    assert delta("webpacs_http_requests_total", method="GET", route=route, status="200") == 3
    assert delta("webpacs_http_requests_total", method="GET", route=route, status="404") == 1
    assert delta("webpacs_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert delta("webpacs_http_request_duration_seconds_count", method="GET", route=route) == 4
    assert delta("webpacs_http_requests_total", method="POST", route="/dicomweb/studies",
                 status="200") == 2  # fmt: skip
    assert delta("webpacs_stow_instances_total", outcome="stored") == 2
    assert delta("webpacs_stow_instances_total", outcome="duplicate") == 1
    sizes = 2 * ct.stat().st_size + mr.stat().st_size
    assert sizes <= delta("webpacs_stow_bytes_total") < sizes + 1000  # the parts, not headers
    assert after[("webpacs_store_instances", ())] == 2
    assert after[("webpacs_store_studies", ())] == 2
    stored = sum(r.size for r in server.store.index.instances(CT_STUDY))
    assert after[("webpacs_store_bytes", ())] >= stored > 0


def test_capabilities_at_root_path(module_server: RunningServer) -> None:
    url = module_server.url  # http://127.0.0.1:port/dicomweb
    for target in (url, url + "/"):
        for method in ("GET", "OPTIONS"):
            r = httpx.request(method, target, follow_redirects=False)
            assert r.status_code == 200, (method, target)
            assert r.headers["content-type"].startswith("application/vnd.sun.wadl+xml")
            app = ET.fromstring(r.content)
            assert app.tag == f"{WADL}application"
            resources = app.find(f"{WADL}resources")
            assert resources is not None and resources.get("base") == url
            studies = resources.find(f"{WADL}resource[@path='studies']")
            assert studies is not None
            methods = {m.get("id") for m in studies.findall(f"{WADL}method")}
            assert {"searchStudies", "storeInstances"} <= methods
            study = studies.find(f"{WADL}resource[@path='{{study}}']")
            assert study is not None
            assert study.find(f"{WADL}param[@style='template']") is not None
            metadata = study.find(f"{WADL}resource[@path='metadata']")
            assert metadata is not None
    r = httpx.get(url, headers={"Accept": "application/json"})
    assert r.headers["content-type"].startswith("application/json")
    tree = r.json()["application"]["resources"]
    assert tree["base"] == url
    paths = {res["path"] for res in tree["resource"]}
    assert {"studies", "series", "instances", "wado"} <= paths
    assert httpx.get(url, headers={"Accept": "image/png"}).status_code == 406


def test_cors_preflight_on_root_path_stays_a_preflight(module_server: RunningServer) -> None:
    r = httpx.options(
        module_server.url + "/",
        headers={"Origin": "http://viewer.example", "Access-Control-Request-Method": "GET"},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] in ("*", "http://viewer.example")
    assert "GET" in r.headers["access-control-allow-methods"]
    assert b"wadl" not in r.content
    # a plain OPTIONS from a page of another origin gets the capabilities, with CORS
    r = httpx.options(module_server.url, headers={"Origin": "http://viewer.example"})
    assert r.status_code == 200 and b"<resources" in r.content
    assert r.headers["access-control-allow-origin"] == "*"


def _app_ops(srv: RunningServer) -> set[tuple[str, str]]:
    """(method, path) of every route of the running app, mounts walked."""
    app = srv.server.config.app
    return {(m, p.replace(":path", "")) for m, p in app_routes(app.routes)}


def test_openapi_describes_every_route(module_server: RunningServer) -> None:
    doc = httpx.get(origin(module_server) + "/openapi.json").json()
    validate(doc)  # a valid OpenAPI 3.1 document
    described = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    missing = _app_ops(module_server) - described
    assert not missing, f"routes missing from the OpenAPI document: {sorted(missing)}"
    assert ("GET", "/healthz") in described and ("GET", "/dicomweb/studies") in described
    # and the page shows every path of it
    page = httpx.get(origin(module_server) + "/docs")
    assert page.headers["content-type"].startswith("text/html")
    for path in doc["paths"]:
        assert path.replace("{", "&#x7b;") in page.text or path in page.text, path


@pytest.mark.parametrize("root", ["/pacs", "/"])
def test_routes_follow_root_path(tmp_path: Path, root: str) -> None:
    srv = start_server(tmp_path / "data", server={"rootPath": root})
    try:
        o = f"http://127.0.0.1:{srv.server.config.port}"
        doc = httpx.get(f"{o}/openapi.json").json()
        prefix = root.rstrip("/")
        assert f"{prefix}/studies" in doc["paths"]
        assert httpx.get(f"{o}{prefix}/studies").status_code == 200
        assert httpx.get(f"{o}/healthz").status_code == 200
        r = httpx.options(f"{o}{prefix}/")
        assert r.status_code == 200 and b"<resources" in r.content
        home = httpx.get(f"{o}/", headers={"Accept": "application/json"})
        assert home.json()["name"] == "webpacs"  # / stays the home: the study browser's page
        assert "<!doctype html>" in httpx.get(f"{o}/", headers={"Accept": "text/html"}).text
    finally:
        srv.stop()
