"""Questions two parts of the server used to answer differently get one answer now:
``Accept-Encoding`` (main and static apps), malformed UIDs (main and static apps) and the
DICOM status of each typed error (STOW-RS and DIMSE)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.static_support import FILES, ServerThread, make_store
from webpacs import errors
from webpacs.core import status
from webpacs.dimse.status import Service, failure
from webpacs.static.build import Options, build
from webpacs.static.tree import Tree
from webpacs.web.app import create_app
from webpacs.web.static_app import create_static_app
from webpacs.web.stow import _failure

#: Accept-Encoding -> whether gzip is acceptable (RFC 9110 12.5.3: its q, or ``*``'s, > 0)
ENCODINGS = {
    "gzip": True,
    "gzip;q=0.5": True,
    "br, gzip;q=0.8": True,
    "gzip; q=0.001": True,
    "gzip;q=0": False,
    "gzip;q=0.0, *": False,
    "*": True,
    "*;q=0": False,
    "br, *;q=0.1": True,
    "identity": False,
    "br": False,
    "": False,
}


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Any]]:
    tmp = tmp_path_factory.mktemp("one-answer")
    settings, st = make_store(tmp / "data", FILES)
    tree = Tree(tmp / "tree")
    build(st, tree, Options())
    study = st.index.search(_studies()).rows[0]["0020000D"]["Value"][0]
    series = st.index.study_series(study)[0]
    with (
        ServerThread(create_app(settings, st)) as live,
        ServerThread(create_static_app(tree.root)) as static,
    ):
        yield f"{live.url}/dicomweb", static.url, (study, series)
    st.close()


def _studies() -> Any:
    from webpacs.core.attributes import Level
    from webpacs.core.query import parse_qido

    return parse_qido(Level.STUDY, [])


@pytest.mark.parametrize("accept_encoding", ENCODINGS)
def test_same_accept_encoding_same_answer(apps: tuple[str, str, Any], accept_encoding: str) -> None:
    live, static, (study, series) = apps
    path = f"/studies/{study}/series/{series}/metadata"
    answers = []
    for root in (live, static):
        r = httpx.get(root + path, headers={"Accept-Encoding": accept_encoding})
        assert r.status_code == 200, r.text
        assert r.json()  # decoded by httpx whichever encoding was sent
        answers.append(r.headers.get("content-encoding") == "gzip")
    assert answers == [ENCODINGS[accept_encoding]] * 2


@pytest.mark.parametrize(
    "path",
    [
        "/studies/1.2.3.abc/series",
        "/studies/1.2.840/series/1.2.3;x/metadata",
        "/studies/1.2.3/series/1..2/instances",
    ],
)
def test_malformed_uid_is_400_on_both(apps: tuple[str, str, Any], path: str) -> None:
    live, static, _ = apps
    for root in (live, static):
        r = httpx.get(root + path)
        assert r.status_code == 400, (root, r.text)
        assert r.json()["status"] == 400


TYPED = [
    errors.StorageError("disk full"),
    errors.InvalidDicom("garbage"),
    errors.WrongStudy("other study"),
    errors.InvalidRequest("bad"),
    errors.Conflict("other content"),
    errors.Forbidden("not allowed"),
    errors.NotImplementedFeature("no"),
    errors.NotFound("gone"),
]


@pytest.mark.parametrize("exc", TYPED, ids=lambda e: type(e).__name__)
def test_stow_and_c_store_status_from_one_table(exc: errors.WebpacsError) -> None:
    stow_reason = _failure(exc).reason
    c_store = failure(Service.STORE, exc).Status
    assert stow_reason == c_store == status.status_for(status.Service.STORE, exc)
    for cls in type(exc).__mro__:  # the table's row for it, or the service's default
        if cls in status.STATUS[status.Service.STORE]:
            assert stow_reason == status.STATUS[status.Service.STORE][cls]
            break
    else:
        assert stow_reason == status.OTHERWISE[status.Service.STORE]


def test_the_codes_the_two_tables_disagreed_on() -> None:
    # STOW-RS answered 0110 for these; C-STORE (PS3.4 B.2.3, PS3.7 C.5) did not
    assert _failure(errors.InvalidRequest("x")).reason == 0xA900
    assert _failure(errors.Forbidden("x")).reason == 0x0124
    assert _failure(errors.NotImplementedFeature("x")).reason == 0x0122


def test_static_app_unknown_study_is_the_json_404(apps: tuple[str, str, Any]) -> None:
    live, static, _ = apps
    for root in (live, static):
        r = httpx.get(root + "/studies/1.2.3.4.5/series/1.2.3.4.6/metadata")
        assert r.status_code == 404 and r.json()["status"] == 404


def test_accepts_gzip_rule(tmp_path: Path) -> None:
    from webpacs.core.media import accepts_gzip

    for header, expected in ENCODINGS.items():
        assert accepts_gzip(header) is expected, header
