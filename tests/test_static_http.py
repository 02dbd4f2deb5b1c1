"""A tree read through ``webpacs static serve`` answers like ``webpacs serve`` on the same data;
incremental builds follow new and deleted instances."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.static_support import FILES, ServerThread, ct_series, make_store, read
from webpacs.core.media import frame_media_type
from webpacs.ingest import ingest
from webpacs.static.build import Options, build, watch
from webpacs.static.instance import Thresholds
from webpacs.static.tree import Tree, read_gz_json
from webpacs.web.app import create_app
from webpacs.web.static_app import create_static_app

URLS = {"00081190", "7FE00010"}  # RetrieveURL and PixelData URIs differ by design


def _strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        clean = {}
        for k, v in row.items():
            if k in URLS:
                continue
            if "BulkDataURI" in v:
                v = {"vr": v["vr"], "BulkDataURI": "*"}
            clean[k] = v
        out.append(clean)
    return out


def _by(rows: list[dict[str, Any]], tag: str) -> dict[str, dict[str, Any]]:
    return {r[tag]["Value"][0]: r for r in _strip(rows)}


#: thresholds equal to the live server's (binary values over 1024 bytes are bulk data)
_SAME = Thresholds(public=1024, private=1024)


@pytest.fixture
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings, st = make_store(tmp_path / "data", FILES)
    tree = Tree(tmp_path / "tree")
    build(st, tree, Options(thresholds=_SAME))
    with (
        ServerThread(create_app(settings, st)) as live,
        ServerThread(create_static_app(tree.root)) as static,
    ):
        yield st, tree, live, static
    st.close()


def _metadata_equal(live_meta: list[dict[str, Any]], static_meta: list[dict[str, Any]]) -> None:
    a = _by(live_meta, "00080018")
    b = _by(static_meta, "00080018")
    assert a.keys() == b.keys()
    for sop, meta in a.items():
        other = dict(b[sop])
        assert other.pop("00083002")["Value"]
        assert meta == other, sop


def test_same_answers_as_live_server(env) -> None:  # type: ignore[no-untyped-def]
    st, tree, live, static = env
    a, b = DICOMwebClient(url=live.url + "/dicomweb"), DICOMwebClient(url=static.url)
    studies_a = a.search_for_studies()
    studies_b = b.search_for_studies()
    assert _by(studies_a, "0020000D") == _by(studies_b, "0020000D")
    assert [r["0020000D"] for r in studies_a] == [r["0020000D"] for r in studies_b]
    for study in _by(studies_a, "0020000D"):
        series_a = a.search_for_series(study_instance_uid=study)
        assert _by(series_a, "0020000E") == _by(
            b.search_for_series(study_instance_uid=study), "0020000E"
        )
        for series in _by(series_a, "0020000E"):
            ia = a.search_for_instances(study_instance_uid=study, series_instance_uid=series)
            ib = b.search_for_instances(study_instance_uid=study, series_instance_uid=series)
            assert _by(ia, "00080018") == _by(ib, "00080018")
            _metadata_equal(
                a.retrieve_series_metadata(study, series), b.retrieve_series_metadata(study, series)
            )
            for row in ia:
                sop = row["00080018"]["Value"][0]
                rec = st.index.get(sop)
                nframes = len(rec.framemap["frames"]) if rec and rec.framemap["aligned"] else 0
                if nframes == 0:
                    continue
                numbers = list(range(1, nframes + 1))
                ts = rec.transfer_syntax
                media = None
                if ts not in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1"):
                    media = [(frame_media_type(ts), ts)]
                fa = a.retrieve_instance_frames(study, series, sop, numbers, media_types=media)
                fb = b.retrieve_instance_frames(study, series, sop, numbers, media_types=media)
                assert fa == fb and len(fb) == nframes
    # filters the static server documents
    pid = next(r["00100020"]["Value"][0] for r in studies_a if r["00100020"].get("Value"))
    assert {
        r["00100020"]["Value"][0] for r in b.search_for_studies(search_filters={"PatientID": pid})
    } == {pid}


def test_gzip_and_multipart_headers(env) -> None:  # type: ignore[no-untyped-def]
    st, tree, live, static = env
    rec = st.index.instances(
        read_gz_json(tree.path("studies/index.json.gz"))[0]["0020000D"]["Value"][0]
    )[0]
    base = f"{static.url}/studies/{rec.study_uid}/series/{rec.series_uid}"
    r = httpx.get(f"{base}/metadata", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert r.headers["content-type"].startswith("application/dicom+json")
    r = httpx.get(f"{base}/instances/{rec.sop_uid}/frames/1")
    assert r.headers["content-type"].startswith("multipart/related")
    assert "boundary=" in r.headers["content-type"]
    assert httpx.get(f"{static.url}/studies/1.2.3/series").status_code == 404


def test_incremental_after_new_and_deleted_instances(env) -> None:  # type: ignore[no-untyped-def]
    st, tree, live, static = env
    before = gzip.decompress(tree.path("studies/index.json.gz").read_bytes())
    new = ct_series(2)
    ingest(st.index, st.blobs, new[0])
    report = build(st, tree, Options(thresholds=_SAME), incremental=True)
    assert report.studies == 1 and report.instances == 1
    ds = read(new[0])
    client = DICOMwebClient(url=static.url)
    assert ds.StudyInstanceUID in _by(client.search_for_studies(), "0020000D")
    # a second instance of the same series through the watcher
    ingest(st.index, st.blobs, new[1])
    assert watch(st, tree, Options(thresholds=_SAME), interval=0.1, max_seconds=0.5) == 1
    rows = client.search_for_instances(
        study_instance_uid=ds.StudyInstanceUID, series_instance_uid=ds.SeriesInstanceUID
    )
    assert len(rows) == 2
    study_row = _by(client.search_for_studies(), "0020000D")[ds.StudyInstanceUID]
    assert study_row["00201208"]["Value"] == [2]
    # delete one instance, then the whole new study, through the live server
    sop = read(new[1]).SOPInstanceUID
    series_url = f"{live.url}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    url = f"{series_url}/instances/{sop}"
    assert httpx.delete(url).status_code == 204
    build(st, tree, Options(thresholds=_SAME), incremental=True)
    assert not tree.path(
        f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{sop}"
    ).exists()
    meta = client.retrieve_series_metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert [m["00080018"]["Value"][0] for m in meta] == [ds.SOPInstanceUID]
    assert httpx.delete(f"{live.url}/dicomweb/studies/{ds.StudyInstanceUID}").status_code == 204
    report = build(st, tree, Options(thresholds=_SAME), incremental=True)
    assert report.removed == 1
    assert not tree.path(f"studies/{ds.StudyInstanceUID}").exists()
    assert gzip.decompress(tree.path("studies/index.json.gz").read_bytes()) == before
