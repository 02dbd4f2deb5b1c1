"""Benchmark dataset: N studies x M series x K instances of 512x512 16-bit CT images.

Built from pydicom's ``CT_small.dcm`` with new UIDs, distinct patients, dates,
modalities and descriptions, and new pixel data. Written once to a cache directory
(default ``bench/.data/<size>``) with a ``manifest.json`` describing what is there;
a later run reuses the files when the manifest matches.

    python bench/generate.py --size standard
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import generate_uid

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = HERE / ".data"
#: Bump when the generated content changes, so old caches are rebuilt.
FORMAT = 2
#: Compressed copies of the first instances, for the transcoding workloads: syntax -> name.
CODECS = {
    "1.2.840.10008.1.2.4.90": "j2k",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.80": "jls",  # JPEG-LS lossless
}
CODEC_INSTANCES = 10

#: name -> (studies, series per study, instances per series)
SIZES: dict[str, tuple[int, int, int]] = {
    "small": (4, 2, 25),
    "standard": (20, 4, 50),
}

MODALITIES = ["CT", "MR", "PT", "US", "XA"]
BODY_PARTS = ["HEAD", "CHEST", "ABDOMEN", "PELVIS", "KNEE"]
ROWS = COLUMNS = 512


@dataclass
class SeriesInfo:
    uid: str
    number: int
    instances: list[str]
    files: list[str]  # relative to the manifest's directory


@dataclass
class StudyInfo:
    uid: str
    patient_id: str
    patient_name: str
    date: str
    modality: str
    series: list[SeriesInfo] = field(default_factory=list)


@dataclass
class CodecSeries:
    """A series of compressed copies (new UIDs) of dataset instances, outside ``studies``:
    stored after the timed STOW, read by the transcoding workloads."""

    transfer_syntax: str
    study: str
    series: str
    instances: list[str]
    files: list[str]  # relative to the manifest's directory


@dataclass
class Manifest:
    """What a generated dataset holds (written as ``manifest.json`` beside the files)."""

    format: int
    size: str
    dims: tuple[int, int, int]
    total_bytes: int
    studies: list[StudyInfo]
    root: str = ""  # absolute directory of the files (not stored)
    codecs: list[CodecSeries] = field(default_factory=list)

    @property
    def instance_count(self) -> int:
        return sum(len(se.instances) for st in self.studies for se in st.series)

    def files(self) -> list[Path]:
        base = Path(self.root)
        return [base / f for st in self.studies for se in st.series for f in se.files]

    def codec_files(self) -> list[Path]:
        """Files of the compressed series (not part of ``files()`` nor of the timed STOW)."""
        return [Path(self.root) / f for cs in self.codecs for f in cs.files]

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("root")
        return json.dumps(d, indent=1)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        raw = json.loads(path.read_text())
        studies = [
            StudyInfo(
                **{k: v for k, v in st.items() if k != "series"},
                series=[SeriesInfo(**se) for se in st["series"]],
            )
            for st in raw["studies"]
        ]
        return cls(
            format=raw["format"],
            size=raw["size"],
            dims=tuple(raw["dims"]),  # type: ignore[arg-type]
            total_bytes=raw["total_bytes"],
            studies=studies,
            root=str(path.parent),
            codecs=[CodecSeries(**cs) for cs in raw.get("codecs", [])],
        )


def _template() -> Dataset:
    path = get_testdata_file("CT_small.dcm")
    assert isinstance(path, str)
    ds = pydicom.dcmread(path)
    for tag in list(ds.keys()):
        if tag.is_private or tag == 0xFFFCFFFC:  # private tags and trailing padding
            del ds[tag]
    ds.Rows = ROWS
    ds.Columns = COLUMNS
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if "PixelPaddingValue" in ds:
        del ds["PixelPaddingValue"]
    if "OtherPatientIDsSequence" in ds:
        del ds["OtherPatientIDsSequence"]
    return ds


def _pixels(rng: np.random.Generator, base: np.ndarray) -> bytes:
    noise = rng.integers(0, 64, size=base.shape, dtype=np.uint16)
    return (base + noise).astype("<u2").tobytes()


def generate(
    size: str = "standard",
    cache: Path = DEFAULT_CACHE,
    *,
    dims: tuple[int, int, int] | None = None,
    quiet: bool = False,
) -> Manifest:
    """Write (or reuse) the dataset ``size`` under ``cache/size`` and return its manifest."""
    n_st, n_se, n_in = dims or SIZES[size]
    out = cache / size
    mpath = out / "manifest.json"
    if mpath.is_file():
        try:
            m = Manifest.load(mpath)
            if (
                m.format == FORMAT
                and tuple(m.dims) == (n_st, n_se, n_in)
                and all(f.is_file() for f in m.files())
            ):
                return m
        except (KeyError, ValueError, TypeError):
            pass
        mpath.unlink()
    out.mkdir(parents=True, exist_ok=True)
    template = _template()
    rng = np.random.default_rng(20240601)
    yy, xx = np.mgrid[0:ROWS, 0:COLUMNS]
    start = time.monotonic()
    total = 0
    studies: list[StudyInfo] = []
    first = dt.date(2020, 1, 1)
    for s in range(n_st):
        date = (first + dt.timedelta(days=17 * s)).strftime("%Y%m%d")
        st = StudyInfo(
            uid=generate_uid(),
            patient_id=f"BENCH{s:04d}",
            patient_name=f"Bench^Patient{s:04d}",
            date=date,
            modality=MODALITIES[s % len(MODALITIES)],
        )
        accession = f"ACC{s:06d}"
        for k in range(n_se):
            se = SeriesInfo(uid=generate_uid(), number=k + 1, instances=[], files=[])
            frame_of_ref = generate_uid()
            radius = 60 + 40 * k + 5 * s
            disk = (((yy - ROWS // 2) ** 2 + (xx - COLUMNS // 2) ** 2) < radius**2).astype(
                np.uint16
            )
            base = (disk * 1000 + (yy + xx) // 4).astype(np.uint16)
            sdir = out / f"s{s:03d}" / f"x{k:02d}"
            sdir.mkdir(parents=True, exist_ok=True)
            for i in range(n_in):
                ds = template.copy()
                ds.file_meta = FileMetaDataset(template.file_meta)
                sop = generate_uid()
                ds.SOPInstanceUID = sop
                ds.file_meta.MediaStorageSOPInstanceUID = sop
                ds.StudyInstanceUID = st.uid
                ds.SeriesInstanceUID = se.uid
                ds.FrameOfReferenceUID = frame_of_ref
                ds.PatientID = st.patient_id
                ds.PatientName = st.patient_name
                ds.PatientSex = "MF"[s % 2]
                ds.PatientBirthDate = f"{1940 + s:04d}0101"
                ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = date
                ds.StudyTime = f"{8 + s % 10:02d}3000"
                ds.AccessionNumber = accession
                ds.StudyID = str(s + 1)
                ds.StudyDescription = f"Bench study {s + 1} {BODY_PARTS[s % len(BODY_PARTS)]}"
                ds.Modality = st.modality
                ds.SeriesNumber = k + 1
                ds.SeriesDescription = f"Series {k + 1} of study {s + 1}"
                ds.InstanceNumber = i + 1
                ds.ImagePositionPatient = [-125.0, -125.0, float(i) * 2.5]
                ds.SliceLocation = float(i) * 2.5
                ds.PixelData = _pixels(rng, base)
                ds["PixelData"].VR = "OW"
                name = f"i{i:03d}.dcm"
                path = sdir / name
                tmp = path.with_suffix(".tmp")
                ds.save_as(tmp, enforce_file_format=True)
                os.replace(tmp, path)
                total += path.stat().st_size
                se.instances.append(sop)
                se.files.append(str(path.relative_to(out)))
            st.series.append(se)
        studies.append(st)
        if not quiet:
            done = (s + 1) * n_se * n_in
            print(
                f"generated {done}/{n_st * n_se * n_in} instances"
                f" ({total / 1e6:.0f} MB, {time.monotonic() - start:.0f} s)",
                file=sys.stderr,
            )
    codecs = _codec_series(out, studies)
    m = Manifest(FORMAT, size, (n_st, n_se, n_in), total, studies, str(out), codecs)
    tmp = mpath.with_suffix(".tmp")
    tmp.write_text(m.to_json())
    os.replace(tmp, mpath)
    return m


def _codec_series(out: Path, studies: list[StudyInfo]) -> list[CodecSeries]:
    """JPEG 2000 and JPEG-LS lossless copies of the first instances, one series each, in a
    study of their own; none when the encoders (the ``codecs`` extra) are not installed."""
    from pydicom.pixels import get_encoder

    first = studies[0].series[0]
    study = generate_uid()
    made = []
    for ts, name in CODECS.items():
        if not get_encoder(ts).is_available:
            continue
        cs = CodecSeries(ts, study, generate_uid(), [], [])
        cdir = out / f"codec-{name}"
        cdir.mkdir(parents=True, exist_ok=True)
        for i, rel in enumerate(first.files[:CODEC_INSTANCES]):
            ds = pydicom.dcmread(out / rel)
            ds.StudyInstanceUID = study
            ds.SeriesInstanceUID = cs.series
            ds.SeriesDescription = f"Bench {name} copies"
            sop = generate_uid()
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
            ds.compress(ts, generate_instance_uid=False)
            path = cdir / f"i{i:03d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            cs.instances.append(sop)
            cs.files.append(str(path.relative_to(out)))
        made.append(cs)
    return made


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="standard")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache directory")
    args = p.parse_args(argv)
    m = generate(args.size, args.cache)
    print(f"{m.instance_count} instances, {m.total_bytes / 1e6:.0f} MB in {m.root}")


if __name__ == "__main__":
    main()
