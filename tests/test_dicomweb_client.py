"""End to end: the dicomweb-client package (API and CLI) against a real webpacs server.

Returned values are checked against what pydicom reads from the original files.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.encaps import generate_frames

from tests.conftest import RunningServer, data_file
from webpacs.core.media import UNCOMPRESSED, frame_media_type

# some of pydicom's test files hold deliberately invalid values; clients warn when parsing them
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")

#: One file per transfer syntax / shape; SOP Instance UIDs are distinct.
FILES = [
    "CT_small.dcm",  # explicit VR LE, 16-bit
    "liver_expb.dcm",  # explicit VR big endian, multi-frame
    "emri_small.dcm",  # multi-frame native
    "SC_rgb_rle_2frame.dcm",  # RLE, 2 frames
    "JPEG2000.dcm",  # JPEG 2000
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS
    "color3d_jpeg_baseline.dcm",  # JPEG baseline, 120 frames
    "image_dfl.dcm",  # deflated
    "ExplVR_LitEndNoMeta.dcm",  # no File Meta Information
    "rtdose.dcm",  # multi-frame RT dose
    "test-SR.dcm",  # no pixel data
    "waveform_ecg.dcm",  # waveform bulk data
    "examples_palette.dcm",  # palette LUT bulk data
]


def read(name: str) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(data_file(name), force=True)


def original_frames(ds: pydicom.Dataset) -> list[bytes]:
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if ds["PixelData"].is_undefined_length:
        return list(generate_frames(ds.PixelData, number_of_frames=n))
    data = ds.PixelData
    if not ds.original_encoding[1] and ds.BitsAllocated > 8:  # big endian -> little
        data = (
            np.frombuffer(data, f">u{ds.BitsAllocated // 8}")
            .astype(f"<u{ds.BitsAllocated // 8}")
            .tobytes()
        )
    size = len(data) // n
    return [data[i * size : (i + 1) * size] for i in range(n)]


@pytest.fixture(scope="module")
def loaded(module_server: RunningServer) -> tuple[RunningServer, DICOMwebClient, dict[str, Any]]:
    client = DICOMwebClient(url=module_server.url)
    datasets = {name: read(name) for name in FILES}
    uids = [ds.SOPInstanceUID for ds in datasets.values()]
    assert len(set(uids)) == len(uids)
    result = client.store_instances(list(datasets.values()))
    assert len(result.ReferencedSOPSequence) == len(FILES)
    assert "FailedSOPSequence" not in result
    return module_server, client, datasets


@pytest.mark.parametrize("name", FILES)
def test_metadata_equals_pydicom_json(loaded: Any, name: str) -> None:
    _, client, datasets = loaded
    ds = datasets[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ds.to_json_dict(
            bulk_data_threshold=1024, bulk_data_element_handler=lambda e: "x"
        )
    got = client.retrieve_instance_metadata(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    series = client.retrieve_series_metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert got in series
    compare_json(got, expected, ds, client)


def compare_json(got: dict[str, Any], expected: dict[str, Any], ds: Any, client: Any) -> None:
    """DICOM JSON equality, where bulk data URIs must serve the original value bytes."""
    assert set(got) == set(expected)
    for key, value in expected.items():
        elem = ds[int(key, 16)]
        if "BulkDataURI" in got[key]:
            assert "BulkDataURI" in value or "InlineBinary" in value, key
            data = client.retrieve_bulkdata(got[key]["BulkDataURI"])
            if elem.tag == 0x7FE00010:
                assert b"".join(data) == b"".join(original_frames(ds))
            elif ds.original_encoding[1] or elem.VR != "OW":
                assert data[0] == elem.value, key
        elif value.get("vr") == "SQ" and "Value" in value:
            assert len(got[key]["Value"]) == len(value["Value"]), key
            for g, e, item in zip(got[key]["Value"], value["Value"], elem.value, strict=True):
                compare_json(g, e, item, client)
        else:
            assert got[key] == value, key


@pytest.mark.parametrize("name", FILES)
def test_frames_equal_original(loaded: Any, name: str) -> None:
    server, client, datasets = loaded
    ds = datasets[name]
    if "PixelData" not in ds:
        url = (
            f"{server.url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}/frames/1"
        )
        assert requests.get(url, timeout=10).status_code == 404
        return
    frames = original_frames(ds)
    numbers = sorted({1, len(frames)})
    got = client.retrieve_instance_frames(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, numbers
    )
    assert got == [frames[n - 1] for n in numbers]


@pytest.mark.parametrize("name", FILES)
def test_retrieve_instance(loaded: Any, name: str) -> None:
    server, client, datasets = loaded
    ds = datasets[name]
    got = client.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert got == ds  # every element equal
    # the bytes served are the bytes stored, and for a complete Part 10 file, the bytes sent
    rec = server.store.index.get(ds.SOPInstanceUID)
    stored = server.store.blobs.get(rec.blob_key)
    raw = requests.get(
        f"{server.url}/wado",
        params={
            "requestType": "WADO",
            "studyUID": ds.StudyInstanceUID,
            "seriesUID": ds.SeriesInstanceUID,
            "objectUID": ds.SOPInstanceUID,
            "contentType": "application/dicom",
        },
        timeout=30,
    )
    assert raw.status_code == 200
    assert raw.content == stored
    original = data_file(name).read_bytes()
    if original[128:132] == b"DICM" and ds.file_meta.TransferSyntaxUID != "1.2.840.10008.1.2.1.99":
        assert stored == original


def test_retrieve_study_and_series(loaded: Any) -> None:
    _, client, datasets = loaded
    ds = datasets["CT_small.dcm"]
    study = client.retrieve_study(ds.StudyInstanceUID)
    series = client.retrieve_series(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert [d.SOPInstanceUID for d in study] == [ds.SOPInstanceUID]
    assert series == [ds]
    meta = client.retrieve_study_metadata(ds.StudyInstanceUID)
    assert [m["00080018"]["Value"][0] for m in meta] == [ds.SOPInstanceUID]


def test_search_all_levels(loaded: Any) -> None:
    _, client, datasets = loaded
    studies = client.search_for_studies()
    assert {s["0020000D"]["Value"][0] for s in studies} == {
        d.StudyInstanceUID for d in datasets.values()
    }
    ct = datasets["CT_small.dcm"]
    hits = client.search_for_studies(search_filters={"PatientID": ct.PatientID})
    assert [h["0020000D"]["Value"][0] for h in hits] == [ct.StudyInstanceUID]
    assert hits[0]["00080061"]["Value"] == ["CT"]
    assert hits[0]["00201208"]["Value"] == [1]
    assert hits[0]["00081190"]["Value"][0].endswith(f"/studies/{ct.StudyInstanceUID}")
    series = client.search_for_series(search_filters={"Modality": "MR"})
    mr = {d.SeriesInstanceUID for d in datasets.values() if d.get("Modality") == "MR"}
    assert {s["0020000E"]["Value"][0] for s in series} == mr
    assert all(s["00201209"]["Value"][0] >= 1 for s in series)
    inst = client.search_for_instances(
        study_instance_uid=ct.StudyInstanceUID, series_instance_uid=ct.SeriesInstanceUID
    )
    assert [i["00080018"]["Value"][0] for i in inst] == [ct.SOPInstanceUID]
    every = client.search_for_instances()
    assert len(every) == len(FILES)
    fuzzy = client.search_for_studies(
        search_filters={"PatientName": ct.PatientName.family_name.lower()}, fuzzymatching=True
    )
    assert ct.StudyInstanceUID in {h["0020000D"]["Value"][0] for h in fuzzy}
    page = client.search_for_instances(limit=3, offset=2)
    assert [p["00080018"]["Value"][0] for p in page] == [
        e["00080018"]["Value"][0] for e in every[2:5]
    ]
    with_field = client.search_for_studies(
        search_filters={"PatientID": ct.PatientID}, fields=["SeriesDescription", "00180050"]
    )
    assert with_field[0]["00180050"]["Value"] == [float(ct.SliceThickness)]


def test_limit_sets_warning_header(loaded: Any) -> None:
    server, _, _ = loaded
    r = requests.get(f"{server.url}/instances", params={"limit": 2}, timeout=10)
    assert r.status_code == 200
    assert len(r.json()) == 2
    assert "Warning" in r.headers and "limit" in r.headers["Warning"]
    r = requests.get(f"{server.url}/instances", params={"limit": 100}, timeout=10)
    assert "Warning" not in r.headers


def test_series_metadata_gzip_and_etag(loaded: Any) -> None:
    server, _, datasets = loaded
    ds = datasets["emri_small.dcm"]
    url = f"{server.url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/metadata"
    gz = requests.get(url, headers={"Accept-Encoding": "gzip"}, timeout=10)
    plain = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=10)
    assert gz.headers["Content-Encoding"] == "gzip"
    assert "Content-Encoding" not in plain.headers
    assert gz.json() == plain.json()
    etag = gz.headers["ETag"]
    again = requests.get(url, headers={"If-None-Match": etag}, timeout=10)
    assert again.status_code == 304


def test_large_metadata_is_decompressed_a_chunk_at_a_time(
    loaded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A document over ``WHOLE_UP_TO`` (a study of thousands of instances) reaches an
    identity client in chunks of ``CHUNK``, not decompressed whole in memory first; what
    it gets is the gzip'd document's bytes, and ETag and 304 work as for the others."""
    from webpacs.documents import metadata as documents

    server, _, datasets = loaded
    ds = datasets["emri_small.dcm"]
    study = f"{server.url}/studies/{ds.StudyInstanceUID}"
    urls = [f"{study}/metadata", f"{study}/series/{ds.SeriesInstanceUID}/metadata"]
    small = [requests.get(u, headers={"Accept-Encoding": "identity"}, timeout=10) for u in urls]
    assert all("Content-Length" in r.headers for r in small)  # whole, under the threshold
    monkeypatch.setattr(documents, "WHOLE_UP_TO", 1000)
    monkeypatch.setattr(documents, "CHUNK", 4096)
    for url, before in zip(urls, small, strict=True):
        gz = requests.get(url, headers={"Accept-Encoding": "gzip"}, stream=True, timeout=10)
        zipped = gz.raw.read()
        assert gz.headers["Content-Encoding"] == "gzip"
        plain = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=10)
        assert plain.status_code == 200
        assert plain.headers.get("Transfer-Encoding") == "chunked"
        assert "Content-Encoding" not in plain.headers and "Content-Length" not in plain.headers
        assert len(plain.content) > 4096 and plain.content == gzip.decompress(zipped)
        assert plain.content == before.content and plain.json()
        assert plain.headers["ETag"] == gz.headers["ETag"]
        again = requests.get(url, headers={"If-None-Match": plain.headers["ETag"]}, timeout=10)
        assert again.status_code == 304
    chunks = list(documents.gunzipped(zipped, 4096))
    assert all(len(c) <= 4096 for c in chunks) and len(chunks) > 1
    assert documents.plain_size(zipped) == len(b"".join(chunks))


def instance_args(ds: pydicom.Dataset) -> list[str]:
    """``retrieve instances --study S --series X --instance I`` for the CLI."""
    return [
        "retrieve",
        "instances",
        "--study",
        ds.StudyInstanceUID,
        "--series",
        ds.SeriesInstanceUID,
        "--instance",
        ds.SOPInstanceUID,
    ]


def cli(server: RunningServer, *args: str, cwd: Path | None = None) -> str:
    exe = Path(sys.executable).with_name("dicomweb_client")
    out = subprocess.run(
        [str(exe), "--url", server.url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_dicomweb_client_cli(tmp_path: Path, server: RunningServer) -> None:
    path = data_file("MR_small.dcm")
    ds = read("MR_small.dcm")
    cli(server, "store", "instances", str(path))
    found = json.loads(cli(server, "search", "studies", "--filter", f"PatientID={ds.PatientID}"))
    assert [f["0020000D"]["Value"][0] for f in found] == [ds.StudyInstanceUID]
    series = json.loads(cli(server, "search", "series", "--filter", "Modality=MR"))
    assert series[0]["0020000E"]["Value"][0] == ds.SeriesInstanceUID
    meta = cli(
        server,
        *instance_args(ds),
        "metadata",
    )
    assert ds.SOPInstanceUID in meta and "BulkDataURI" in meta
    cli(
        server,
        *instance_args(ds),
        "full",
        "--save",
        "--output-dir",
        str(tmp_path),
    )
    saved = list(tmp_path.glob("*.dcm"))
    assert len(saved) == 1
    assert pydicom.dcmread(saved[0]) == ds
    instances = json.loads(
        cli(server, "search", "instances", "--filter", f"SeriesInstanceUID={ds.SeriesInstanceUID}")
    )
    assert [i["00080018"]["Value"][0] for i in instances] == [ds.SOPInstanceUID]
    study_meta = json.loads(
        cli(server, "retrieve", "studies", "--study", ds.StudyInstanceUID, "metadata")
    )
    assert study_meta[0]["00080018"]["Value"] == [ds.SOPInstanceUID]
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    cli(
        server,
        *instance_args(ds),
        "frames",
        "--numbers",
        "1",
        "--media-type",
        "application/octet-stream",
        "--save",
        "--output-dir",
        str(frames_dir),
    )
    saved_frames = [p for p in frames_dir.iterdir() if p.is_file()]
    assert [p.read_bytes() for p in saved_frames] == [ds.PixelData]
    # (the CLI's `retrieve bulkdata` fails inside dicomweb-client 0.61 itself, with
    # "'Namespace' object has no attribute 'media_type'"; bulk data is covered through the API)


def test_study_metadata_gzip_and_etag(loaded: Any) -> None:
    server, client, datasets = loaded
    ds = datasets["CT_small.dcm"]
    url = f"{server.url}/studies/{ds.StudyInstanceUID}/metadata"
    gz = requests.get(url, headers={"Accept-Encoding": "gzip"}, timeout=10)
    plain = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=10)
    assert gz.headers["Content-Encoding"] == "gzip"
    assert gz.json() == plain.json() == client.retrieve_study_metadata(ds.StudyInstanceUID)
    assert (
        requests.get(url, headers={"If-None-Match": gz.headers["ETag"]}, timeout=10).status_code
        == 304
    )


#: What cornerstone's dicom-image-loader (OHIF's) sends for every frame, whatever is stored.
LOADER_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"


def multipart_parts(response: requests.Response) -> list[tuple[str, bytes]]:
    """(media type; transfer-syntax, body) of each part, parsed by the standard library."""
    import email.parser
    import email.policy

    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + response.content)
    assert msg.is_multipart()
    return [
        (
            f"{p.get_content_type()}; transfer-syntax={p.get_param('transfer-syntax')}",
            p.get_payload(decode=True),
        )
        for p in msg.iter_parts()
    ]


@pytest.mark.parametrize("name", [n for n in FILES if "PixelData" in read(n)])
def test_frames_as_stored_for_any_type(loaded: Any, name: str) -> None:
    """transfer-syntax=* serves the stored frames whatever ``type`` says (PS3.18 8.7.3.5.2);
    each part names its real media type and transfer syntax, which the image loader reads."""
    server, client, datasets = loaded
    ds = datasets[name]
    frames = original_frames(ds)
    url = (
        f"{server.url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/frames/1"
    )
    r = requests.get(url, headers={"Accept": LOADER_ACCEPT}, timeout=30)
    assert r.status_code == 200, r.text
    ((ctype, body),) = multipart_parts(r)
    stored_ts = server.store.index.get(ds.SOPInstanceUID).transfer_syntax
    expected_ts = "1.2.840.10008.1.2.1" if stored_ts in UNCOMPRESSED else stored_ts
    assert ctype == f"{frame_media_type(expected_ts)}; transfer-syntax={expected_ts}"
    assert body == frames[0]
    # and through dicomweb-client, asking the same way
    got = client.retrieve_instance_frames(
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
        [len(frames)],
        media_types=(("application/octet-stream", "*"),),
    )
    assert got == [frames[-1]]


def test_instances_and_series_as_stored_for_any_type(loaded: Any) -> None:
    """Instance, series and study retrieve with transfer-syntax=* send what is stored."""
    server, _, datasets = loaded
    ds = datasets["JPEG2000.dcm"]
    base = f"{server.url}/studies/{ds.StudyInstanceUID}"
    for url in (
        base,
        f"{base}/series/{ds.SeriesInstanceUID}",
        f"{base}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
    ):
        r = requests.get(url, headers={"Accept": LOADER_ACCEPT}, timeout=30)
        assert r.status_code == 200, (url, r.text)
        parts = multipart_parts(r)
        assert parts, url
        for ctype, body in parts:
            got = pydicom.dcmread(io.BytesIO(body))
            assert ctype == f"application/dicom; transfer-syntax={got.file_meta.TransferSyntaxUID}"
        sops = [pydicom.dcmread(io.BytesIO(b)).SOPInstanceUID for _, b in parts]
        assert ds.SOPInstanceUID in sops
