"""``webpacs backup`` / ``webpacs restore``: a store backed up while it serves and stores,
restored into a new data directory, answers as the original did."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.serve_support import Serve, check_json, webpacs
from tests.static_support import ct_series

RETRIEVE_URL = "00081190"


def _datasets(data: list[bytes]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(io.BytesIO(d)) for d in data]


def _qido(client: DICOMwebClient) -> dict[str, Any]:
    """Every QIDO answer of the store, its host-dependent RetrieveURLs left out."""

    def clean(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != RETRIEVE_URL} for r in rows]

    out: dict[str, Any] = {"studies": clean(client.search_for_studies())}
    for row in out["studies"]:
        study = row["0020000D"]["Value"][0]
        out[study] = clean(client.search_for_series(study))
        for srow in out[study]:
            series = srow["0020000E"]["Value"][0]
            out[series] = clean(client.search_for_instances(study, series))
    out["instances"] = clean(client.search_for_instances())
    return out


def _wado(client: DICOMwebClient, qido: dict[str, Any]) -> dict[str, Any]:
    """Series metadata (base URL left out) and every instance's Part 10 bytes."""
    out: dict[str, Any] = {}
    for row in qido["instances"]:
        study, series, sop = (row[t]["Value"][0] for t in ("0020000D", "0020000E", "00080018"))
        if series not in out:
            meta = json.dumps(client.retrieve_series_metadata(study, series))
            out[series] = meta.replace(client.base_url, "BASE")
        buf = io.BytesIO()
        client.retrieve_instance(study, series, sop).save_as(buf)
        out[sop] = buf.getvalue()
    return out


def _manifest(backup: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((backup / "backup.json").read_text())
    return manifest


@pytest.mark.timeout(900)
def test_backup_while_storing_then_restore_answers_the_same(tmp_path: Path) -> None:
    data, bk = tmp_path / "data", tmp_path / "backup"
    first, doomed = ct_series(3), ct_series(2)
    acknowledged: list[str] = []
    with Serve(data) as srv:
        client = DICOMwebClient(srv.url)
        client.store_instances(_datasets(first) + _datasets(doomed))
        stop = threading.Event()

        def store() -> None:
            c = DICOMwebClient(srv.url)
            while not stop.is_set():
                batch = _datasets(ct_series(4))
                c.store_instances(batch)
                acknowledged.extend(d.SOPInstanceUID for d in batch)

        t = threading.Thread(target=store)
        t.start()
        try:
            before = len(acknowledged)
            out = webpacs("backup", str(bk), "--data-dir", str(data))
            assert out.returncode == 0, out.stderr
            during = set(acknowledged[:before])
        finally:
            stop.set()
            t.join(120)
        m1 = _manifest(bk)
        assert m1["format"] == 1 and m1["added"] == m1["objects"] and m1["kept"] == 0
        # the backup taken while the client stored is consistent: every object it names
        restored1 = tmp_path / "restored-during"
        out = webpacs("restore", str(bk), "--data-dir", str(restored1))
        assert out.returncode == 0, out.stderr
        status, report = check_json(restored1)
        assert status == 0 and report["findings"] == []
        assert report["instances"] == m1["objects"] >= 5 + len(during)

        # a delete, then an incremental backup: new objects added, the deleted dropped
        ds = _datasets(doomed)[0]
        client.delete_series(ds.StudyInstanceUID, ds.SeriesInstanceUID)
        out = webpacs("backup", str(bk), "--data-dir", str(data))
        assert out.returncode == 0, out.stderr
        m2 = _manifest(bk)
        total = 3 + len(acknowledged)
        assert m2["objects"] == total
        assert m2["dropped"] == 2 and m2["kept"] == m1["objects"] - 2
        assert m2["added"] == total - m2["kept"]
        qido, wado = _qido(client), _wado(client, _qido(client))

    restored = tmp_path / "restored"
    out = webpacs("restore", str(bk), str(restored))  # NEW as a positional argument
    assert out.returncode == 0, out.stderr
    assert f"restored {total} objects" in out.stderr.replace("\n", " ")
    with Serve(restored) as srv:
        client = DICOMwebClient(srv.url)
        assert len(qido["instances"]) == total
        assert _qido(client) == qido
        assert _wado(client, qido) == wado
    assert ds.SOPInstanceUID not in json.dumps(qido)


def test_restore_refuses_a_store_that_exists(tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = webpacs("import", "--data-dir", str(data), str(_one_file(tmp_path)))
    assert out.returncode == 0, out.stderr
    assert webpacs("backup", str(tmp_path / "bk"), "--data-dir", str(data)).returncode == 0
    out = webpacs("restore", str(tmp_path / "bk"), "--data-dir", str(data))
    assert out.returncode == 1 and "already holds a store" in out.stderr


def _one_file(tmp_path: Path) -> Path:
    f = tmp_path / "one.dcm"
    f.write_bytes(ct_series(1)[0])
    return f


@pytest.mark.parametrize(
    ("settings", "hint"),
    [
        ({"index": "postgresql"}, "pg_dump"),
        ({"index": "couchdb", "blobs": "s3"}, "CouchDB replication"),
        ({"blobs": "s3"}, "bucket versioning"),
    ],
)
def test_other_backends_are_refused_with_what_to_use(
    tmp_path: Path, settings: dict[str, str], hint: str
) -> None:
    cfg = tmp_path / "c.json5"
    cfg.write_text(json.dumps(settings))
    for args in (["backup", str(tmp_path / "bk")], ["restore", str(tmp_path), str(tmp_path / "n")]):
        out = webpacs(*args, "-c", str(cfg))
        assert out.returncode == 1
        assert hint in out.stderr.replace("\n", " ") and "embedded store" in out.stderr
