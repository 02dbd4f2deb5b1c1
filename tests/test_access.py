"""Authorization by route (DESIGN rule 10) and basic authentication (issue 15 points 1, 2)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from starlette.routing import Route

from tests.access_support import protected
from tests.conftest import RunningServer, data_file, make_settings, start_server
from webpacs.auth import check_exposure
from webpacs.auth.basic import hash_password
from webpacs.errors import ConfigError
from webpacs.web import access, qido
from webpacs.web.app import create_app

PASSWORDS = {"reader": "read-pw-1", "writer": "write-pw-2", "boss": "admin-pw-3"}
ROLE = {"reader": "read", "writer": "write", "boss": "admin"}


def _users() -> dict[str, dict[str, str]]:
    return {n: {"hash": hash_password(p), "role": ROLE[n]} for n, p in PASSWORDS.items()}


@pytest.fixture(scope="module")
def basic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("data"), auth={"mode": "basic", "users": _users()})
    try:
        yield srv
    finally:
        srv.stop()


def _origin(srv: RunningServer) -> str:
    return srv.url.rsplit("/dicomweb", 1)[0]


def test_every_route_declares_a_role(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    roles = access.route_roles(list(app.routes), "/dicomweb")
    assert roles[("POST", "/dicomweb/studies")] == "write"
    assert roles[("DELETE", "/dicomweb/studies/{study}")] == "admin"
    assert roles[("GET", "/metrics")] == "admin"
    assert roles[("GET", "/healthz")] == access.PUBLIC
    assert set(roles.values()) <= {"read", "write", "admin", access.PUBLIC}


def test_a_route_without_a_role_stops_the_app(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:  # fmt: skip
    async def nothing(request: object) -> None: ...

    monkeypatch.setattr(qido, "routes", [*qido.routes, Route("/undeclared", nothing)])
    with pytest.raises(access.MissingRole, match="/dicomweb/undeclared"):
        create_app(make_settings(tmp_path))


def test_no_credentials_is_401_on_every_protected_route(basic_server: RunningServer) -> None:
    app = create_app(basic_server.settings, basic_server.store)
    routes = protected(app, "/dicomweb")
    assert len(routes) > 40
    with httpx.Client(base_url=_origin(basic_server)) as client:
        for method, path in routes:
            r = client.request("GET" if method == "*" else method, path)
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers["www-authenticate"].startswith("Basic")
        for path in ("/healthz", "/readyz", "/ui/browser.js", "/"):
            assert client.get(path).status_code in (200, 404), path  # public: no 401


def test_wrong_password_and_unknown_user_are_401(basic_server: RunningServer) -> None:
    for auth in (("reader", "nope"), ("nobody", "read-pw-1")):
        r = httpx.get(basic_server.url + "/studies", auth=auth)
        assert r.status_code == 401
        assert "read-pw-1" not in r.text and "nope" not in r.text


def _client(srv: RunningServer, user: str) -> DICOMwebClient:
    session = requests.Session()
    session.auth = (user, PASSWORDS[user])
    return DICOMwebClient(url=srv.url, session=session)


def test_roles_end_to_end_with_dicomweb_client(basic_server: RunningServer) -> None:
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    reader, writer, boss = (_client(basic_server, u) for u in ("reader", "writer", "boss"))
    with pytest.raises(requests.HTTPError) as e:
        reader.store_instances([ds])
    assert e.value.response.status_code == 403
    writer.store_instances([ds])
    assert reader.search_for_studies()[0]["0020000D"]["Value"] == [study]
    got = reader.retrieve_instance(study, series, sop)
    assert got.SOPInstanceUID == sop
    for client in (reader, writer):
        with pytest.raises(requests.HTTPError) as e:
            client.delete_study(study)
        assert e.value.response.status_code == 403
    boss.delete_study(study)
    assert reader.search_for_studies() == []


def test_metrics_need_admin(basic_server: RunningServer) -> None:
    origin = _origin(basic_server)
    assert httpx.get(origin + "/metrics", auth=("writer", "write-pw-2")).status_code == 403
    assert httpx.get(origin + "/metrics", auth=("boss", "admin-pw-3")).status_code == 200


def test_none_is_loopback_only_unless_allowed(tmp_path: Path) -> None:
    check_exposure(make_settings(tmp_path), "127.0.0.1")
    with pytest.raises(ConfigError, match="allowAnonymous"):
        check_exposure(make_settings(tmp_path), "0.0.0.0")
    check_exposure(make_settings(tmp_path, auth={"allowAnonymous": True}), "0.0.0.0")
    check_exposure(make_settings(tmp_path, auth={"mode": "basic"}), "0.0.0.0")


def test_config_rejects_a_plain_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="argon2"):
        make_settings(tmp_path, auth={"users": {"a": {"hash": "secret", "role": "read"}}})


def test_basic_header_is_checked_once_per_cache_period(basic_server: RunningServer) -> None:
    token = base64.b64encode(b"reader:read-pw-1").decode()
    for _ in range(3):
        r = httpx.get(basic_server.url + "/studies", headers={"Authorization": f"Basic {token}"})
        assert r.status_code == 200


def test_cors_origins_follow_auth(basic_server: RunningServer, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="corsOrigins"):
        create_app(make_settings(tmp_path, auth={"mode": "basic", "corsOrigins": ["*"]}))
    headers = {"Origin": "https://viewer.example", "Access-Control-Request-Method": "GET"}
    r = httpx.options(basic_server.url + "/studies", headers=headers)
    assert "access-control-allow-origin" not in r.headers  # no origin listed: none allowed


def test_cors_listed_origin_with_credentials(tmp_path: Path) -> None:
    auth = {"mode": "basic", "users": _users(), "corsOrigins": ["https://viewer.example"]}
    srv = start_server(tmp_path / "d", auth=auth)
    try:
        r = httpx.get(srv.url + "/studies", auth=("reader", PASSWORDS["reader"]),
                      headers={"Origin": "https://viewer.example"})  # fmt: skip
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://viewer.example"
        assert r.headers["access-control-allow-credentials"] == "true"
        other = httpx.get(srv.url + "/studies", auth=("reader", PASSWORDS["reader"]),
                          headers={"Origin": "https://evil.example"})  # fmt: skip
        assert "access-control-allow-origin" not in other.headers
    finally:
        srv.stop()


def test_audit_log_lines(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    auth = {"mode": "basic", "users": _users()}
    srv = start_server(tmp_path / "d", auth=auth, audit={"path": str(audit)})
    try:
        ds = pydicom.dcmread(data_file("CT_small.dcm"))
        _client(srv, "writer").store_instances([ds])
        httpx.get(srv.url + f"/studies/{ds.StudyInstanceUID}/metadata", auth=("boss", "x"))
        httpx.get(_origin(srv) + "/healthz")
    finally:
        srv.stop()
    lines = [orjson.loads(x) for x in audit.read_bytes().splitlines()]
    assert [(x["who"], x["what"], x["status"]) for x in lines] == [
        ("writer", "POST /dicomweb/studies", 200),
        ("-", "GET /dicomweb/studies/{study}/metadata", 401),
    ]
    assert lines[1]["uids"] == {"study": ds.StudyInstanceUID}
    text = audit.read_text()
    assert "write-pw-2" not in text and "Basic " not in text
