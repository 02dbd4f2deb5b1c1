"""Transcoding on retrieve (PS3.18 8.7.3.5): frames, instances, series and WADO-URI asked in
another transfer syntax than the stored one, through dicomweb-client and plain HTTP; the
pixels are compared with pydicom's decoding of the original file."""

from __future__ import annotations

import copy
import io
import warnings
from typing import Any

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate

from tests.conftest import RunningServer, data_file
from tests.test_dicomweb_client import multipart_parts

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
JLS = "1.2.840.10008.1.2.4.80"
JLS_NEAR = "1.2.840.10008.1.2.4.81"
J2K = "1.2.840.10008.1.2.4.90"
J2K_LOSSY = "1.2.840.10008.1.2.4.91"
RLE = "1.2.840.10008.1.2.5"
MEDIA = {EXPLICIT: "application/octet-stream", JLS: "image/jls", JLS_NEAR: "image/jls"}
MEDIA |= {J2K: "image/jp2", J2K_LOSSY: "image/jp2", RLE: "image/dicom-rle"}
DICOM_RANGE = 'multipart/related; type="application/dicom"'
LOSSLESS_OUT = [EXPLICIT, JLS, J2K, RLE]
#: Lossy outputs and the PSNR (dB, against the stored pixels' range) each must reach.
LOSSY_PSNR = {JLS_NEAR: 45.0, J2K_LOSSY: 30.0}

FILES = [  # distinct SOP Instance UIDs
    "CT_small.dcm",  # explicit VR LE, 16-bit signed
    "OBXXXX1A_expb.dcm",  # explicit VR big endian, PALETTE COLOR
    "emri_small_jpeg_2k_lossless.dcm",  # JPEG 2000 lossless, 10 frames
    "US1_J2KR.dcm",  # JPEG 2000 lossless, YBR_RCT
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless, signed
    "SC_rgb_rle_2frame.dcm",  # RLE, RGB, 2 frames
    "SC_rgb_dcmtk_+eb+cy+s2.dcm",  # JPEG baseline YBR_FULL_422 (lossy as stored)
    "JPGLosslessP14SV1_1s_1f_8b.dcm",  # JPEG lossless SV1
    "JPEG2000.dcm",  # JPEG 2000 (.91)
]


def read(name: str) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(data_file(name))


def original_pixels(ds: Dataset) -> np.ndarray:
    """pydicom's decoding of the original: frames first, colour as RGB."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) == 1:
        arr = arr[np.newaxis]
    return arr


def decode_frame(original: Dataset, body: bytes, ts: str) -> np.ndarray:
    """A received frame decoded by pydicom, described as the transcoded pixels are (RGB)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some test files hold values pydicom warns about
        ds = copy.deepcopy(original)
        ds.file_meta.TransferSyntaxUID = ts
        ds.NumberOfFrames = 1
        if ds.SamplesPerPixel > 1:
            ds.PhotometricInterpretation = "RGB"
            ds.PlanarConfiguration = 0
        del ds.PixelData
        body = bytes(body)  # dicomweb-client gives bytearrays, which pydicom takes as a list
        ds.add_new(0x7FE00010, "OB", body if ts in (EXPLICIT, IMPLICIT) else encapsulate([body]))
        for kw in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
            if kw in ds:
                del ds[kw]
        return ds.pixel_array


def psnr(a: np.ndarray, b: np.ndarray, bits_stored: int) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    peak = float(2**bits_stored - 1)
    return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)


@pytest.fixture(scope="module")
def loaded(module_server: RunningServer) -> tuple[RunningServer, DICOMwebClient, dict]:
    client = DICOMwebClient(module_server.url)
    datasets = {name: read(name) for name in FILES}
    client.store_instances(list(datasets.values()))
    return module_server, client, datasets


def frame_url(server: RunningServer, ds: Dataset, frames: str) -> str:
    return (
        f"{server.url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/frames/{frames}"
    )


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("ts", LOSSLESS_OUT)
def test_frames_in_each_lossless_syntax(loaded: Any, name: str, ts: str) -> None:
    """Every frame, asked in each lossless syntax, decodes to pydicom's pixels exactly."""
    server, client, datasets = loaded
    ds = datasets[name]
    expected = original_pixels(ds)
    numbers = list(range(1, len(expected) + 1))
    frames = client.retrieve_instance_frames(
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
        numbers,
        media_types=((MEDIA[ts], ts),),
    )
    assert len(frames) == len(expected)
    for n, body in enumerate(frames):
        np.testing.assert_array_equal(decode_frame(ds, body, ts), expected[n])


@pytest.mark.parametrize("name", ["emri_small_jpeg_2k_lossless.dcm", "SC_rgb_rle_2frame.dcm"])
@pytest.mark.parametrize("ts", list(LOSSY_PSNR))
def test_frames_lossy_when_named(loaded: Any, name: str, ts: str) -> None:
    server, client, datasets = loaded
    ds = datasets[name]
    expected = original_pixels(ds)
    (body,) = client.retrieve_instance_frames(
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
        [1],
        media_types=((MEDIA[ts], ts),),
    )
    got = decode_frame(ds, body, ts)
    assert got.shape == expected[0].shape
    assert psnr(got, expected[0], ds.BitsStored) >= LOSSY_PSNR[ts]


def test_octet_stream_without_syntax_decodes(loaded: Any) -> None:
    """``application/octet-stream`` with no transfer-syntax means Explicit VR Little Endian
    (PS3.18 Table 8.7.3-2): compressed frames are decoded, sent as little-endian native."""
    server, _, datasets = loaded
    ds = datasets["MR_small_jpeg_ls_lossless.dcm"]
    for accept in ("multipart/related; type=application/octet-stream", "application/octet-stream"):
        r = requests.get(frame_url(server, ds, "1"), headers={"Accept": accept}, timeout=30)
        assert r.status_code == 200, r.text
        if accept.startswith("multipart"):
            ((ctype, body),) = multipart_parts(r)
        else:
            ctype, body = r.headers["content-type"].replace(" ", ""), r.content
            ctype = ctype.replace(";", "; ")
        assert ctype == f"application/octet-stream; transfer-syntax={EXPLICIT}"
        expected = original_pixels(ds)[0]
        assert body == expected.astype(expected.dtype.newbyteorder("<")).tobytes()


def test_lossy_never_unless_named(loaded: Any) -> None:
    """A range that names no transfer syntax gets a lossless one (or the stored one)."""
    server, _, datasets = loaded
    ds = datasets["CT_small.dcm"]
    for media, expected_ts in (("image/jp2", J2K), ("image/jls", JLS)):
        r = requests.get(
            frame_url(server, ds, "1"),
            headers={"Accept": f'multipart/related; type="{media}"'},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        ((ctype, _),) = multipart_parts(r)
        assert ctype == f"{media}; transfer-syntax={expected_ts}"


@pytest.mark.parametrize(
    ("name", "ts"), [("CT_small.dcm", JLS), ("SC_rgb_rle_2frame.dcm", EXPLICIT)]
)
def test_pixel_data_bulk_value_transcoded(loaded: Any, name: str, ts: str) -> None:
    """The PixelData bulk value (its BulkDataURI) in another syntax: one part per frame."""
    server, _, datasets = loaded
    ds = datasets[name]
    url = frame_url(server, ds, "").rsplit("/frames/", 1)[0] + "/bulkdata/7FE00010"
    accept = f'multipart/related; type="{MEDIA[ts]}"; transfer-syntax={ts}'
    r = requests.get(url, headers={"Accept": accept}, timeout=30)
    assert r.status_code == 200, r.text
    parts = multipart_parts(r)
    expected = original_pixels(ds)
    assert len(parts) == len(expected)
    for n, (ctype, body) in enumerate(parts):
        assert ctype == f"{MEDIA[ts]}; transfer-syntax={ts}"
        np.testing.assert_array_equal(decode_frame(ds, body, ts), expected[n])


def test_lossy_not_chosen_by_a_range_without_syntax(loaded: Any) -> None:
    """With the lossless JPEG-LS refused (q=0), a bare ``image/jls`` range must not fall back
    to the near-lossless syntax: 406."""
    server, _, datasets = loaded
    ds = datasets["CT_small.dcm"]
    refuse = f'multipart/related; type="image/jls"; transfer-syntax={JLS}; q=0'
    r = requests.get(
        frame_url(server, ds, "1"),
        headers={"Accept": f'{refuse}, multipart/related; type="image/jls"'},
        timeout=30,
    )
    assert r.status_code == 406, r.headers.get("content-type")
    assert JLS_NEAR in r.text  # named among what can be served


def test_unproducible_syntax_is_406_naming_the_choices(loaded: Any) -> None:
    server, _, datasets = loaded
    ds = datasets["CT_small.dcm"]
    r = requests.get(
        frame_url(server, ds, "1"),
        headers={
            "Accept": 'multipart/related; type="image/jpx"; transfer-syntax=1.2.840.10008.1.2.4.92'
        },
        timeout=30,
    )
    assert r.status_code == 406
    assert f"transfer-syntax={J2K}" in r.text and f"transfer-syntax={JLS}" in r.text


def changed_keywords() -> set[str]:
    return {
        "PixelData",
        "PhotometricInterpretation",
        "PlanarConfiguration",
        "LossyImageCompression",
        "LossyImageCompressionRatio",
        "LossyImageCompressionMethod",
        "DataSetTrailingPadding",  # padding, no content (PS3.10 7.2); pydicom drops it
    }


def assert_same_except_pixels(original: Dataset, got: Dataset) -> None:
    implicit = got.file_meta.TransferSyntaxUID == IMPLICIT
    for elem in original:
        if elem.keyword in changed_keywords() or elem.tag.group == 0x0002:
            continue
        if implicit and elem.tag.is_private:  # read back without their VRs (PS3.5 7.1.3)
            continue
        assert elem.tag in got, elem.keyword
        assert got[elem.tag].value == elem.value, elem.keyword


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("ts", [EXPLICIT, IMPLICIT, JLS, J2K, RLE])
def test_instance_in_each_syntax(loaded: Any, name: str, ts: str) -> None:
    server, client, datasets = loaded
    ds = datasets[name]
    if ts == IMPLICIT:  # dicomweb-client does not ask for it: plain HTTP
        url = frame_url(server, ds, "").rsplit("/frames/", 1)[0]
        accept = f'multipart/related; type="application/dicom"; transfer-syntax={ts}'
        r = requests.get(url, headers={"Accept": accept}, timeout=30)
        assert r.status_code == 200, r.text
        ((ctype, body),) = multipart_parts(r)
        assert ctype == f"application/dicom; transfer-syntax={ts}"
        got = pydicom.dcmread(io.BytesIO(body))
    else:
        got = client.retrieve_instance(
            ds.StudyInstanceUID,
            ds.SeriesInstanceUID,
            ds.SOPInstanceUID,
            media_types=(("application/dicom", ts),),
        )
    assert got.file_meta.TransferSyntaxUID == ts
    assert got.SOPInstanceUID == ds.SOPInstanceUID
    np.testing.assert_array_equal(original_pixels(got), original_pixels(ds))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same_except_pixels(ds, got)
    if ds.SamplesPerPixel == 3 and str(ds.file_meta.TransferSyntaxUID) != ts:
        assert got.PhotometricInterpretation == "RGB"
        assert got.PlanarConfiguration == 0
    assert got.get("LossyImageCompression") == ds.get("LossyImageCompression")


@pytest.mark.parametrize("ts", list(LOSSY_PSNR))
def test_instance_lossy_marks_lossy_compression(loaded: Any, ts: str) -> None:
    server, client, datasets = loaded
    ds = datasets["CT_small.dcm"]
    got = client.retrieve_instance(
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
        media_types=(("application/dicom", ts),),
    )
    assert got.file_meta.TransferSyntaxUID == ts
    assert got.LossyImageCompression == "01"
    assert got.LossyImageCompressionMethod == {JLS_NEAR: "ISO_14495_1"}.get(ts, "ISO_15444_1")
    assert float(got.LossyImageCompressionRatio) > 1
    assert psnr(original_pixels(got), original_pixels(ds), ds.BitsStored) >= LOSSY_PSNR[ts]


def test_series_and_study_transcoded_instance_by_instance(loaded: Any) -> None:
    server, _, datasets = loaded
    for name in ("SC_rgb_rle_2frame.dcm", "JPEG2000.dcm"):
        ds = datasets[name]
        base = f"{server.url}/studies/{ds.StudyInstanceUID}"
        for url in (base, f"{base}/series/{ds.SeriesInstanceUID}"):
            r = requests.get(
                url,
                headers={"Accept": f"{DICOM_RANGE}; transfer-syntax={EXPLICIT}"},
                timeout=60,
            )
            assert r.status_code == 200, r.text
            parts = multipart_parts(r)
            assert parts
            by_uid = {}
            for ctype, body in parts:
                assert ctype == f"application/dicom; transfer-syntax={EXPLICIT}"
                got = pydicom.dcmread(io.BytesIO(body))
                assert got.file_meta.TransferSyntaxUID == EXPLICIT
                by_uid[got.SOPInstanceUID] = got
            np.testing.assert_array_equal(
                original_pixels(by_uid[ds.SOPInstanceUID]), original_pixels(ds)
            )


def test_wado_uri_transfer_syntax(loaded: Any) -> None:
    server, _, datasets = loaded
    ds = datasets["emri_small_jpeg_2k_lossless.dcm"]
    root = server.url
    params = {
        "requestType": "WADO",
        "studyUID": ds.StudyInstanceUID,
        "seriesUID": ds.SeriesInstanceUID,
        "objectUID": ds.SOPInstanceUID,
        "contentType": "application/dicom",
    }
    for ts in (EXPLICIT, JLS):
        r = requests.get(f"{root}/wado", params=params | {"transferSyntax": ts}, timeout=30)
        assert r.status_code == 200, r.text
        got = pydicom.dcmread(io.BytesIO(r.content))
        assert got.file_meta.TransferSyntaxUID == ts
        np.testing.assert_array_equal(original_pixels(got), original_pixels(ds))
    r = requests.get(
        f"{root}/wado", params=params | {"transferSyntax": "1.2.840.10008.1.2.4.100"}, timeout=30
    )
    assert r.status_code == 406
    assert EXPLICIT in r.text and JLS in r.text
