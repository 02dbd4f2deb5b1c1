"""A study or series as a ZIP of its Part 10 files: ``Accept: application/zip`` or
``?accept=application/zip`` on the retrieve resource, streamed, read back with httpx and
Python's zipfile, and compared with the files that were stored."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, data_file
from webpacs.web.archive import wants_zip

ZIP = "application/zip"


def _stow(url: str, files: list[Path]) -> None:
    parts = b"".join(
        b"--bnd\r\nContent-Type: application/dicom\r\n\r\n" + f.read_bytes() + b"\r\n"
        for f in files
    )
    r = httpx.post(
        f"{url}/studies",
        content=parts + b"--bnd--\r\n",
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=bnd'},
        timeout=60,
    )
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def study(module_server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A study of two series (CT x2, MR x1) made from pydicom's test files, stored."""
    out = tmp_path_factory.mktemp("zipsrc")
    study_uid = generate_uid()
    series = {"ct": generate_uid(), "mr": generate_uid()}
    files: dict[str, Path] = {}
    for i, (name, kind) in enumerate(
        [("CT_small.dcm", "ct"), ("CT_small.dcm", "ct"), ("MR_small.dcm", "mr")]
    ):
        ds = pydicom.dcmread(data_file(name))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series[kind]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PatientID, ds.StudyDescription = "ZIP-1", "Zip/test: à"
        ds.SeriesNumber, ds.InstanceNumber = (1 if kind == "ct" else 2), i + 1
        path = out / f"{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files[str(ds.SOPInstanceUID)] = path
    _stow(module_server.url, list(files.values()))
    return {"study": study_uid, "series": series, "files": files}


def _unzip(body: bytes) -> dict[str, pydicom.Dataset]:
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        assert z.testzip() is None
        return {name: pydicom.dcmread(io.BytesIO(z.read(name))) for name in z.namelist()}


def _same_as_stored(got: dict[str, pydicom.Dataset], files: dict[str, Path]) -> None:
    by_sop = {str(ds.SOPInstanceUID): ds for ds in got.values()}
    assert set(by_sop) == set(files)
    for sop, path in files.items():
        original = pydicom.dcmread(path)
        assert by_sop[sop] == original  # every element, pixel data included
        assert by_sop[sop].file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID


def test_study_zip_by_accept_header(module_server: RunningServer, study: dict) -> None:
    url = f"{module_server.url}/studies/{study['study']}"
    with httpx.stream("GET", url, headers={"Accept": ZIP}, timeout=60) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"] == ZIP
        assert r.headers["content-disposition"].startswith("attachment; filename=")
        body = r.read()
    assert int(r.headers["content-length"]) == len(body)
    got = _unzip(body)
    _same_as_stored(got, study["files"])
    names = sorted(got)
    top = {n.split("/")[0] for n in names}
    assert len(top) == 1 and top.pop().startswith("ZIP-1 ")  # PatientID, date, description
    folders = sorted({n.split("/")[1] for n in names})
    assert folders[0].startswith("S001 CT") and folders[1].startswith("S002 MR"), folders
    assert [n.rsplit("/", 1)[1] for n in names] == ["IM00001.dcm", "IM00002.dcm", "IM00001.dcm"]


def test_series_zip_by_query_parameter(module_server: RunningServer, study: dict) -> None:
    """A browser link: ``?accept=application/zip`` overrides the browser's Accept."""
    url = f"{module_server.url}/studies/{study['study']}/series/{study['series']['mr']}"
    r = httpx.get(url, params={"accept": ZIP}, headers={"Accept": "text/html,*/*"}, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == ZIP
    mr = {k: v for k, v in study["files"].items() if pydicom.dcmread(v).Modality == "MR"}
    _same_as_stored(_unzip(r.content), mr)


def test_multipart_stays_the_default(module_server: RunningServer, study: dict) -> None:
    url = f"{module_server.url}/studies/{study['study']}"
    for accept in ("*/*", f'multipart/related; type="application/dicom", {ZIP};q=0.5'):
        r = httpx.get(url, headers={"Accept": accept}, timeout=60)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("multipart/related"), accept
    missing = httpx.get(f"{module_server.url}/studies/1.2.3.999", headers={"Accept": ZIP})
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("accept", "query", "zip_"),
    [
        (ZIP, None, True),
        (None, ZIP, True),
        ("*/*", None, False),
        (f"{ZIP};q=0.4, */*;q=0.5", None, False),
        (f"multipart/related; type=application/dicom;q=0.9, {ZIP}", None, True),
        (ZIP, "multipart/related; type=application/dicom", False),
        (f"{ZIP};q=0", None, False),
        (None, None, False),
    ],
)
def test_wants_zip(accept: str | None, query: str | None, zip_: bool) -> None:
    assert wants_zip(accept, query) is zip_
