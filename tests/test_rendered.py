"""Rendered resources (PS3.18 8.3.5) and WADO-URI rendered images against a real server.

Every image is compared with a reference rendering computed here from pydicom's LUT
functions (``tests.rendering_support.reference``). Tolerances, in 8-bit units: PNG within
1 of the reference at every pixel and fewer than 1 % of pixels off at all (rounding);
JPEG (quality 90 by default) a mean absolute error below 3.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, start_server
from tests.rendering_support import (
    assert_png,
    decode,
    max_abs_error,
    mean_abs_error,
    multipart_parts,
    read,
    reference,
)

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")

JPEG_MEAN = 3.0

#: name -> what it exercises
SINGLE = {
    "CT_small.dcm": "signed, rescale, no window: min/max",
    "MR_small.dcm": "window from the data set, no rescale",
    "RG3_UNCR.dcm": "MONOCHROME1, 10 of 16 bits stored, window from the data set",
    "693_UNCR.dcm": "signed, 14 of 16 bits stored, rescale and window",
    "vlut_04.dcm": "VOI LUT Sequence",
    "mlut_18.dcm": "Modality LUT Sequence, 12 of 16 bits",
    "examples_palette.dcm": "PALETTE COLOR",
    "SC_rgb.dcm": "RGB",
    "SC_rgb_jpeg_dcmtk.dcm": "YBR_FULL in JPEG baseline",
    "MR_small_jpeg_ls_lossless.dcm": "JPEG-LS, signed",
    "SC_rgb_16bit.dcm": "RGB, 16 bits per sample",
    "SC_ybr_full_uncompressed.dcm": "YBR_FULL, native",
}
#: Files sharing another file's SOP Instance UID (or series): stored under new UIDs.
RENAMED = ["MR_small_jpeg_ls_lossless.dcm", "SC_rgb_16bit.dcm", "SC_ybr_full_uncompressed.dcm"]
MULTI = ["emri_small.dcm", "color3d_jpeg_baseline.dcm"]
FILES = [*SINGLE, *MULTI, "test-SR.dcm"]


@pytest.fixture(scope="module")
def loaded(module_server: RunningServer) -> tuple[RunningServer, dict[str, Any]]:
    datasets = {name: read(name) for name in FILES}
    for name in RENAMED:
        datasets[name].SOPInstanceUID = generate_uid()
        datasets[name].SeriesInstanceUID = generate_uid()
    client = DICOMwebClient(url=module_server.url)
    result = client.store_instances(list(datasets.values()))
    assert "FailedSOPSequence" not in result
    return module_server, datasets


def url(srv: RunningServer, ds: Any, tail: str = "") -> str:
    return (
        f"{srv.url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}{tail}"
    )


def get(address: str, accept: str | None = None, **params: Any) -> requests.Response:
    headers = {"Accept": accept} if accept else {}
    return requests.get(address, headers=headers, params=params, timeout=60)


@pytest.mark.parametrize("name", list(SINGLE))
def test_instance_rendered_png_matches_pydicom(loaded: Any, name: str) -> None:
    srv, datasets = loaded
    r = get(url(srv, datasets[name], "/rendered"), "image/png")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert_png(decode(r.content), reference(datasets[name]))


@pytest.mark.parametrize("name", ["CT_small.dcm", "RG3_UNCR.dcm", "examples_palette.dcm"])
def test_instance_rendered_jpeg_by_default(loaded: Any, name: str) -> None:
    srv, datasets = loaded
    r = get(url(srv, datasets[name], "/rendered"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    assert r.content[:3] == b"\xff\xd8\xff"
    assert mean_abs_error(decode(r.content), reference(datasets[name])) < JPEG_MEAN


@pytest.mark.parametrize(
    ("name", "number"), [("emri_small.dcm", 7), ("color3d_jpeg_baseline.dcm", 60)]
)
def test_frame_rendered(loaded: Any, name: str, number: int) -> None:
    srv, datasets = loaded
    ds = datasets[name]
    r = get(url(srv, ds, f"/frames/{number}/rendered"), "image/png")
    assert r.status_code == 200, r.text
    got = decode(r.content)
    assert_png(got, reference(ds, number - 1))
    other = reference(ds, 0)
    assert np.abs(got - other).mean() > 1  # not the first frame


def test_frames_rendered_multipart_and_gif(loaded: Any) -> None:
    srv, datasets = loaded
    ds = datasets["emri_small.dcm"]
    r = get(url(srv, ds, "/frames/2,5/rendered"), 'multipart/related; type="image/png"')
    assert r.status_code == 200, r.text
    parts = multipart_parts(r.headers["content-type"], r.content)
    assert [ctype for ctype, _ in parts] == ["image/png", "image/png"]
    for (_, body), n in zip(parts, [2, 5], strict=True):
        assert_png(decode(body), reference(ds, n - 1))
    gif = get(url(srv, ds, "/rendered"), "image/gif")
    assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
    assert Image.open(io.BytesIO(gif.content)).n_frames == ds.NumberOfFrames


def test_voi_lut_sequence_applied(loaded: Any) -> None:
    """vlut_04's LUT is the identity: give it a curved one so the LUT shows in the output."""
    srv, _ = loaded
    ds = read("vlut_04.dcm")
    ds.SOPInstanceUID = generate_uid()
    item = ds.VOILUTSequence[0]
    item.LUTData = [round((i / 255) ** 2 * 65535) for i in range(256)]
    DICOMwebClient(url=srv.url).store_instances([ds])
    r = get(url(srv, ds, "/rendered"), "image/png")
    got, wanted = decode(r.content), reference(ds)
    assert_png(got, wanted)
    plain = reference(read("vlut_04.dcm"))
    assert np.abs(got - plain).mean() > 10  # the curve, not a straight min/max


@pytest.mark.parametrize("function", ["linear", "linear-exact", "sigmoid"])
def test_window_parameter_overrides(loaded: Any, function: str) -> None:
    srv, datasets = loaded
    for name, (center, width) in [("CT_small.dcm", (40, 400)), ("MR_small.dcm", (300, 500))]:
        ds = datasets[name]
        r = get(url(srv, ds, "/rendered"), "image/png", window=f"{center},{width},{function}")
        assert r.status_code == 200, r.text
        got = decode(r.content)
        wanted = reference(ds, window=(center, width, function.upper().replace("-", "_")))
        assert_png(got, wanted)
        assert np.abs(got - reference(ds)).mean() > 5  # not the default rendering


def test_viewport_scales_crops_and_flips(loaded: Any) -> None:
    srv, datasets = loaded
    ds = datasets["CT_small.dcm"]  # 128 x 128
    address = url(srv, ds, "/rendered")
    small = get(address, "image/png", viewport="64,64")
    assert Image.open(io.BytesIO(small.content)).size == (64, 64)
    fit = get(address, "image/png", viewport="300,100")  # aspect ratio kept
    assert Image.open(io.BytesIO(fit.content)).size == (100, 100)
    wanted = reference(ds)
    crop = get(address, "image/png", viewport="64,32,10,20,64,32")
    assert_png(decode(crop.content), wanted[20:52, 10:74])
    flipped = get(address, "image/png", viewport="64,32,10,20,-64,-32")
    assert_png(decode(flipped.content), wanted[20:52, 10:74][::-1, ::-1])
    # a scaled rendering still looks like the image
    ref_small = Image.fromarray(np.rint(wanted).astype(np.uint8)).resize((64, 64))
    assert mean_abs_error(decode(small.content), np.asarray(ref_small, dtype=float)) < 3


def test_rendered_etag(loaded: Any) -> None:
    srv, datasets = loaded
    address = url(srv, datasets["CT_small.dcm"], "/rendered")
    first = get(address, "image/png")
    etag = first.headers["etag"]
    again = requests.get(address, headers={"Accept": "image/png", "If-None-Match": etag})
    assert again.status_code == 304 and not again.content
    other = get(address, "image/png", window="40,400")
    assert other.headers["etag"] != etag
    changed = requests.get(
        address, params={"window": "40,400"}, headers={"Accept": "image/png", "If-None-Match": etag}
    )
    assert changed.status_code == 200 and changed.content == other.content


def test_quality_parameter(loaded: Any) -> None:
    srv, datasets = loaded
    address = url(srv, datasets["RG3_UNCR.dcm"], "/rendered")
    low = get(address, "image/jpeg", quality=10)
    high = get(address, "image/jpeg", quality=100)
    assert low.status_code == high.status_code == 200
    assert len(low.content) * 2 < len(high.content)


def test_accept_query_parameter(loaded: Any) -> None:
    srv, datasets = loaded
    address = url(srv, datasets["CT_small.dcm"], "/rendered")
    r = requests.get(address, headers={"Accept": "image/jpeg"}, params={"accept": "image/png"})
    assert r.headers["content-type"] == "image/png"
    refused = get(url(srv, datasets["CT_small.dcm"], "/rendered"), "image/jp2")
    assert refused.status_code == 406 and "image/jpeg" in refused.text


def test_series_and_study_rendered(loaded: Any) -> None:
    srv, datasets = loaded
    rgb, ybr = datasets["SC_rgb.dcm"], datasets["SC_rgb_jpeg_dcmtk.dcm"]  # one series
    series = f"{srv.url}/studies/{rgb.StudyInstanceUID}/series/{rgb.SeriesInstanceUID}/rendered"
    r = get(series, 'multipart/related; type="image/png"')
    assert r.status_code == 200, r.text
    parts = multipart_parts(r.headers["content-type"], r.content)
    assert len(parts) == 2
    for _, body in parts:
        got = decode(body)
        same = [ds for ds in (rgb, ybr) if max_abs_error(got, reference(ds)) <= 1]
        assert len(same) == 1
        assert_png(got, reference(same[0]))
    study = get(f"{srv.url}/studies/{rgb.StudyInstanceUID}/rendered")  # */*: multipart JPEG
    assert study.headers["content-type"].startswith('multipart/related; type="image/jpeg"')
    in_study = [ds for ds in datasets.values() if ds.StudyInstanceUID == rgb.StudyInstanceUID]
    assert len(in_study) > 2  # the renamed files kept the study
    assert len(multipart_parts(study.headers["content-type"], study.content)) == len(in_study)
    ct = datasets["emri_small.dcm"]  # multi-frame: its first frame
    one = get(
        f"{srv.url}/studies/{ct.StudyInstanceUID}/rendered", 'multipart/related; type="image/png"'
    )
    [(_, body)] = multipart_parts(one.headers["content-type"], one.content)
    assert_png(decode(body), reference(ct, 0))


def test_dicomweb_client_rendered(loaded: Any) -> None:
    srv, datasets = loaded
    client = DICOMwebClient(url=srv.url)
    ds = datasets["MR_small.dcm"]
    uids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    body = client.retrieve_instance_rendered(*uids, media_types=("image/png",))
    assert_png(decode(body), reference(ds))
    mf = datasets["emri_small.dcm"]
    mf_uids = (mf.StudyInstanceUID, mf.SeriesInstanceUID, mf.SOPInstanceUID)
    frame = client.retrieve_instance_frames_rendered(
        *mf_uids, frame_numbers=[3], media_types=("image/png",)
    )
    assert_png(decode(frame), reference(mf, 2))
    series = client.retrieve_series_rendered(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, media_types=("image/jpeg",),
        params={"quality": 95},
    )  # fmt: skip
    assert mean_abs_error(decode(series), reference(ds)) < JPEG_MEAN


def test_wado_uri_rendered(loaded: Any) -> None:
    srv, datasets = loaded
    ds = datasets["CT_small.dcm"]
    base = {
        "requestType": "WADO",
        "studyUID": ds.StudyInstanceUID,
        "seriesUID": ds.SeriesInstanceUID,
        "objectUID": ds.SOPInstanceUID,
    }
    r = get(f"{srv.url}/wado", **base, contentType="image/png", windowCenter=40, windowWidth=400)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    wanted = reference(ds, window=(40, 400, "LINEAR"))
    assert_png(decode(r.content), wanted)
    jpeg = get(f"{srv.url}/wado", **base, contentType="image/jpeg", rows=64, imageQuality=95)
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).size == (64, 64)
    region = get(f"{srv.url}/wado", **base, contentType="image/png", region="0.25,0,0.75,0.5")
    assert_png(decode(region.content), reference(ds)[0:64, 32:96])
    mf = datasets["emri_small.dcm"]
    frame = get(
        f"{srv.url}/wado", requestType="WADO", studyUID=mf.StudyInstanceUID,
        seriesUID=mf.SeriesInstanceUID, objectUID=mf.SOPInstanceUID,
        contentType="image/png", frameNumber=4,
    )  # fmt: skip
    assert_png(decode(frame.content), reference(mf, 3))
    dicom = get(f"{srv.url}/wado", **base)  # still the DICOM object by default
    assert dicom.headers["content-type"] == "application/dicom"


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"window": "abc"}, "window"),
        ({"window": "40"}, "window"),
        ({"window": "40,0"}, "window"),
        ({"window": "40,400,cubic"}, "window"),
        ({"viewport": "0,0"}, "viewport"),
        ({"viewport": "a,64"}, "viewport"),
        ({"viewport": "64,64,0,0,0,10"}, "viewport"),
        ({"quality": "0"}, "quality"),
        ({"quality": "101"}, "quality"),
        ({"quality": "high"}, "quality"),
    ],
)
def test_bad_parameters_400(loaded: Any, params: dict[str, str], named: str) -> None:
    srv, datasets = loaded
    r = get(url(srv, datasets["CT_small.dcm"], "/rendered"), **params)
    assert r.status_code == 400, r.text
    assert named in r.json()["error"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"windowCenter": "40"}, "windowWidth"),
        ({"windowCenter": "x", "windowWidth": "400"}, "windowCenter"),
        ({"rows": "-1"}, "rows"),
        ({"columns": "0"}, "columns"),
        ({"region": "0.5,0,0.2,1"}, "region"),
        ({"imageQuality": "0"}, "imageQuality"),
        ({"frameNumber": "0"}, "frameNumber"),
    ],
)
def test_wado_uri_bad_parameters_400(loaded: Any, params: dict[str, str], named: str) -> None:
    srv, datasets = loaded
    ds = datasets["CT_small.dcm"]
    r = get(
        f"{srv.url}/wado", requestType="WADO", studyUID=ds.StudyInstanceUID,
        seriesUID=ds.SeriesInstanceUID, objectUID=ds.SOPInstanceUID, contentType="image/jpeg",
        **params,
    )  # fmt: skip
    assert r.status_code == 400, r.text
    assert named in r.json()["error"]


def test_not_found(loaded: Any) -> None:
    srv, datasets = loaded
    sr = datasets["test-SR.dcm"]
    r = get(url(srv, sr, "/rendered"))
    assert r.status_code == 404 and "pixel data" in r.json()["error"]
    ct = datasets["CT_small.dcm"]
    assert get(url(srv, ct, "/frames/2/rendered")).status_code == 404
    assert get(url(srv, ct, "/frames/x/rendered")).status_code == 400


def test_rendered_from_s3_blobs(tmp_path: Path, s3_section: dict[str, Any]) -> None:
    """Remote blobs: the frame is read with range requests, rendered the same."""
    srv = start_server(tmp_path / "data", blobs="s3", s3=s3_section)
    try:
        ds = read("emri_small.dcm")
        DICOMwebClient(url=srv.url).store_instances([ds])
        r = get(url(srv, ds, "/frames/7/rendered"), "image/png")
        assert r.status_code == 200, r.text
        assert_png(decode(r.content), reference(ds, 6))
    finally:
        srv.stop()


def test_undecodable_pixel_data_501(loaded: Any) -> None:
    srv, _ = loaded
    ds = read("SC_rgb_jpeg_dcmtk.dcm")
    ds.StudyInstanceUID = generate_uid()  # a study of its own
    ds.SOPInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xe0 not a JPEG stream " * 4])
    DICOMwebClient(url=srv.url).store_instances([ds])
    r = get(url(srv, ds, "/rendered"))
    assert r.status_code == 501 and "1.2.840.10008.1.2.4.50" in r.json()["error"]
    series = f"{srv.url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    assert get(f"{series}/rendered").status_code == 501  # the first part fails: a status
