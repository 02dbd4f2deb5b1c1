"""auth.mode oidc against a real OpenID Connect provider (npm ``oidc-provider``) on 127.0.0.1.

The provider signs with a key the test generates (joserfc), so that the test can also make
tokens the provider would not: expired, for another audience or issuer, badly signed, or
signed by a key with a ``kid`` the provider never published.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.access_support import protected
from tests.conftest import NPM_TOOLS, RunningServer, data_file, free_port, missing, start_server
from webpacs.web.app import create_app

PROVIDER = NPM_TOOLS.parent / "oidc-provider" / "lib" / "index.js"
SCRIPT = Path(__file__).parent / "oidc_provider.mjs"
AUDIENCE = "urn:webpacs"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not PROVIDER.exists():
        missing("oidc-provider not installed (npm install --prefix .npm-tools oidc-provider@9)")
    key = RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig", "alg": "RS256"})
    conf = tmp_path_factory.mktemp("oidc") / "conf.json"
    clients = {"reader": ["read"], "writer": ["read", "write"], "boss": ["admin"]}
    conf.write_text(json.dumps({"jwks": {"keys": [key.as_dict(private=True)]}, "clients": clients}))
    port = free_port()
    proc = subprocess.Popen(["node", str(SCRIPT), str(port), str(conf), str(PROVIDER)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    issuer = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(issuer + "/.well-known/openid-configuration").raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("oidc-provider did not start") from None
                time.sleep(0.1)
        yield {"issuer": issuer, "key": key}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def token(provider: dict[str, Any], client: str) -> str:
    """An access token from the provider (client_credentials grant)."""
    r = httpx.post(provider["issuer"] + "/token", auth=(client, f"{client}-secret"),
                   data={"grant_type": "client_credentials", "resource": AUDIENCE,
                         "scope": "dicom"})  # fmt: skip
    r.raise_for_status()
    return str(r.json()["access_token"])


@pytest.fixture(scope="module")
def oidc_server(provider: dict[str, Any],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:  # fmt: skip
    oidc = {"issuer": provider["issuer"], "audience": AUDIENCE, "rolesClaim": "roles"}
    srv = start_server(tmp_path_factory.mktemp("data"), auth={"mode": "oidc", "oidc": oidc})
    try:
        yield srv
    finally:
        srv.stop()


def _bearer(t: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {t}"}


def test_provider_token_is_a_jwt_with_roles(provider: dict[str, Any]) -> None:
    t = token(provider, "writer")
    claims = jwt.decode(t, provider["key"]).claims
    assert claims["aud"] == AUDIENCE and claims["roles"] == ["read", "write"]


def test_no_token_is_401_on_every_protected_route(oidc_server: RunningServer) -> None:
    app = create_app(oidc_server.settings, oidc_server.store)
    origin = oidc_server.url.rsplit("/dicomweb", 1)[0]
    with httpx.Client(base_url=origin) as client:
        for method, path in protected(app, "/dicomweb"):
            r = client.request("GET" if method == "*" else method, path)
            assert r.status_code == 401, (method, path)
            assert r.headers["www-authenticate"].startswith("Bearer")


def _forged(provider: dict[str, Any], key: RSAKey | None = None, kid: str = "test-key",
            **claims: Any) -> str:  # fmt: skip
    now = int(time.time())
    body = {"iss": provider["issuer"], "aud": AUDIENCE, "sub": "x", "iat": now,
            "exp": now + 300, "roles": ["admin"], **claims}  # fmt: skip
    return jwt.encode({"alg": "RS256", "kid": kid}, body, key or provider["key"])


def test_bad_tokens_are_401(provider: dict[str, Any], oidc_server: RunningServer) -> None:
    url = oidc_server.url + "/studies"
    good = _forged(provider)
    assert httpx.get(url, headers=_bearer(good)).status_code == 200  # the forge itself works
    stranger = RSAKey.generate_key(2048)
    now = int(time.time())
    bad = {
        "expired": _forged(provider, exp=now - 3600, iat=now - 7200),
        "not yet valid": _forged(provider, nbf=now + 3600),
        "wrong audience": _forged(provider, aud="urn:other"),
        "wrong issuer": _forged(provider, iss="http://127.0.0.1:1/other"),
        "bad signature": _forged(provider, key=stranger),
        "unknown kid": _forged(provider, key=stranger, kid="never-published"),
        "no exp": _forged(provider, exp=None),
        "tampered": good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB"),
        "garbage": "not.a.token",
    }
    for what, t in bad.items():
        r = httpx.get(url, headers=_bearer(t))
        assert r.status_code == 401, what
        assert t not in r.text


def test_roles_from_the_provider_end_to_end(provider: dict[str, Any],
                                            oidc_server: RunningServer) -> None:  # fmt: skip
    def client(name: str) -> DICOMwebClient:
        session = requests.Session()
        session.headers.update(_bearer(token(provider, name)))
        return DICOMwebClient(url=oidc_server.url, session=session)

    ds = pydicom.dcmread(data_file("MR_small.dcm"))
    reader, writer, boss = client("reader"), client("writer"), client("boss")
    for refused in (lambda: reader.store_instances([ds]), lambda: reader.delete_study("1.2")):
        with pytest.raises(requests.HTTPError) as e:
            refused()
        assert e.value.response.status_code == 403
    writer.store_instances([ds])
    found = reader.search_for_studies()
    assert [s["0020000D"]["Value"][0] for s in found] == [ds.StudyInstanceUID]
    got = reader.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert got.SOPInstanceUID == ds.SOPInstanceUID
    with pytest.raises(requests.HTTPError) as e:
        writer.delete_study(ds.StudyInstanceUID)
    assert e.value.response.status_code == 403
    boss.delete_study(ds.StudyInstanceUID)
    assert reader.search_for_studies() == []


def test_keys_are_fetched_again_for_a_new_kid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Key rotation: a token naming a ``kid`` the cached keys lack makes the verifier fetch
    the issuer's keys again (at most once per ``REFRESH_SECONDS``); known kids use the cache.
    The issuer here is a small app of the test serving a JWKS it can change (oidc-provider
    publishes one fixed key set)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from tests.static_support import ServerThread
    from webpacs.auth import oidc
    from webpacs.errors import Unauthorized

    old = RSAKey.generate_key(2048, parameters={"kid": "old", "use": "sig", "alg": "RS256"})
    new = RSAKey.generate_key(2048, parameters={"kid": "new", "use": "sig", "alg": "RS256"})
    published = {"keys": [old.as_dict()]}
    fetches: list[str] = []

    async def discovery(request: Request) -> JSONResponse:
        return JSONResponse({"jwks_uri": str(request.url_for("jwks"))})

    async def jwks(request: Request) -> JSONResponse:
        fetches.append(published["keys"][0]["kid"])
        return JSONResponse(published)

    app = Starlette(routes=[
        Route("/.well-known/openid-configuration", discovery), Route("/jwks", jwks, name="jwks"),
    ])  # fmt: skip
    with ServerThread(app) as issuer:
        verifier = oidc.OidcVerifier(issuer.url, AUDIENCE, "roles")
        signed = {k: _forged({"issuer": issuer.url}, key=key, kid=k) for k, key in
                  (("old", old), ("new", new))}  # fmt: skip
        assert verifier.verify(signed["old"]).role == "admin"
        assert verifier.verify(signed["old"]).role == "admin"
        assert fetches == ["old"]  # kept
        published["keys"] = [new.as_dict()]  # the issuer rotates its key
        monkeypatch.setattr(oidc, "REFRESH_SECONDS", 3600.0)
        with pytest.raises(Unauthorized):  # fetched less than an hour ago: not again
            verifier.verify(signed["new"])
        assert fetches == ["old"]
        monkeypatch.setattr(oidc, "REFRESH_SECONDS", 0.0)
        assert verifier.verify(signed["new"]).role == "admin"
        assert fetches == ["old", "new"]
        with pytest.raises(Unauthorized):  # the rotated-out key is gone from the new set
            verifier.verify(signed["old"])
