"""``webpacs export --query``: a cohort out of a served store, as files, ZIP or static tree."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.conftest import RunningServer, data_file
from tests.serve_support import webpacs
from tests.static_support import ServerThread, ct_series
from webpacs.web.static_app import create_static_app


def _datasets(data: list[bytes]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(io.BytesIO(d)) for d in data]


@pytest.fixture
def cohort_store(server: RunningServer) -> tuple[RunningServer, list[pydicom.Dataset]]:
    """Two CT series in two studies (3 + 2 instances) and an MR instance, stored by STOW."""
    a, b = _datasets(ct_series(3)), _datasets(ct_series(2))
    for ds in b:
        ds.SeriesDescription = "second"
    mr = pydicom.dcmread(data_file("MR_small.dcm"))
    DICOMwebClient(server.url).store_instances([*a, *b, mr])
    return server, a + b


def _manifest(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_dry_run_counts(cohort_store: tuple[RunningServer, list[pydicom.Dataset]]) -> None:
    server, ct = cohort_store
    data = str(server.settings.data_dir)
    out = webpacs("export", "--data-dir", data, "--query", "Modality=CT", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("2 studies, 2 series, 5 instances")
    study = ct[0].StudyInstanceUID
    q = f"Modality=CT&StudyInstanceUID={study}&InstanceNumber=2"
    out = webpacs("export", "--data-dir", data, "-q", q, "--dry-run")
    assert out.stdout.startswith("1 studies, 1 series, 1 instances"), out.stderr
    out = webpacs("export", "--data-dir", data, "-q", "NoSuchKey=1", "--dry-run")
    assert out.returncode == 1 and "NoSuchKey" in out.stderr


def test_part10_files_and_manifest(
    cohort_store: tuple[RunningServer, list[pydicom.Dataset]], tmp_path: Path
) -> None:
    server, ct = cohort_store
    out_dir = tmp_path / "cohort"
    q = "Modality=CT&SeriesDescription=second"
    out = webpacs(
        "export", "--data-dir", str(server.settings.data_dir), "-q", q, "-o", str(out_dir)
    )
    assert out.returncode == 0, out.stderr
    rows = _manifest((out_dir / "manifest.csv").read_text())
    second = {d.SOPInstanceUID: d for d in ct if d.get("SeriesDescription") == "second"}
    assert {r["SOPInstanceUID"] for r in rows} == set(second)
    client = DICOMwebClient(server.url)
    for r in rows:
        assert r["Modality"] == "CT" and r["SeriesDescription"] == "second"
        assert r["PatientID"] == second[r["SOPInstanceUID"]].PatientID
        path = out_dir / r["Path"]
        assert (
            r["Path"]
            == f"{r['StudyInstanceUID']}/{r['SeriesInstanceUID']}/{r['SOPInstanceUID']}.dcm"
        )
        assert int(r["Size"]) == path.stat().st_size
        exported = pydicom.dcmread(path)
        served = client.retrieve_instance(
            r["StudyInstanceUID"], r["SeriesInstanceUID"], r["SOPInstanceUID"]
        )
        assert exported.SOPInstanceUID == served.SOPInstanceUID
        assert exported.PixelData == served.PixelData == second[r["SOPInstanceUID"]].PixelData
    assert sorted(p.name for p in out_dir.rglob("*.dcm")) == sorted(f"{s}.dcm" for s in second)


def test_zip(cohort_store: tuple[RunningServer, list[pydicom.Dataset]], tmp_path: Path) -> None:
    server, ct = cohort_store
    target = tmp_path / "cohort.zip"
    args = ["-q", "Modality=CT", "--zip", "-o", str(target)]
    out = webpacs("export", "--data-dir", str(server.settings.data_dir), *args)
    assert out.returncode == 0, out.stderr
    with zipfile.ZipFile(target) as z:
        rows = _manifest(z.read("manifest.csv").decode())
        assert sorted(z.namelist()) == sorted([*(r["Path"] for r in rows), "manifest.csv"])
        assert {r["SOPInstanceUID"] for r in rows} == {d.SOPInstanceUID for d in ct}
        first = pydicom.dcmread(io.BytesIO(z.read(rows[0]["Path"])))
    assert first.SOPInstanceUID == rows[0]["SOPInstanceUID"] and first.Modality == "CT"


def test_static_tree_of_the_cohort(
    cohort_store: tuple[RunningServer, list[pydicom.Dataset]], tmp_path: Path
) -> None:
    server, ct = cohort_store
    tree = tmp_path / "tree"
    study = ct[0].StudyInstanceUID
    two = "\\".join(d.SOPInstanceUID for d in ct[:2])  # UID list matching
    q = f"StudyInstanceUID={study}&SOPInstanceUID={two}"  # two of the study's three instances
    out = webpacs("export", "--data-dir", str(server.settings.data_dir), "-q", q, "--static",
                  "-o", str(tree))  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = _manifest((tree / "manifest.csv").read_text())
    assert len(rows) == 2
    with ServerThread(create_static_app(tree)) as st:
        client = DICOMwebClient(st.url)
        studies = client.search_for_studies()
        assert [s["0020000D"]["Value"][0] for s in studies] == [study]
        assert studies[0]["00201208"]["Value"] == [2]  # the cohort's count, not the store's
        series = ct[0].SeriesInstanceUID
        meta = client.retrieve_series_metadata(study, series)
        assert sorted(m["00080018"]["Value"][0] for m in meta) == sorted(
            r["SOPInstanceUID"] for r in rows
        )
        assert {m["00200013"]["Value"][0] for m in meta} == {1, 2}
