"""Peak memory curves (issue 16 point 4): the server's process tree RSS against the size
of what one request serves or stores.

* **study metadata**: a study of K instances (pydicom's ``CT_small.dcm`` re-stamped with
  new UIDs, as ``bench/generate.py`` stamps its template; series of up to 500), stored with
  ``webpacs import``, then ``GET /studies/{s}/metadata`` twice gzip'd (the first builds the
  derived documents unless the deriver did) and twice as identity;
* **a multi-frame instance of M MB** (512 x 512 16-bit frames, Multi-frame Grayscale Word
  Secondary Capture): its header written by pydicom, its pixel data appended frame by frame
  so that neither the generator nor the client ever holds it; stored by STOW-RS with the
  request body streamed from the file, then retrieved as the instance, as every frame (100
  a request) and as its pixel data in one request (``bulkdata/7FE00010``).

Each study and each STOW runs on a fresh ``webpacs serve`` (one worker, DICOMweb only), the
reads of a multi-frame instance on another, in the order above (what one request needs
grows down the list; Python hands large buffers back to the system when freed, so a peak
is not an earlier request's leftover); the RSS is sampled every 20 ms (``bench/load.py``'s
``RssSampler``) and reported with the server's idle RSS.
The generated files stay in ``<cache>/curves`` (git-ignored), reused while their size
matches.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import struct
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import generate_uid

from bench import load
from bench.generate import _template

FRAME = (512, 512)
FRAME_BYTES = FRAME[0] * FRAME[1] * 2
MF_CLASS = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word Secondary Capture
SERIES_MAX = 500
CHUNK = 1 << 20


# -- data --------------------------------------------------------------------------
def study_files(cache: Path, instances: int) -> tuple[str, Path]:
    """A study of ``instances`` CT_small copies under ``cache/study-<n>``: (its UID, dir)."""
    out = cache / f"study-{instances}"
    done = cache / f"study-{instances}.uid"
    if done.is_file():
        return done.read_text().strip(), out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    study = generate_uid()
    series = ""
    for i in range(instances):
        if i % SERIES_MAX == 0:
            series = generate_uid()
            sdir = out / f"x{i // SERIES_MAX:03d}"
            sdir.mkdir(parents=True, exist_ok=True)
        sop = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.SeriesNumber = i // SERIES_MAX + 1
        ds.InstanceNumber = i % SERIES_MAX + 1
        ds.PatientID, ds.PatientName = f"CURVES{instances}", f"Curves^{instances}"
        ds.save_as(sdir / f"i{i % SERIES_MAX:03d}.dcm")
    done.write_text(study)
    return study, out


def multiframe_file(cache: Path, mb: int) -> tuple[Path, int, tuple[str, str, str]]:
    """A multi-frame instance of about ``mb`` MB (1e6 bytes) of pixel data:
    (path, frames, (study, series, sop))."""
    frames = max(1, mb * 1_000_000 // FRAME_BYTES)
    path = cache / f"multiframe-{frames}.dcm"
    uids_file = path.with_suffix(".uids")
    if path.is_file() and uids_file.is_file():
        study, series, sop = uids_file.read_text().split()
        return path, frames, (study, series, sop)
    ds = _template()
    for kw in ("PixelData", "SliceLocation", "ImagePositionPatient"):
        if kw in ds:
            del ds[kw]
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MF_CLASS
    ds.file_meta = FileMetaDataset(ds.file_meta)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.PatientID, ds.PatientName = f"MF{frames}", f"Multiframe^{frames}"
    ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = FRAME
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        ds.save_as(f, enforce_file_format=True)  # explicit VR little endian, no pixel data
        # (7FE0,0010) OW with its 32-bit length, then the frames one at a time
        f.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, frames * FRAME_BYTES))
        base = np.add.outer(np.arange(FRAME[0]), np.arange(FRAME[1])).astype("<u2")
        for k in range(frames):
            f.write((base + k).tobytes())
    tmp.replace(path)
    uids_file.write_text(f"{study} {series} {sop}")
    return path, frames, (study, series, sop)


# -- measuring ---------------------------------------------------------------------
@contextlib.contextmanager
def _server(data: Path, log: Path) -> Iterator[tuple[str, int, float]]:
    """A fresh one-worker server on ``data``: (base, pid, idle RSS in MB)."""
    from bench import run

    with run.webpacs_server(data, 1, log) as (base, pid):
        httpx.get(base + "/studies?limit=1", timeout=30)
        time.sleep(0.5)
        yield base, pid, round(load.tree_rss_kb(pid) / 1024, 1)


def _peak(pid: int, fn: Callable[[], int]) -> tuple[float, int, float]:
    """Run ``fn`` (returns bytes moved) while sampling; (peak RSS MB, bytes, seconds)."""
    t0 = time.monotonic()
    with load.RssSampler(pid, 0.02) as rss:
        moved = fn()
    return rss.peak_mb or 0.0, moved, time.monotonic() - t0


def _download(base: str, path: str, headers: dict[str, str]) -> int:
    """GET ``path`` streamed, discarding the body; its bytes (raises on an error status)."""
    n = 0
    with httpx.stream("GET", base + path, headers=headers, timeout=900) as r:
        r.raise_for_status()
        for chunk in r.iter_raw(CHUNK):
            n += len(chunk)
    return n


def _row(curve: str, op: str, size: int, idle: float, peak: float, moved: int, secs: float
         ) -> dict[str, Any]:  # fmt: skip
    print(f"  {curve:16s} {size:>6,} {op:40s} peak {peak:8.1f} MB (idle {idle:6.1f},"
          f" +{peak - idle:7.1f})  {moved / 1e6:9.1f} MB in {secs:6.1f} s", flush=True)  # fmt: skip
    return {"curve": curve, "op": op, "size": size, "idle_rss_mb": idle, "peak_rss_mb": peak,
            "over_idle_mb": round(peak - idle, 1), "bytes": moved,
            "seconds": round(secs, 2)}  # fmt: skip


def study_metadata_curve(sizes: list[int], cache: Path, work: Path) -> list[dict[str, Any]]:
    """Peak RSS serving the metadata of a study of each size (``webpacs import``ed)."""
    return [row for k in sizes for row in _study_point(k, cache, work)]


def _study_point(k: int, cache: Path, work: Path) -> list[dict[str, Any]]:
    from bench import run

    study, where = study_files(cache, k)
    data = work / f"study-{k}"
    subprocess.run(
        run.webpacs_cmd("import", "--data-dir", str(data), str(where)),
        env=run.webpacs_env(), check=True, timeout=3600, capture_output=True,
    )  # fmt: skip
    rows = []
    try:
        with _server(data, work / f"study-{k}.log") as (base, pid, idle):
            for enc in ("gzip", "identity"):
                headers = {"Accept": "application/dicom+json", "Accept-Encoding": enc}
                get = functools.partial(_download, base, f"/studies/{study}/metadata", headers)
                for i in range(2):
                    peak, moved, secs = _peak(pid, get)
                    rows.append(_row("study-metadata", f"GET metadata {enc} #{i + 1}", k,
                                     idle, peak, moved, secs))  # fmt: skip
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return rows


def _stow(path: Path, base: str) -> int:
    """STOW-RS of the file at ``path``, the body streamed from it; the bytes sent."""
    boundary = uuid.uuid4().hex
    head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = path.stat().st_size

    def body() -> Iterator[bytes]:
        yield head
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
        yield tail

    ctype = f'multipart/related; type="application/dicom"; boundary={boundary}'
    r = httpx.post(
        base + "/studies", content=body(), timeout=3600,
        headers={"Content-Type": ctype, "Content-Length": str(len(head) + size + len(tail)),
                 "Accept": "application/dicom+json"},
    )  # fmt: skip
    if r.status_code != 200:
        raise RuntimeError(f"STOW of {path.name}: {r.status_code} {r.text[:300]}")
    return len(head) + size + len(tail)


def _downloads(paths: list[str], headers: dict[str, str], base: str) -> int:
    return sum(_download(base, p, headers) for p in paths)


def multiframe_curve(sizes_mb: list[int], cache: Path, work: Path) -> list[dict[str, Any]]:
    """Peak RSS storing and retrieving a multi-frame instance of each size."""
    return [row for mb in sizes_mb for row in _multiframe_point(mb, cache, work)]


def _multiframe_point(mb: int, cache: Path, work: Path) -> list[dict[str, Any]]:
    path, frames, (study, series, sop) = multiframe_file(cache, mb)
    data = work / f"multiframe-{frames}"
    inst = f"/studies/{study}/series/{series}/instances/{sop}"
    frame_paths = [
        f"{inst}/frames/{','.join(str(n) for n in range(a, min(a + 100, frames + 1)))}"
        for a in range(1, frames + 1, 100)
    ]
    octets = {"Accept": 'multipart/related; type="application/octet-stream"'}
    dicom = {"Accept": 'multipart/related; type="application/dicom"'}
    ops: list[tuple[str, Callable[[str], int]]] = [
        ("STOW-RS (body streamed from the file)", functools.partial(_stow, path)),
        ("GET instance", functools.partial(_downloads, [inst], dicom)),
        (f"GET frames, 100 a request ({len(frame_paths)})",
         functools.partial(_downloads, frame_paths, octets)),
        ("GET bulkdata 7FE00010 (all frames at once)",
         functools.partial(_downloads, [f"{inst}/bulkdata/7FE00010"], octets)),
    ]  # fmt: skip
    rows = []
    size = round(frames * FRAME_BYTES / 1e6)
    try:
        for i, group in enumerate((ops[:1], ops[1:])):  # STOW; then the reads, on a new server
            with _server(data, work / f"mf-{frames}-{i}.log") as (base, pid, idle):
                for op, fn in group:
                    peak, moved, secs = _peak(pid, functools.partial(fn, base))
                    rows.append(_row("multiframe", op, size, idle, peak, moved, secs))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return rows
