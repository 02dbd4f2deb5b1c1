"""Every pydicom test file with pixel data (pydicom's and pydicom-data's): its first frame asked
as native (``application/octet-stream``, PS3.18 Table 8.7.3-2) is served, equal to pydicom's
decoding of the original, or refused with a 406 naming what can be served, and refused only
when pydicom's installed decoders cannot decode it either."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset

from tests.conftest import RunningServer, start_server
from tests.test_dicomweb_client import multipart_parts
from webpacs.errors import WebpacsError
from webpacs.ingest import ingest

NATIVE = 'multipart/related; type="application/octet-stream"'


def _pixel_files() -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = []
        for path in sorted(get_testdata_files("*")):
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=False)
            except Exception:
                continue
            if "PixelData" in ds:
                found.append(path)
        return found


FILES = _pixel_files()


@pytest.fixture(scope="module")
def overwriting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Several test files share SOP Instance UIDs: each test stores its own over the last."""
    srv = start_server(tmp_path_factory.mktemp("data"), ingest={"conflict": "overwrite"})
    try:
        yield srv
    finally:
        srv.stop()


def _little_endian_native(ds: Dataset, data: bytes) -> bytes:
    """Native pixel data of ``ds`` as little-endian bytes."""
    if ds.original_encoding[1]:
        return data
    if ds.BitsAllocated > 8:
        word = ds.BitsAllocated // 8
    elif ds["PixelData"].VR == "OW":
        word = 2
    else:
        return data
    return np.frombuffer(data, f">u{word}").astype(f"<u{word}").tobytes()


def test_the_corpus_is_there() -> None:
    assert len(FILES) > 100  # pydicom's own and pydicom-data's


@pytest.mark.filterwarnings("ignore")  # many of these files are deliberately odd
@pytest.mark.parametrize("path", FILES, ids=lambda p: Path(p).name)
def test_served_native_or_406(overwriting_server: RunningServer, path: str) -> None:
    server = overwriting_server
    data = Path(path).read_bytes()
    try:
        result = ingest(server.store.index, server.store.blobs, data, overwrite=True)
    except WebpacsError as e:  # not storable: refused at the door, not our subject here
        assert e.message
        return
    rec = server.store.index.get(result.sop_uid)
    assert rec is not None
    # what is stored: this file, or the copy already stored when this file holds the same
    # data set in another encoding (duplicates by meaning, e.g. color-px after color-pl)
    ds = pydicom.dcmread(io.BytesIO(server.store.blobs.get(rec.blob_key)))
    url = (
        f"{server.url}/studies/{result.study_uid}/series/{result.series_uid}"
        f"/instances/{result.sop_uid}/frames/1"
    )
    r = requests.get(url, headers={"Accept": NATIVE}, timeout=60)
    if ds.BitsAllocated == 1:
        assert r.status_code in (200, 501), r.text  # bit-packed frames: retrieve the instance
        return
    if r.status_code == 406:
        assert "available:" in r.text
        with pytest.raises(Exception):  # noqa: B017 - whatever pydicom raises: it cannot either
            ds.pixel_array  # noqa: B018
        return
    assert r.status_code == 200, r.text
    ((ctype, body),) = multipart_parts(r)
    assert ctype == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    if not ds["PixelData"].is_undefined_length:  # native: the stored frame, little endian
        native = _little_endian_native(ds, ds.PixelData)
        assert native.startswith(body)
        return
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    arr = ds.pixel_array if frames == 1 else ds.pixel_array[0]
    assert body == arr.astype(arr.dtype.newbyteorder("<")).tobytes()
