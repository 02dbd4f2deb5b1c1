"""Thumbnail resources at study, series, instance and frame level, and their derived
documents: built once per series version, rebuilt (and the old one deleted) when the
series changes, pre-built by the deriver."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, start_server
from tests.rendering_support import decode, mean_abs_error, read, reference
from webpacs.documents.deriver import Deriver

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")


def ct_instance(series_uid: str, series_number: int, number: int) -> pydicom.Dataset:
    """CT_small with new SOP and series UIDs, its pixels shifted so each instance differs."""
    ds = read("CT_small.dcm")
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = number
    ds.PixelData = np.roll(ds.pixel_array, 20 * number, axis=1).tobytes()
    return ds


def expected_thumbnail(ds: pydicom.Dataset, index: int = 0) -> np.ndarray:
    ref = Image.fromarray(np.rint(reference(ds, index)).astype(np.uint8))
    ref.thumbnail((128, 128), Image.Resampling.LANCZOS)  # 128 pixels on the long side
    if ref.size != (128, 128):
        ref = ref.resize((128, 128), Image.Resampling.LANCZOS)
    return np.asarray(ref, dtype=float)


def get(address: str, accept: str | None = None, **params: Any) -> requests.Response:
    r = requests.get(
        address, headers={"Accept": accept} if accept else {}, params=params, timeout=60
    )
    assert r.status_code == 200, r.text
    return r


def thumb_keys(srv: RunningServer, study: str, series: str) -> list[str]:
    keys = srv.store.blobs.keys(f"derived/{study}/{series}/")
    return [k for k in keys if k.endswith("-thumbnail.jpg")]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server without the background deriver: the tests say when thumbnails are built."""
    srv = start_server(tmp_path / "data", server={"deriveInterval": 0})
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def study(server: RunningServer) -> dict[str, Any]:
    """A study: an SR series (number 0, no pixels), series B (number 1, one instance) and
    series A (number 2, instances 1..3), stored out of order."""
    a, b = generate_uid(), generate_uid()
    series_a = [ct_instance(a, 2, n) for n in (3, 1, 2)]
    series_b = [ct_instance(b, 1, 7)]
    sr = read("test-SR.dcm")
    sr.StudyInstanceUID = series_a[0].StudyInstanceUID
    sr.SeriesNumber = 0
    client = DICOMwebClient(url=server.url)
    result = client.store_instances([*series_a, sr, *series_b])
    assert "FailedSOPSequence" not in result
    by_number = {int(ds.InstanceNumber): ds for ds in series_a}
    return {"study": series_a[0].StudyInstanceUID, "a": a, "b": b, "A": by_number, "B": series_b[0]}


def test_thumbnails_at_every_level(server: RunningServer, study: dict[str, Any]) -> None:
    s, a, b = study["study"], study["a"], study["b"]
    middle = study["A"][2]
    series_url = f"{server.url}/studies/{s}/series/{a}"
    series = get(f"{series_url}/thumbnail")
    assert series.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(series.content)).size == (128, 128)
    assert mean_abs_error(decode(series.content), expected_thumbnail(middle)) < 3
    instance_url = f"{series_url}/instances/{middle.SOPInstanceUID}"
    assert get(f"{instance_url}/thumbnail").content == series.content
    assert get(f"{instance_url}/frames/1/thumbnail").content == series.content
    first = get(f"{series_url}/instances/{study['A'][1].SOPInstanceUID}/thumbnail")
    assert first.content != series.content
    # the study's: its first series by SeriesNumber that has pixel data (B, not the SR)
    study_thumb = get(f"{server.url}/studies/{s}/thumbnail")
    assert study_thumb.content == get(f"{server.url}/studies/{s}/series/{b}/thumbnail").content
    assert study_thumb.content != series.content
    assert mean_abs_error(decode(study_thumb.content), expected_thumbnail(study["B"])) < 3


def test_series_thumbnail_is_a_derived_document(
    server: RunningServer, study: dict[str, Any]
) -> None:
    s, a = study["study"], study["a"]
    url = f"{server.url}/studies/{s}/series/{a}/thumbnail"
    assert thumb_keys(server, s, a) == []
    before = get(url)
    [key] = thumb_keys(server, s, a)
    assert server.store.blobs.get(key) == before.content  # served from the blob store
    assert get(url).content == before.content
    etag = before.headers["etag"]
    assert requests.get(url, headers={"If-None-Match": etag}, timeout=30).status_code == 304
    # the series changes: instances 4 and 5 make instance 3 the middle one
    more = [ct_instance(a, 2, n) for n in (4, 5)]
    for ds in more:
        ds.StudyInstanceUID = s
    DICOMwebClient(url=server.url).store_instances(more)
    after = get(url)
    assert after.content != before.content
    assert after.headers["etag"] != etag
    assert mean_abs_error(decode(after.content), expected_thumbnail(study["A"][3])) < 3
    [new_key] = thumb_keys(server, s, a)
    assert new_key != key  # the older version's thumbnail is gone


def test_thumbnail_parameters(server: RunningServer, study: dict[str, Any]) -> None:
    s, a = study["study"], study["a"]
    url = f"{server.url}/studies/{s}/series/{a}/thumbnail"
    png = get(url, "image/png")
    assert png.headers["content-type"] == "image/png"
    assert np.abs(decode(png.content) - expected_thumbnail(study["A"][2])).max() <= 1
    small = get(url, viewport="64,64")
    assert Image.open(io.BytesIO(small.content)).size == (64, 64)
    windowed = get(url, "image/png", window="40,400")
    assert np.abs(decode(windowed.content) - decode(png.content)).mean() > 5
    bad = requests.get(url, params={"viewport": "x"}, timeout=30)
    assert bad.status_code == 400 and "viewport" in bad.json()["error"]
    assert requests.get(url, headers={"Accept": "image/jp2"}, timeout=30).status_code == 406


def test_multiframe_instance_thumbnail_is_its_middle_frame(server: RunningServer) -> None:
    ds = read("emri_small.dcm")  # 10 frames: the middle one is frame 5
    DICOMwebClient(url=server.url).store_instances([ds])
    base = (
        f"{server.url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )
    thumb = get(f"{base}/thumbnail")
    assert thumb.content == get(f"{base}/frames/5/thumbnail").content
    cached = {"If-None-Match": thumb.headers["etag"]}
    assert requests.get(f"{base}/thumbnail", headers=cached, timeout=30).status_code == 304
    assert thumb.content != get(f"{base}/frames/1/thumbnail").content
    assert mean_abs_error(decode(thumb.content), expected_thumbnail(ds, 4)) < 3


def test_no_pixel_data_404(server: RunningServer) -> None:
    sr = read("test-SR.dcm")
    DICOMwebClient(url=server.url).store_instances([sr])
    study = f"{server.url}/studies/{sr.StudyInstanceUID}"
    assert requests.get(f"{study}/thumbnail", timeout=30).status_code == 404
    series = f"{study}/series/{sr.SeriesInstanceUID}"
    assert requests.get(f"{series}/thumbnail", timeout=30).status_code == 404
    instance = f"{series}/instances/{sr.SOPInstanceUID}/thumbnail"
    assert requests.get(instance, timeout=30).status_code == 404


def test_deriver_prebuilds_thumbnails(server: RunningServer) -> None:
    deriver = Deriver(server.store.index, server.store.blobs, interval=3600)
    ds = read("MR_small.dcm")
    DICOMwebClient(url=server.url).store_instances([ds])
    assert thumb_keys(server, ds.StudyInstanceUID, ds.SeriesInstanceUID) == []
    assert deriver.run_once() > 0
    [key] = thumb_keys(server, ds.StudyInstanceUID, ds.SeriesInstanceUID)
    url = f"{server.url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/thumbnail"
    assert get(url).content == server.store.blobs.get(key)
