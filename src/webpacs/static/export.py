"""Back to Part 10: rebuild instances from a static tree.

The instance metadata gives every attribute; ``BulkDataURI``s are resolved relative to the
metadata file; the pixel data is the instance's frames, concatenated (native) or encapsulated
again with the fragment layout and Basic Offset Table recorded in ``fragments.json``
(PS3.5 A.4), so the rebuilt pixel data is byte-equal to the original.
"""

from __future__ import annotations

import base64
import posixpath
import struct
from pathlib import Path
from typing import Any

import orjson
from pydicom.dataset import Dataset

from webpacs.core import part10
from webpacs.core.media import EXPLICIT_VR_BIG_ENDIAN, UNCOMPRESSED, swap_bytes
from webpacs.errors import NotFound
from webpacs.static.instance import AVAILABLE_TS
from webpacs.static.tree import instance_dir, read_gz_json, read_mht, series_dir, study_dir


def _frame_files(idir: Path) -> list[Path]:
    files = [p for p in (idir / "frames").glob("*.mht*") if p.name.split(".")[0].isdigit()]
    return sorted(files, key=lambda p: int(p.name.split(".")[0]))


def _item(data: bytes) -> bytes:
    return struct.pack("<HHL", 0xFFFE, 0xE000, len(data)) + data


def pixel_data(idir: Path, ts: str, bits_allocated: int) -> bytes:
    """The PixelData value of the instance at ``idir`` from its frame files."""
    frames = [read_mht(p) for p in _frame_files(idir)]
    if ts in UNCOMPRESSED:
        data = b"".join(frames)
        if ts == EXPLICIT_VR_BIG_ENDIAN:
            data = swap_bytes(data, bits_allocated // 8)
        return data + b"\0" if len(data) % 2 else data
    layout = orjson.loads((idir / "fragments.json").read_bytes())
    out = [_item(base64.b64decode(layout["bot"]))]
    for frame, lengths in zip(frames, layout["fragments"], strict=True):
        pos = 0
        for n in lengths:
            out.append(_item(frame[pos : pos + n]))
            pos += n
    return b"".join(out)  # pydicom writes the sequence delimiter itself


def instance_dataset(root: str | Path, study: str, series: str, sop: str) -> Dataset:
    """The instance as a pydicom ``Dataset`` with its File Meta Information."""
    root = Path(root)
    rel = instance_dir(study, series, sop)
    idir = root / rel
    if not (idir / "metadata.gz").exists():
        raise NotFound(f"instance {sop} is not in the tree")
    meta: dict[str, Any] = read_gz_json(idir / "metadata.gz")[0]
    ts = str(meta.pop(AVAILABLE_TS)["Value"][0])
    bits = int((meta.get("00280100", {}).get("Value") or [8])[0])

    def handler(tag: str, vr: str, uri: str) -> bytes:
        if tag.upper() == "7FE00010" and uri.endswith("/frames") or uri == "frames":
            return pixel_data(idir, ts, bits)
        target = root / posixpath.normpath(posixpath.join(rel, uri))
        return read_mht(target)

    ds = Dataset.from_json(meta, bulk_data_uri_handler=handler)
    if "PixelData" in ds and ts not in UNCOMPRESSED:
        ds["PixelData"].is_undefined_length = True
    ds.file_meta = part10.file_meta(ds.SOPClassUID, ds.SOPInstanceUID, ts)
    return ds


def instance_bytes(root: str | Path, study: str, series: str, sop: str) -> bytes:
    """The instance as Part 10 bytes."""
    return part10.storable_bytes(instance_dataset(root, study, series, sop))


def part10_path(out: Path, study: str, series: str, sop: str) -> Path:
    """Where an exported instance goes: ``OUT/<study>/<series>/<sop>.dcm`` (this export and
    the cohort export of ``webpacs export`` share it)."""
    return out / study / series / f"{sop}.dcm"


def export(root: str | Path, study: str, out: str | Path, series: str | None = None) -> list[Path]:
    """Write the study (or one series) as ``OUT/<S>/<X>/<I>.dcm``; returns the files."""
    root, out = Path(root), Path(out)
    sdir = root / study_dir(study)
    if not sdir.exists():
        raise NotFound(f"study {study} is not in the tree")
    series_uids = (
        [series] if series else sorted(p.name for p in (sdir / "series").iterdir() if p.is_dir())
    )
    files = []
    for x in series_uids:
        inst_root = root / series_dir(study, x) / "instances"
        if not inst_root.exists():
            raise NotFound(f"series {x} is not in the tree")
        for idir in sorted(p for p in inst_root.iterdir() if p.is_dir()):
            target = part10_path(out, study, x, idir.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(instance_bytes(root, study, x, idir.name))
            files.append(target)
    return files
