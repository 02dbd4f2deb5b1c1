"""``webpacs check`` and ``--repair``: on a store a real server serves, after real faults."""

from __future__ import annotations

import gzip
import os
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from tests.serve_support import Serve, check_json
from tests.static_support import ct_series
from webpacs.config import isolated
from webpacs.documents import metadata
from webpacs.ingest import ingest
from webpacs.storage.registry import open_store

SERIOUS = ("missing", "damaged", "unindexed")


def _datasets(data: list[bytes]) -> list[pydicom.Dataset]:
    import io

    return [pydicom.dcmread(io.BytesIO(d)) for d in data]


def _files(data_dir: Path, prefix: str) -> set[str]:
    """Keys of the blob files under ``prefix``, read straight from the disk."""
    root = data_dir / "blobs"
    out = set()
    for dirpath, dirnames, names in os.walk(root / prefix):
        dirnames[:] = [d for d in dirnames if d != ".tmp"]
        out |= {Path(dirpath, n).relative_to(root).as_posix() for n in names}
    return out


def _rows(data_dir: Path) -> dict[str, str]:
    """SOP Instance UID -> object key, read straight from the SQLite index."""
    with sqlite3.connect(data_dir / "index.sqlite3") as db:
        return dict(db.execute("SELECT sop_uid, blob_key FROM instances").fetchall())


def _by_kind(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["kind"] == kind]


def test_a_clean_store_checks_clean_while_served(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Serve(data) as srv:
        DICOMwebClient(srv.url).store_instances(_datasets(ct_series(3)))
        status, report = check_json(data)
    assert status == 0
    assert report["instances"] == 3 and report["objects"] == 3
    assert report["verifiedBytes"] == sum(os.path.getsize(data / "blobs" / k)
                                          for k in _rows(data).values())  # fmt: skip
    assert report["findings"] == []


def test_damaged_and_missing_objects_are_reported_with_status_1(tmp_path: Path) -> None:
    data = tmp_path / "data"
    series = ct_series(4)
    with Serve(data) as srv:
        DICOMwebClient(srv.url).store_instances(_datasets(series))
        keys = sorted(_rows(data).items())
        (truncated, k1), (flipped, k2), (gone, k3), (intact, _) = keys
        path = data / "blobs" / k1
        path.write_bytes(path.read_bytes()[:-1000])
        path = data / "blobs" / k2
        raw = bytearray(path.read_bytes())
        raw[-500] ^= 0xFF  # one pixel byte: same size, still parses
        path.write_bytes(bytes(raw))
        (data / "blobs" / k3).unlink()
        status, report = check_json(data)
        quick_status, quick = check_json(data, "--quick")
        repair_status, repaired = check_json(data, "--repair")
    assert status == 1
    damaged = {f["sop_uid"]: f["detail"] for f in _by_kind(report, "damaged")}
    assert set(damaged) == {truncated, flipped}
    assert "bytes, the index says" in damaged[truncated]
    assert "its bytes changed" in damaged[flipped]
    assert [f["sop_uid"] for f in _by_kind(report, "missing")] == [gone]
    assert intact not in {f["sop_uid"] for f in report["findings"]}
    assert report["counts"]["damaged"] == 2 and report["counts"]["missing"] == 1
    # --quick sees the size and the absence, not the flipped byte
    assert quick_status == 1
    assert {f["sop_uid"] for f in quick["findings"]} == {truncated, gone}
    # nothing in the store can repair them: they stay, and so does the status
    assert repair_status == 1 and repaired["counts"] == report["counts"]


def test_a_lost_index_row_is_reindexed_from_the_object(tmp_path: Path) -> None:
    data = tmp_path / "data"
    series = ct_series(3)
    # no deriver: its documents of the series' version before the re-index would be stale
    # (until it rebuilt them) when the last check runs
    with Serve(data, "-c", str(_no_deriver(tmp_path))) as srv:
        client = DICOMwebClient(srv.url)
        client.store_instances(_datasets(series))
        study = _datasets(series)[0].StudyInstanceUID
        lost, key = sorted(_rows(data).items())[0]
        with sqlite3.connect(data / "index.sqlite3") as db:  # the index loses one row
            db.execute("DELETE FROM instances WHERE sop_uid = ?", (lost,))
        assert len(client.search_for_instances(study)) == 2
        status, report = check_json(data)
        assert status == 1
        assert [(f["sop_uid"], f["key"]) for f in _by_kind(report, "unindexed")] == [(lost, key)]
        status, report = check_json(data, "--repair")
        assert status == 0
        assert _by_kind(report, "unindexed")[0]["repaired"] == "re-indexed from its bytes"
        found = client.search_for_instances(study, search_filters={"SOPInstanceUID": lost})
        assert [r["00080018"]["Value"][0] for r in found] == [lost]
        back = client.retrieve_instance(study, found[0]["0020000E"]["Value"][0], lost)
        assert back.SOPInstanceUID == lost and back.PixelData == _datasets(series)[0].PixelData
        status, report = check_json(data)
    assert status == 0 and report["findings"] == []


def test_stale_derived_documents_are_rebuilt_for_their_base_url(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first, second = ct_series(2), ct_series(1)
    with Serve(data, "-c", str(_no_deriver(tmp_path))) as srv:
        client = DICOMwebClient(srv.url)
        client.store_instances(_datasets(first))
        ds = _datasets(first)[0]
        study, series = ds.StudyInstanceUID, ds.SeriesInstanceUID
        requests.get(f"{srv.url}/studies/{study}/series/{series}/metadata", timeout=30)
        requests.get(f"{srv.url}/studies/{study}/series/{series}/thumbnail", timeout=30)
        built = _files(data, "derived")
        assert any(k.endswith(".json.gz") for k in built) and any(
            k.endswith("thumbnail.jpg") for k in built
        )
        # one more instance in that series (the deriver is off: the documents go stale)
        extra = _datasets(second)[0]
        extra.StudyInstanceUID, extra.SeriesInstanceUID = study, series
        client.store_instances([extra])
        status, report = check_json(data)
        assert status == 0  # stale documents are leftovers
        assert {f["key"] for f in _by_kind(report, "stale")} == built
        status, report = check_json(data, "--repair")
        assert status == 0
        assert all(f["repaired"].startswith("removed; the current") for f in report["findings"])
        now = _files(data, "derived")
        assert not now & built
        st = open_store(isolated({"dataDir": str(data)}))
        try:
            version = st.index.series_version(study, series)
        finally:
            st.close()
        tag = metadata.base_tag(srv.url)
        name = f"derived/{study}/{series}/{version}-{tag}.json.gz"
        assert name in now and f"derived/{study}/{series}/{version}-thumbnail.jpg" in now
        body = gzip.decompress((data / "blobs" / name).read_bytes())
        assert body.count(b'"00080018"') == 3 and srv.url.encode() in body
        served = client.retrieve_series_metadata(study, series)
        assert len(served) == 3
        status, report = check_json(data)
    assert status == 0 and report["findings"] == []


def _no_deriver(tmp_path: Path) -> Path:
    cfg = tmp_path / "no-deriver.json5"
    cfg.write_text("{server: {deriveInterval: 0}}")
    return cfg


@pytest.mark.timeout(900)
def test_kill_9_mid_ingest_leaves_only_leftovers_that_repair_removes(tmp_path: Path) -> None:
    """A real server killed (``kill -9`` of its process group) while a client stores, again
    and again: every acknowledged instance survives, check finds nothing but leftovers,
    and --repair removes them once they are older than the grace period."""
    data = tmp_path / "data"
    acknowledged: list[str] = []
    rng = random.Random(12)
    pending = [_datasets(ct_series(16)) for _ in range(12)]  # ready before the server is
    for n in range(20):
        if n >= 3 and _files(data, "objects") - set(_rows(data).values()):
            break
        srv = Serve(data)
        stop = threading.Event()

        def client(url: str = srv.url, stop: threading.Event = stop) -> None:
            c = DICOMwebClient(url)
            c.set_http_retry_params(retry=False)
            while not stop.is_set():
                batch = pending.pop() if pending else _datasets(ct_series(16))
                try:
                    c.store_instances(batch)
                except Exception:  # the server died under it
                    return
                acknowledged.extend(d.SOPInstanceUID for d in batch)

        t = threading.Thread(target=client)
        t.start()
        time.sleep(rng.uniform(0.3, 1.5))
        srv.kill()
        stop.set()
        t.join(60)
    leftovers = _files(data, "objects") - set(_rows(data).values())
    assert leftovers, "no kill landed between an object write and its commit"
    assert acknowledged
    rows = _rows(data)
    assert set(acknowledged) <= set(rows)  # nothing acknowledged was lost
    with Serve(data) as srv:  # online: the server serves while check and repair run
        status, report = check_json(data)
        assert status == 0
        assert not any(report["counts"][k] for k in SERIOUS)
        assert {f["key"] for f in _by_kind(report, "unreferenced")} == leftovers
        assert all(f["kind"] in ("unreferenced", "scrap", "stale") for f in report["findings"])
        # younger than the (default, 24 h) grace period: nothing is removed
        status, report = check_json(data, "--repair")
        assert status == 0 and _files(data, "objects") - set(rows.values()) == leftovers
        # with no grace period, they go; and everything the index names is still there
        status, report = check_json(data, "--repair", "--grace-hours", "0")
        assert status == 0
        assert {f["key"] for f in _by_kind(report, "unreferenced") if f["repaired"]} == leftovers
        assert _files(data, "objects") == set(rows.values())
        assert len(DICOMwebClient(srv.url).search_for_instances()) == len(rows)
        status, report = check_json(data)
    assert status == 0
    assert not _by_kind(report, "unreferenced") and not _by_kind(report, "scrap")
    assert report["instances"] == len(rows)


def test_collect_spares_an_object_touched_by_a_concurrent_ingest(tmp_path: Path) -> None:
    """The race --repair must never lose: an old leftover that an ingest of the same
    instance finds (and touches) just before the commit names it."""
    st = open_store(isolated({"dataDir": str(tmp_path / "data")}))
    try:
        data = ct_series(1)[0]
        result = ingest(st.index, st.blobs, data)
        key = st.index.get(result.sop_uid).blob_key  # type: ignore[union-attr]
        old = time.time() - 3600
        os.utime(st.blobs.local_path(key), (old, old))  # type: ignore[arg-type]
        cutoff = time.time() - 60

        def touched_meanwhile(k: str) -> bool:
            assert st.blobs.touch(k) is False  # the file is moved aside while collect decides
            return False

        # while collect decides, the ingest's touch finds no file and the ingest writes it
        # again; here nothing references it, so collect removes the copy it held
        assert st.blobs.collect(key, cutoff, touched_meanwhile) is True
        assert not st.blobs.exists(key)
        ingest(st.index, st.blobs, data)  # the ingest (re)writes it: the object is back
        assert st.blobs.exists(key)
        # a touch that lands before collect moves the file: its age restarts, it is kept
        os.utime(st.blobs.local_path(key), (old, old))  # type: ignore[arg-type]
        assert st.blobs.touch(key) is True
        assert st.blobs.collect(key, cutoff, lambda k: False) is False
        assert st.blobs.exists(key)
        # an old file that the index names is kept too
        os.utime(st.blobs.local_path(key), (old, old))  # type: ignore[arg-type]
        assert st.blobs.collect(key, cutoff, lambda k: True) is False
        assert st.blobs.get(key) and not list(st.blobs.scraps())
    finally:
        st.close()
