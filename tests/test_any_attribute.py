"""Any attribute as a query key (issue 13 points 3 and 4), end to end.

dicomweb-client's ``search_for_*`` with extension keys in ``search_filters`` against a real
server holding real sample series (pydicom's), the README's research queries; 400s with
reasons; and indexes written before the attribute values were indexed (an SQLite data
directory, a PostgreSQL schema at version 1, CouchDB documents of design 5) get them on
opening.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pydicom.data
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.conftest import RunningServer, data_file
from webpacs.core.attributes import Level
from webpacs.core.query import parse_qido
from webpacs.errors import ConfigError, NotImplementedFeature
from webpacs.ingest import ingest
from webpacs.storage.fs import FileBlobs

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")

DICOMDIR_TESTS = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests"
#: Sample series of `webpacs import --samples` (CT at 0.488 mm, MR at 1.2 mm and 1.5 T, ...)
SERIES_DIRS = ["77654033/CT2", "98892001/CT5N", "98892003/MR700", "98892003/MR1"]
FILES = ["CT_small.dcm", "MR_small.dcm", "eCT_Supplemental.dcm", "emri_small.dcm"]


def _read(path: Path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


@pytest.fixture(scope="module")
def stored(module_server: RunningServer) -> list[pydicom.Dataset]:
    paths = [p for d in SERIES_DIRS for p in sorted((DICOMDIR_TESTS / d).iterdir())]
    datasets = [_read(p) for p in paths] + [_read(data_file(n)) for n in FILES]
    DICOMwebClient(module_server.url).store_instances(datasets)
    return datasets


def _num(ds: pydicom.Dataset, kw: str) -> list[float]:
    v = ds.get(kw)
    if v is None or v == "":
        return []
    return [float(x) for x in (v if isinstance(v, pydicom.multival.MultiValue) else [v])]


def test_search_for_instances_by_pixel_spacing(
    module_server: RunningServer, stored: list[pydicom.Dataset]
) -> None:
    """The README's "CTs with 0.5 mm pixel spacing", adapted to the samples' 0.488281 mm."""
    client = DICOMwebClient(module_server.url)
    want = {d.SOPInstanceUID for d in stored
            if d.Modality == "CT" and _num(d, "PixelSpacing") == [0.488281, 0.488281]}  # fmt: skip
    assert len(want) >= 2
    found = client.search_for_instances(
        search_filters={"Modality": "CT", "PixelSpacing": "0.488281\\0.488281"}
    )
    assert {r["00080018"]["Value"][0] for r in found} == want
    found = client.search_for_instances(search_filters={"PixelSpacing": "0.48-0.5"})
    near = {
        d.SOPInstanceUID for d in stored if any(0.48 <= v <= 0.5 for v in _num(d, "PixelSpacing"))
    }
    assert {r["00080018"]["Value"][0] for r in found} == near
    studies = client.search_for_studies(
        search_filters={"ModalitiesInStudy": "CT", "PixelSpacing": "0.488281\\0.488281"}
    )
    assert {r["0020000D"]["Value"][0] for r in studies} == {
        d.StudyInstanceUID for d in stored if d.SOPInstanceUID in want
    }


def test_search_for_series_by_thickness_and_field_strength(
    module_server: RunningServer, stored: list[pydicom.Dataset]
) -> None:
    """The README's "MR series with SliceThickness between 0.9 and 1.1 and
    MagneticFieldStrength 3", adapted to the samples (1.1-1.3 mm at 1.5 T)."""
    client = DICOMwebClient(module_server.url)
    want = {d.SeriesInstanceUID for d in stored
            if d.Modality == "MR" and any(1.1 <= v <= 1.3 for v in _num(d, "SliceThickness"))
            and _num(d, "MagneticFieldStrength") == [1.5]}  # fmt: skip
    assert len(want) == 1
    found = client.search_for_series(
        search_filters={
            "Modality": "MR",
            "SliceThickness": "1.1-1.3",
            "MagneticFieldStrength": "1.5",
        }
    )
    assert {r["0020000E"]["Value"][0] for r in found} == want
    found = client.search_for_series(
        search_filters={"Modality": "MR", "SliceThickness": "1.1-1.3", "MagneticFieldStrength": "3"}
    )
    assert found == []


def test_search_by_sequence_path(
    module_server: RunningServer, stored: list[pydicom.Dataset]
) -> None:
    client = DICOMwebClient(module_server.url)
    (ect,) = [d for d in stored if "SharedFunctionalGroupsSequence" in d]
    for key in (
        "00289110.00280030",
        "SharedFunctionalGroupsSequence.PixelMeasuresSequence.PixelSpacing",
    ):
        found = client.search_for_studies(search_filters={key: "0.388672\\0.388672"})
        assert [r["0020000D"]["Value"][0] for r in found] == [ect.StudyInstanceUID], key
    assert client.search_for_instances(search_filters={"PixelSpacing": "0.388672"}) == []


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("SliceThickness=thin", "SliceThickness: invalid number or range 'thin'"),
        ("SliceThickness=2-1", "lower end after its upper end"),
        ("SliceThicknes=1", "unknown attribute 'SliceThicknes'"),
        ("PixelMeasuresSequence=1", "a sequence cannot be matched"),
        ("Rows.Columns=1", "Rows is not a sequence"),
        ("00091010=1", "private attribute"),
    ],
)
def test_bad_keys_and_values_are_400_with_a_reason(
    module_server: RunningServer, query: str, reason: str
) -> None:
    r = httpx.get(f"{module_server.url}/instances?{query}", timeout=30)
    assert r.status_code == 400 and reason in r.json()["error"], r.text


# --------------------------------------------------------------------------- migrations


def _instance(tmp_path: Path) -> tuple[Any, FileBlobs]:
    return data_file("CT_small.dcm").read_bytes(), FileBlobs(tmp_path / "blobs")


def _hits(index: Any) -> int:
    return len(index.search(parse_qido(Level.STUDY, [("SliceThickness", "4.9-5.1")])).rows)


def test_sqlite_index_of_an_earlier_release_is_filled(tmp_path: Path) -> None:
    from webpacs.storage.sqlite import SqliteIndex

    data, blobs = _instance(tmp_path)
    idx = SqliteIndex(tmp_path / "index.sqlite3")
    ingest(idx, blobs, data)
    conn = idx._conn()  # as the release before the attribute values left it: version 1
    conn.executescript(
        "DROP TABLE attr_values; DROP TABLE attr_paths; DROP TABLE attr_owners;"
        " PRAGMA user_version = 1;"
    )
    idx.close()
    idx = SqliteIndex(tmp_path / "index.sqlite3")
    try:
        assert _hits(idx) == 1
        assert idx._conn().execute("PRAGMA user_version").fetchone()[0] >= 1
    finally:
        idx.close()
    conn = __import__("sqlite3").connect(tmp_path / "index.sqlite3")
    conn.execute("PRAGMA user_version = 999")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError, match="webpacs migrate"):
        SqliteIndex(tmp_path / "index.sqlite3")


def test_postgresql_schema_2_is_migrated(postgresql_url: str, tmp_path: Path) -> None:
    from webpacs.storage.postgresql import PgIndex, schema

    data, blobs = _instance(tmp_path)
    idx = PgIndex(postgresql_url)
    ingest(idx, blobs, data)
    with idx.pool.connection() as conn:  # as schema version 2 had it
        conn.execute("DROP TABLE attr_values, attr_paths, attr_owners")
        conn.execute("UPDATE webpacs_schema SET version = 2")
    idx.close()
    idx = PgIndex(postgresql_url)
    try:
        assert _hits(idx) == 1
        with idx.pool.connection() as conn:
            assert conn.execute("SELECT version FROM webpacs_schema").fetchone()[0] == (
                schema.SCHEMA_VERSION
            )
    finally:
        idx.close()


def test_couchdb_documents_of_design_5_get_their_values(
    couchdb_section: dict[str, Any], tmp_path: Path
) -> None:
    from webpacs.storage.couchdb import CouchIndex, design

    data, blobs = _instance(tmp_path)
    idx = CouchIndex(couchdb_section["url"], couchdb_section["database"])
    r = ingest(idx, blobs, data)
    c = idx.client
    _, doc = c.call("GET", c.doc_path(r.sop_uid))
    del doc["x"]  # as design 5 wrote it
    c.call("PUT", c.doc_path(r.sop_uid), body=doc)
    _, ddoc = c.call("GET", c.doc_path(design.DESIGN_ID))
    ddoc["version"] = 5
    c.call("PUT", c.doc_path(design.DESIGN_ID), body=ddoc)
    idx.close()
    idx = CouchIndex(couchdb_section["url"], couchdb_section["database"])
    try:
        assert _hits(idx) == 1
        with pytest.raises(NotImplementedFeature, match="allowScan"):  # a scan of the values
            idx.search(parse_qido(Level.INSTANCE, [("ProtocolName", "*head")]))
        idx.search(parse_qido(Level.INSTANCE, [("ProtocolName", "head*")]))  # a key range
    finally:
        idx.close()
