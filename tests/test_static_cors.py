"""``webpacs static serve`` answers CORS, so that OHIF served from another origin reads it."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.static_support import ServerThread, path
from webpacs.static.build import Options, build_from_files
from webpacs.static.tree import Tree
from webpacs.web.static_app import create_static_app


def test_static_serve_cors(tmp_path: Path) -> None:
    build_from_files([path("CT_small.dcm")], Tree(tmp_path / "tree"), Options())
    origin = {"Origin": "http://127.0.0.1:9999"}
    with ServerThread(create_static_app(tmp_path / "tree")) as srv:
        r = httpx.get(f"{srv.url}/studies", headers=origin)
        assert r.status_code == 200 and r.json()
        assert r.headers["access-control-allow-origin"] == "*"
        pre = httpx.options(
            f"{srv.url}/studies",
            headers={**origin, "Access-Control-Request-Method": "GET",
                     "Access-Control-Request-Headers": "accept"},
        )  # fmt: skip
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "*"
        assert "GET" in pre.headers["access-control-allow-methods"]
