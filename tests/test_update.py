"""``webpacs update`` and ``POST .../webpacs/.../update`` against real clients.

After an update, QIDO (dicomweb-client), metadata, WADO-RS, C-FIND (dcmtk findscu), the
static tree (``static build --incremental``) and a Part 10 file exported from it show
the new value, and ``OriginalAttributesSequence`` the old one; UIDs stay, pixel data
bytes are those stored before.
"""

from __future__ import annotations

import copy
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from click.testing import CliRunner
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, data_file, require_binary
from tests.static_support import read
from webpacs.cli.main import main
from webpacs.core import modify
from webpacs.dimse import ScpHandle
from webpacs.static.export import instance_dataset
from webpacs.static.tree import read_gz_json

PN, OAS, MAS = "00100010", "04000561", "04000550"


def study_of(name: str, n: int, **values: Any) -> list[Dataset]:
    """``n`` instances made from a pydicom test file: one new study and series."""
    base = read(data_file(name))
    study, series = generate_uid(), generate_uid()
    out = []
    for i in range(n):
        ds = copy.deepcopy(base)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        for k, v in values.items():
            setattr(ds, k, v)
        out.append(ds)
    return out


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def findscu(port: int, keys: list[str], cwd: Path) -> list[Dataset]:
    exe = require_binary("findscu")
    args = [exe, "-S", "-X", "-aec", "WEBPACS", "127.0.0.1", str(port)]
    for k in keys:
        args += ["-k", k]
    for old in cwd.glob("rsp*.dcm"):
        old.unlink()
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [pydicom.dcmread(p) for p in sorted(cwd.glob("rsp*.dcm"))]


def name(obj: dict[str, Any], tag: str = PN) -> str:
    return str(obj[tag]["Value"][0]["Alphabetic"])


def original(obj: dict[str, Any], tag: str) -> list[Any]:
    """The values of ``tag`` kept in each ``OriginalAttributesSequence`` item (JSON)."""
    out = []
    for item in obj[OAS]["Value"]:
        (mas,) = item[MAS]["Value"]
        assert item["04000565"]["Value"] == ["CORRECT"]
        assert item["04000563"]["Value"] == ["webpacs"]
        assert item["04000562"]["Value"][0][:4].isdigit()
        out.append(mas[tag]["Value"][0] if tag in mas else None)
    return out


def test_study_update_reaches_every_door(
    served: tuple[RunningServer, ScpHandle], tmp_path: Path
) -> None:
    srv, scp = served
    data, tree = str(srv.settings.data_dir), str(tmp_path / "tree")
    ct = study_of("CT_small.dcm", 2, PatientName="Doe^Jon", PatientID="P-1")
    jpeg = study_of("JPEG2000.dcm", 1)  # compressed pixel data: must stay byte for byte
    for ds in jpeg:  # the same patient and study as the CT
        for tag in (0x0020000D, *modify.STUDY_LEVEL_TAGS):
            if tag in ct[0]:
                ds[tag] = copy.deepcopy(ct[0][tag])
            elif tag in ds:
                del ds[tag]
    client = DICOMwebClient(url=srv.url)
    client.store_instances(ct + jpeg)
    study = ct[0].StudyInstanceUID
    cli("static", "build", "--data-dir", data, "--out", tree)
    keys_before = set(srv.store.blobs.keys("objects/"))
    seq_before = srv.store.index.changes(0, 10_000)[-1].seq

    out = cli("update", "--data-dir", data, "--study", study, "PatientName=Doe^Jane", "--json")
    report = json.loads(out.strip().splitlines()[0])
    assert report == {"studies": [study], "rewritten": 3, "unchanged": 0}

    # QIDO: the new name matches, the old one no longer does
    rows = client.search_for_studies(search_filters={"PatientName": "Doe^Jane"})
    assert [r["0020000D"]["Value"][0] for r in rows] == [study]
    assert name(rows[0]) == "Doe^Jane"
    assert client.search_for_studies(search_filters={"PatientName": "Doe^Jon"}) == []
    # metadata: new value, the old one in OriginalAttributesSequence
    meta = client.retrieve_study_metadata(study)
    assert len(meta) == 3
    for m in meta:
        assert name(m) == "Doe^Jane"
        assert [v["Alphabetic"] for v in original(m, PN)] == ["Doe^Jon"]
    # WADO-RS: the instance itself, UIDs as they were, pixel data bytes as stored
    for ds in ct + jpeg:
        got = client.retrieve_instance(study, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        assert str(got.PatientName) == "Doe^Jane"
        assert got.SOPInstanceUID == ds.SOPInstanceUID
        assert got.SeriesInstanceUID == ds.SeriesInstanceUID
        (item,) = got.OriginalAttributesSequence
        assert str(item.ModifiedAttributesSequence[0].PatientName) == "Doe^Jon"
        assert got.PixelData == ds.PixelData
    # the old objects are gone, new ones took their place; the change feed moved
    keys_after = set(srv.store.blobs.keys("objects/"))
    assert len(keys_after) == 3 and not keys_after & keys_before
    assert srv.store.index.changes(seq_before, 10_000)
    assert srv.store.index.study_conflicts(study) == []
    # C-FIND (dcmtk)
    found = findscu(
        scp.port, ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}", "PatientName"], tmp_path
    )
    assert [str(d.PatientName) for d in found] == ["Doe^Jane"]
    assert findscu(scp.port, ["QueryRetrieveLevel=STUDY", "PatientName=Doe^Jon"], tmp_path) == []
    # the static tree follows with --incremental, and a Part 10 file exported from it
    built = json.loads(
        cli("static", "build", "--json", "--incremental", "--data-dir", data, "--out", tree)
        .strip()
        .splitlines()[-1]
    )
    assert built["instances"] == 3
    root = Path(tree)
    (row,) = read_gz_json(root / "studies" / study / "index.json.gz")
    assert name(row) == "Doe^Jane"
    series = ct[0].SeriesInstanceUID
    for m in read_gz_json(root / "studies" / study / "series" / series / "metadata.gz"):
        assert name(m) == "Doe^Jane"
        assert [v["Alphabetic"] for v in original(m, PN)] == ["Doe^Jon"]
    exported = instance_dataset(root, study, series, ct[1].SOPInstanceUID)
    buf = io.BytesIO()
    exported.save_as(buf, enforce_file_format=True)
    part10 = pydicom.dcmread(io.BytesIO(buf.getvalue()))
    assert str(part10.PatientName) == "Doe^Jane"
    assert str(part10.OriginalAttributesSequence[0].ModifiedAttributesSequence[0].PatientName) == (
        "Doe^Jon"
    )
    assert part10.PixelData == ct[1].PixelData


def test_http_series_update_and_second_update(server: RunningServer) -> None:
    ct = study_of("CT_small.dcm", 2, SeriesDescription="AX", ProtocolName="Head")
    client = DICOMwebClient(url=server.url)
    client.store_instances(ct)
    study, series = ct[0].StudyInstanceUID, ct[0].SeriesInstanceUID
    url = f"{server.url}/webpacs/studies/{study}/series/{series}/update"
    r = httpx.post(url, json={"set": {"SeriesDescription": "AX T1"}, "remove": ["ProtocolName"]})
    assert r.status_code == 200, r.text
    assert r.json()["rewritten"] == 2
    (row,) = client.search_for_series(study)
    assert row["0008103E"]["Value"] == ["AX T1"]
    assert client.search_for_series(study, search_filters={"SeriesDescription": "AX"}) == []
    # a second update adds a second item; each keeps the values before it
    r = httpx.post(url, json={"set": {"SeriesDescription": "AX T2"}, "reason": "COERCE"})
    assert r.status_code == 200, r.text
    for m in client.retrieve_series_metadata(study, series):
        assert m["0008103E"]["Value"] == ["AX T2"]
        assert "00181030" not in m  # ProtocolName removed
        first, second = m[OAS]["Value"]
        assert first[MAS]["Value"][0]["0008103E"]["Value"] == ["AX"]
        assert first[MAS]["Value"][0]["00181030"]["Value"] == ["Head"]
        assert second[MAS]["Value"][0]["0008103E"]["Value"] == ["AX T1"]
        assert second["04000565"]["Value"] == ["COERCE"]
    # the same values again: nothing is rewritten
    r = httpx.post(url, json={"set": {"SeriesDescription": "AX T2"}})
    assert r.json() == {"studies": [study], "rewritten": 0, "unchanged": 2}


def test_patient_merge(served: tuple[RunningServer, ScpHandle], tmp_path: Path) -> None:
    srv, scp = served
    a = study_of("CT_small.dcm", 1, PatientID="A-1", PatientName="Roe^Ann")
    b = study_of("MR_small.dcm", 2, PatientID="B-2", PatientName="Roe^Anne")
    client = DICOMwebClient(url=srv.url)
    client.store_instances(a + b)
    cli(
        "update", "--data-dir", str(srv.settings.data_dir), "--patient", "B-2",
        "PatientID=A-1", "PatientName=Roe^Ann",
    )  # fmt: skip
    rows = client.search_for_studies(search_filters={"PatientID": "A-1"})
    assert {r["0020000D"]["Value"][0] for r in rows} == {
        a[0].StudyInstanceUID,
        b[0].StudyInstanceUID,
    }
    assert client.search_for_studies(search_filters={"PatientID": "B-2"}) == []
    patients = findscu(
        scp.port, ["QueryRetrieveLevel=STUDY", "PatientID=A-1", "PatientName"], tmp_path
    )
    assert sorted(str(p.PatientName) for p in patients) == ["Roe^Ann", "Roe^Ann"]
    for m in client.retrieve_study_metadata(b[0].StudyInstanceUID):
        assert original(m, "00100020") == ["B-2"]


def test_move_series_to_another_study(server: RunningServer, tmp_path: Path) -> None:
    data, tree = str(server.settings.data_dir), str(tmp_path / "tree")
    target = study_of("CT_small.dcm", 1, PatientName="Poe^Ed", AccessionNumber="ACC1")
    moved = study_of("CT_small.dcm", 2, PatientName="Poe^Edd", AccessionNumber="ACC9")
    client = DICOMwebClient(url=server.url)
    client.store_instances(target + moved)
    cli("static", "build", "--data-dir", data, "--out", tree)
    old_study, series = moved[0].StudyInstanceUID, moved[0].SeriesInstanceUID
    new_study = target[0].StudyInstanceUID
    r = httpx.post(
        f"{server.url}/webpacs/studies/{old_study}/series/{series}/update",
        json={"moveTo": new_study},
    )
    assert r.status_code == 200, r.text
    assert client.search_for_studies(search_filters={"StudyInstanceUID": old_study}) == []
    rows = client.search_for_series(new_study)
    assert {s["0020000E"]["Value"][0] for s in rows} == {series, target[0].SeriesInstanceUID}
    (st,) = client.search_for_studies(search_filters={"StudyInstanceUID": new_study})
    assert st["00201208"]["Value"] == [3]
    for ds in moved:
        got = client.retrieve_instance(new_study, series, ds.SOPInstanceUID)
        assert got.SOPInstanceUID == ds.SOPInstanceUID and got.SeriesInstanceUID == series
        assert got.StudyInstanceUID == new_study
        assert (str(got.PatientName), got.AccessionNumber) == ("Poe^Ed", "ACC1")
        kept = got.OriginalAttributesSequence[0].ModifiedAttributesSequence[0]
        assert (kept.StudyInstanceUID, kept.AccessionNumber) == (old_study, "ACC9")
    assert server.store.index.study_conflicts(new_study) == []
    cli("static", "build", "--incremental", "--data-dir", data, "--out", tree)
    assert not (Path(tree) / "studies" / old_study).exists()
    assert (Path(tree) / "studies" / new_study / "series" / series / "metadata.gz").exists()


def test_updates_from_files(server: RunningServer, tmp_path: Path) -> None:
    one = study_of("CT_small.dcm", 1)
    two = study_of("MR_small.dcm", 1)
    DICOMwebClient(url=server.url).store_instances(one + two)
    s1, s2 = one[0].StudyInstanceUID, two[0].StudyInstanceUID
    csv_file = tmp_path / "fix.csv"
    csv_file.write_text(
        f"study,PatientName,AccessionNumber\n{s1},Csv^One,A1\n{s2},,A2\n", encoding="utf-8"
    )
    cli("update", "--data-dir", str(server.settings.data_dir), "--file", str(csv_file))
    json_file = tmp_path / "fix.json5"
    json_file.write_text(
        f"[{{study: '{s2}', set: {{StudyDescription: 'Brain'}}}},"
        f" {{series: '{two[0].SeriesInstanceUID}', set: {{SeriesNumber: 7}}}}]  // two",
        encoding="utf-8",
    )
    cli("update", "--data-dir", str(server.settings.data_dir), "--file", str(json_file))
    client = DICOMwebClient(url=server.url)
    (r1,) = client.search_for_studies(search_filters={"StudyInstanceUID": s1})
    (r2,) = client.search_for_studies(search_filters={"StudyInstanceUID": s2})
    assert name(r1) == "Csv^One" and r1["00080050"]["Value"] == ["A1"]
    assert name(r2) == str(two[0].PatientName)  # an empty cell changes nothing
    assert r2["00080050"]["Value"] == ["A2"] and r2["00081030"]["Value"] == ["Brain"]
    (x,) = client.search_for_series(s2)
    assert x["00200011"]["Value"] == [7]
    (m,) = client.retrieve_study_metadata(s2)
    assert len(m[OAS]["Value"]) == 2  # one item per study unit of each file


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("", {"set": {"SOPInstanceUID": "1.2.3"}}, 400),
        ("", {"set": {"StudyDate": "2001-13-45"}}, 400),
        ("", {"set": {"Rows": "many"}}, 400),
        ("/series/{x}", {"set": {"PatientName": "X^Y"}}, 400),  # a study-level attribute
        ("", {"set": {"PixelData": "00"}}, 400),
        ("", {"set": {}}, 400),
        ("", {"moveTo": "1.2.3"}, 400),  # only a series moves
        ("", {"study": "1.2.3", "set": {"PatientName": "X"}}, 400),
        ("/series/1.2.3.4", {"set": {"SeriesDescription": "X"}}, 404),
    ],
)
def test_refused_updates(server: RunningServer, path: str, body: Any, status: int) -> None:
    (ds,) = study_of("CT_small.dcm", 1)
    DICOMwebClient(url=server.url).store_instances([ds])
    before = set(server.store.blobs.keys("objects/"))
    url = f"{server.url}/webpacs/studies/{ds.StudyInstanceUID}"
    url += path.format(x=ds.SeriesInstanceUID) + "/update"
    r = httpx.post(url, json=body)
    assert r.status_code == status, r.text
    assert set(server.store.blobs.keys("objects/")) == before
    stored = server.store.index.get(ds.SOPInstanceUID)
    assert stored is not None and stored.attributes["PatientName"] == str(ds.PatientName)


@pytest.mark.parametrize("backend", ["postgresql", "couchdb"])
def test_update_on_other_index_backends(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The update goes through the Index and Blobs Protocols only: the same on every index."""
    from webpacs.core.attributes import Level
    from webpacs.core.query import parse_qido
    from webpacs.ingest import ingest
    from webpacs.storage.fs import FileBlobs
    from webpacs.storage.registry import Store
    from webpacs.update import Change
    from webpacs.update import update as run

    if backend == "postgresql":
        pytest.importorskip("psycopg")
        from webpacs.storage.postgresql import PgIndex

        index: Any = PgIndex(request.getfixturevalue("postgresql_url"), pool_size=4)
    else:
        from webpacs.storage.couchdb import CouchIndex

        section = request.getfixturevalue("couchdb_section")
        index = CouchIndex(section["url"], section["database"], allow_scan=True)
    st = Store(index, FileBlobs(tmp_path / "blobs"))
    try:
        target = study_of("CT_small.dcm", 1, PatientID="T-1", PatientName="Tee^Ann")
        moved = study_of("CT_small.dcm", 2, PatientID="M-2", PatientName="Em^Bo")
        for ds in target + moved:
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            ingest(st.index, st.blobs, buf.getvalue())
        study, old = target[0].StudyInstanceUID, moved[0].StudyInstanceUID
        edit = modify.edit("PatientName", "Tee^Anne", Level.STUDY)
        assert run(st, [Change(Level.STUDY, study, (edit,))]).rewritten == 1
        run(st, [Change(Level.SERIES, moved[0].SeriesInstanceUID, move_to=study)])
        recs = st.index.instances(study)
        assert len(recs) == 3 and st.index.instances(old) == []
        assert {r.attributes["PatientName"] for r in recs} == {"Tee^Anne"}
        assert st.index.study_conflicts(study) == []
        assert len(list(st.blobs.keys("objects/"))) == 3
        query = parse_qido(Level.STUDY, [("StudyInstanceUID", study)])
        (row,) = st.index.search(query).rows
        assert name(row) == "Tee^Anne" and row["00201208"]["Value"] == [3]
    finally:
        st.close()


def test_move_series_to_a_new_study(server: RunningServer) -> None:
    two = study_of("CT_small.dcm", 2, PatientName="Split^Sam", AccessionNumber="ACC5")
    other = study_of("MR_small.dcm", 1)
    other[0].StudyInstanceUID = two[0].StudyInstanceUID
    for tag in modify.STUDY_LEVEL_TAGS:  # the same patient and study
        if tag in two[0]:
            other[0][tag] = copy.deepcopy(two[0][tag])
    client = DICOMwebClient(url=server.url)
    client.store_instances(two + other)
    new_study = generate_uid()
    cli(
        "update", "--data-dir", str(server.settings.data_dir),
        "--series", other[0].SeriesInstanceUID, "--move-to", new_study,
    )  # fmt: skip
    (row,) = client.search_for_studies(search_filters={"StudyInstanceUID": new_study})
    assert name(row) == "Split^Sam" and row["00080050"]["Value"] == ["ACC5"]
    assert row["00201208"]["Value"] == [1]
    (old,) = client.search_for_studies(search_filters={"StudyInstanceUID": two[0].StudyInstanceUID})
    assert old["00201208"]["Value"] == [2]
    (m,) = client.retrieve_study_metadata(new_study)
    assert original(m, "0020000D") == [two[0].StudyInstanceUID]
    r = CliRunner().invoke(
        main,
        ["update", "--data-dir", str(server.settings.data_dir), "--series",
         two[0].SeriesInstanceUID, "--move-to", "1.2.x"],
    )  # fmt: skip
    assert r.exit_code != 0 and "moveTo" in r.output


def test_labels_stay_through_updates_and_go_with_a_moved_series(server: RunningServer) -> None:
    """A study-level update puts the study's index entries back: its labels and its series'
    stay. A moved series takes its labels to its new study."""
    base = study_of("CT_small.dcm", 1, PatientName="Lee^Al")
    other = study_of("MR_small.dcm", 1, PatientName="Lee^Bo")
    client = DICOMwebClient(url=server.url)
    client.store_instances(base + other)
    study, series = base[0].StudyInstanceUID, base[0].SeriesInstanceUID
    labels = f"{server.url}/webpacs/studies/{study}"
    assert httpx.put(f"{labels}/labels/to-review").status_code == 201
    assert httpx.put(f"{labels}/series/{series}/labels/qc.ok").status_code == 201
    r = httpx.post(f"{labels}/update", json={"set": {"PatientName": "Lee^Alan"}})
    assert r.status_code == 200 and r.json()["rewritten"] == 1, r.text
    (row,) = client.search_for_studies(
        search_filters={"webpacsLabel": "to-review", "includefield": "webpacsLabels"}
    )
    assert row["00100010"]["Value"] == [{"Alphabetic": "Lee^Alan"}]
    assert row["webpacsLabels"] == ["to-review"]
    assert httpx.get(f"{labels}/series/{series}/labels").json() == ["qc.ok"]
    target = other[0].StudyInstanceUID
    r = httpx.post(f"{labels}/series/{series}/update", json={"moveTo": target})
    assert r.status_code == 200, r.text
    moved = f"{server.url}/webpacs/studies/{target}/series/{series}/labels"
    assert httpx.get(moved).json() == ["qc.ok"]
    (found,) = client.search_for_series(search_filters={"webpacsLabel": "qc.ok"})
    assert found["0020000D"]["Value"] == [target]
