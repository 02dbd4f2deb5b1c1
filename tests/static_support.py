"""Helpers for the static tree tests: test data, a store, servers on real sockets."""

from __future__ import annotations

import copy
import io
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pydicom
import uvicorn
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.conftest import free_port
from webpacs.config import Settings, isolated
from webpacs.ingest import ingest
from webpacs.storage.registry import Store, open_store

#: Test files with distinct SOP Instance UIDs: native, JPEG, JPEG 2000, RLE, multi-frame,
#: odd-sized, deflated, no pixel data.
FILES = [
    "CT_small.dcm",
    "MR_small_RLE.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle_2frame.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "JPEG-lossy.dcm",
    "color3d_jpeg_baseline.dcm",
    "US1_J2KR.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "SC_rgb_small_odd.dcm",
    "liver.dcm",
    "image_dfl.dcm",
    "rtplan.dcm",
]


def path(name: str) -> Path:
    p = get_testdata_file(name)
    assert p is not None, name
    return Path(str(p))


def read(data: bytes | Path) -> Dataset:
    """dcmread without letting pydicom's warnings fail the test run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = io.BytesIO(data) if isinstance(data, bytes) else data
        ds = pydicom.dcmread(src)
        for _ in ds.iterall():
            pass
        return ds


def settings_for(data_dir: Path) -> Settings:
    return isolated({"dataDir": str(data_dir)})


def make_store(data_dir: Path, names: list[str]) -> tuple[Settings, Store]:
    settings = settings_for(data_dir)
    st = open_store(settings)
    for name in names:
        ingest(st.index, st.blobs, path(name).read_bytes())
    return settings, st


def ct_series(n: int) -> list[bytes]:
    """``n`` CT slices made from CT_small: one new series, new SOP UIDs, positions, numbers."""
    base = read(path("CT_small.dcm"))
    study, series = generate_uid(), generate_uid()
    out = []
    for i in range(n):
        ds = copy.deepcopy(base)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [-158.0, -179.0, -75.0 + 2.5 * i]
        ds.SliceLocation = -75.0 + 2.5 * i
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


class ServerThread:
    """A uvicorn server for ``app`` on 127.0.0.1 in a thread; use as a context manager."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def multi_series_study(series: int = 2, per_series: int = 2) -> list[bytes]:
    """One study of ``series`` CT series made from CT_small (new study, series, SOP UIDs)."""
    base = read(path("CT_small.dcm"))
    study = generate_uid()
    out = []
    for x in range(series):
        series_uid = generate_uid()
        for i in range(per_series):
            ds = copy.deepcopy(base)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series_uid
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.SeriesNumber, ds.InstanceNumber = x + 1, i + 1
            ds.ImagePositionPatient = [-158.0, -179.0, -75.0 + 2.5 * i]
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            out.append(buf.getvalue())
    return out


def write_inputs(out: Path, datasets: list[bytes]) -> list[Path]:
    """Write Part 10 bytes as ``out/<k>.dcm`` files."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for k, data in enumerate(datasets):
        f = out / f"{k}.dcm"
        f.write_bytes(data)
        files.append(f)
    return files
