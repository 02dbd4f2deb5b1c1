"""Walk a static DICOMweb tree the way OHIF does and parse every answer with the rules the
static-wado readers use (not with webpacs' own reader), checking contents against the
original Part 10 files.

The rules, from RadicalImaging/Static-DICOMWeb and the JavaScript dicomweb-client/cornerstone
loaders OHIF uses:

* every JSON document is gzip'd JSON (sent with ``Content-Encoding: gzip``);
* a frame or bulk data file is one multipart part whose boundary is found *in the body*: the
  header block ends at the first ``\\r\\n\\r\\n``, the boundary is its first line starting with
  ``--``, the part's type its ``Content-Type:`` line, and the content ends 2 bytes (``\\r\\n``)
  before the next occurrence of the boundary;
* frames are requested as ``.../frames/<n>`` (``<n>.mht``, else ``<n>.mht.gz``, on disk);
* a relative ``BulkDataURI`` in series metadata resolves against the series URL.
"""

from __future__ import annotations

import gzip
import json
import posixpath
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

#: ``get(DICOMweb path) -> body`` (after any Content-Encoding is undone)
Fetch = Callable[[str], bytes]
PIXEL_DATA = "7FE00010"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
NATIVE = {"1.2.840.10008.1.2": (EXPLICIT_LE,)}


def file_fetcher(root: Path) -> Fetch:
    """Read a tree's files for DICOMweb paths, as static-wado's own file reader resolves them."""

    def get(url: str) -> bytes:
        rel = url.lstrip("/")
        if rel.endswith(("studies", "/series", "/instances")):
            name = f"{rel}/index.json.gz"
        elif rel.endswith("/metadata"):
            name = f"{rel}.gz"
        elif "/frames/" in rel:
            name = f"{rel}.mht.gz" if (root / f"{rel}.mht.gz").exists() else f"{rel}.mht"
        else:
            name = rel
        data = (root / name).read_bytes()
        return gzip.decompress(data) if name.endswith(".gz") else data

    return get


def http_fetcher(base: str, client: httpx.Client) -> Fetch:
    """GET over HTTP with ``Accept-Encoding: gzip`` (httpx undoes the encoding)."""

    def get(url: str) -> bytes:
        r = client.get(base + url, headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200, (url, r.status_code)
        ctype = r.headers["content-type"]
        if "/frames/" in url or "/bulkdata/" in url:
            assert ctype.startswith("multipart/related"), (url, ctype)
        else:
            assert ctype.startswith("application/dicom+json"), (url, ctype)
        return r.content

    return get


def gz_json(data: bytes) -> Any:
    """JSON, gunzipping first when the body is still gzip'd."""
    return json.loads(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)


def one_part(data: bytes) -> tuple[str, bytes]:
    """``(part content type, content)`` by the static-wado / cornerstone rule (see module doc)."""
    end = data.find(b"\r\n\r\n")
    assert end > 0, "no multipart header"
    lines = data[:end].decode("latin-1").split("\r\n")
    assert lines[0].startswith("--"), "the first line is not the boundary"
    boundary = next(line for line in lines if line.startswith("--"))
    ctype = next(line[13:].strip() for line in lines if line.startswith("Content-Type:"))
    stop = data.find(boundary.encode("latin-1"), end + 4)
    assert stop > 0, "no closing boundary"
    return ctype, data[end + 4 : stop - 2]


def original_frames(ds: Dataset) -> list[bytes]:
    """The frames of a dataset, as a WADO-RS frame retrieve returns them."""
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        return list(generate_frames(ds.PixelData, number_of_frames=n))
    size = ds.Rows * ds.Columns * ds.SamplesPerPixel * ds.BitsAllocated // 8
    return [ds.PixelData[k * size : (k + 1) * size] for k in range(n)]


def _value_bytes(ds: Dataset, tagpath: list[str]) -> bytes | None:
    node: Any = ds
    for i in range(0, len(tagpath) - 1, 2):
        node = node[int(tagpath[i], 16)].value[int(tagpath[i + 1])]
    value = node[int(tagpath[-1], 16)].value
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, float):
        return struct.pack("<f" if node[int(tagpath[-1], 16)].VR in ("FL", "OF") else "<d", value)
    return None


@dataclass
class WalkReport:
    """What a walk saw."""

    studies: int = 0
    series: int = 0
    instances: int = 0
    frames: int = 0
    bulk: int = 0
    syntaxes: set[str] = field(default_factory=set)


def walk(get: Fetch, originals: dict[str, Dataset]) -> WalkReport:
    """Walk every study of the tree through ``get``; ``originals`` maps SOP Instance UID to
    the Part 10 dataset each instance was built from, and every instance must be found."""
    rep = WalkReport()
    expected: dict[str, dict[str, set[str]]] = {}
    for sop, ds in originals.items():
        expected.setdefault(ds.StudyInstanceUID, {}).setdefault(ds.SeriesInstanceUID, set()).add(
            sop
        )
    studies = gz_json(get("/studies"))
    assert {r["0020000D"]["Value"][0] for r in studies} == set(expected)
    for row in studies:
        study = row["0020000D"]["Value"][0]
        n_instances = sum(len(s) for s in expected[study].values())
        assert row["00201206"]["Value"] == [len(expected[study])]  # series in study
        assert row["00201208"]["Value"] == [n_instances]  # instances in study
        assert row["00080061"]["Value"]  # modalities in study (the study list shows them)
        rep.studies += 1
        series_rows = gz_json(get(f"/studies/{study}/series"))
        assert {r["0020000E"]["Value"][0] for r in series_rows} == set(expected[study])
        for srow in series_rows:
            series = srow["0020000E"]["Value"][0]
            rep.series += 1
            sops = expected[study][series]
            assert srow["00201209"]["Value"] == [len(sops)]
            surl = f"/studies/{study}/series/{series}"
            rows = gz_json(get(f"{surl}/instances"))
            assert {r["00080018"]["Value"][0] for r in rows} == sops
            metadata = gz_json(get(f"{surl}/metadata"))
            assert isinstance(metadata, list)
            assert {m["00080018"]["Value"][0] for m in metadata} == sops
            for meta in metadata:
                _instance(get, rep, surl, meta, originals[meta["00080018"]["Value"][0]])
    assert rep.instances == len(originals)
    return rep


def _instance(get: Fetch, rep: WalkReport, surl: str, meta: dict[str, Any], ds: Dataset) -> None:
    sop = meta["00080018"]["Value"][0]
    iurl = f"{surl}/instances/{sop}"
    rep.instances += 1
    alone = gz_json(get(f"{iurl}/metadata"))
    assert len(alone) == 1 and alone[0]["00080018"] == meta["00080018"]
    assert set(alone[0]) == set(meta)
    ts = meta["00083002"]["Value"][0]
    rep.syntaxes.add(ts)
    if PIXEL_DATA in meta:
        originals = original_frames(ds)
        assert int((meta.get("00280008", {}).get("Value") or [1])[0]) == len(originals)
        for n, original in enumerate(originals, 1):
            ctype, body = one_part(get(f"{iurl}/frames/{n}"))
            assert body == original, (sop, n)
            params = dict(p.strip().partition("=")[::2] for p in ctype.split(";")[1:] if "=" in p)
            # native pixel data is sent as explicit VR little endian (the same bytes)
            assert params["transfer-syntax"] in (ts, *NATIVE.get(ts, ())), ctype
            rep.frames += 1
    _bulk(get, rep, surl, meta, ds, [])


def _bulk(
    get: Fetch, rep: WalkReport, surl: str, meta: dict[str, Any], ds: Dataset, prefix: list[str]
) -> None:
    for key, el in meta.items():
        if el.get("vr") == "SQ":
            for i, item in enumerate(el.get("Value") or []):
                _bulk(get, rep, surl, item, ds, [*prefix, key, str(i)])
        elif "BulkDataURI" in el and not (key == PIXEL_DATA and not prefix):
            uri = el["BulkDataURI"]
            assert not uri.startswith(("/", "http")), uri  # relative, so any host serves it
            url = posixpath.normpath(f"{surl}/{uri}")
            ctype, body = one_part(get(url))
            assert ctype.startswith("application/octet-stream")
            expected = _value_bytes(ds, [*prefix, key])
            if expected is not None:
                assert body == expected, (key, url)
            rep.bulk += 1
