"""Static trees: layout, contents, frames, thresholds, export round trip, dedup."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from pydicom.encaps import generate_frames

from tests.static_support import FILES, ct_series, path, read
from webpacs.cli.main import main
from webpacs.static import dedup
from webpacs.static.build import Options, build_from_files
from webpacs.static.export import instance_bytes
from webpacs.static.instance import Thresholds
from webpacs.static.tree import Tree, read_gz_json, read_mht, read_part


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tree")
    report = build_from_files([path(n) for n in FILES], Tree(out), Options(dedup=True))
    assert report.failures == []
    assert report.instances == len(FILES)
    return out


def _ids(name: str) -> tuple[str, str, str]:
    ds = read(path(name))
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def test_layout(tree: Path) -> None:
    studies = read_gz_json(tree / "studies/index.json.gz")
    uids = {r["0020000D"]["Value"][0] for r in studies}
    assert uids == {_ids(n)[0] for n in FILES}
    for name in FILES:
        s, x, i = _ids(name)
        sdir = tree / "studies" / s
        assert read_gz_json(sdir / "index.json.gz")[0]["0020000D"]["Value"] == [s]
        series = read_gz_json(sdir / "series/index.json.gz")
        assert x in {r["0020000E"]["Value"][0] for r in series}
        xdir = sdir / "series" / x
        assert read_gz_json(xdir / "series-singleton.json.gz")[0]["0020000E"]["Value"] == [x]
        rows = read_gz_json(xdir / "instances/index.json.gz")
        assert i in {r["00080018"]["Value"][0] for r in rows}
        meta = read_gz_json(xdir / f"instances/{i}/metadata.gz")[0]
        ts = read(path(name)).file_meta.TransferSyntaxUID
        expected = "1.2.840.10008.1.2.1" if ts == "1.2.840.10008.1.2.1.99" else ts
        assert meta["00083002"] == {"vr": "UI", "Value": [expected]}
        assert "00081190" not in rows[0]


def test_frames_are_byte_equal(tree: Path) -> None:
    for name in FILES:
        ds = read(path(name))
        if "PixelData" not in ds:
            continue
        s, x, i = _ids(name)
        fdir = tree / f"studies/{s}/series/{x}/instances/{i}/frames"
        nframes = int(ds.get("NumberOfFrames", 1) or 1)
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            originals = list(generate_frames(ds.PixelData, number_of_frames=nframes))
            suffix = ".mht"
        else:
            size = ds.Rows * ds.Columns * ds.SamplesPerPixel * ds.BitsAllocated // 8
            originals = [ds.PixelData[k * size : (k + 1) * size] for k in range(nframes)]
            suffix = ".mht.gz"
        files = sorted(fdir.iterdir(), key=lambda p: int(p.name.split(".")[0]))
        assert [p.name for p in files] == [f"{k}{suffix}" for k in range(1, nframes + 1)]
        for f, original in zip(files, originals, strict=True):
            raw = f.read_bytes()
            boundary, body, ctype = read_part(gzip.decompress(raw) if suffix == ".mht.gz" else raw)
            assert body == original, name
            assert "transfer-syntax=" in ctype
            if suffix == ".mht":
                assert ctype.split(";")[0] in ("image/jpeg", "image/jp2", "image/dicom-rle")
            else:
                assert ctype.startswith("application/octet-stream")


def test_bulk_uris_resolve_relative_to_their_file(tree: Path) -> None:
    # rtplan and the CT have binary values above the private threshold (64 bytes)
    found = 0
    for meta_file in tree.glob("studies/*/series/*/metadata.gz"):
        text = gzip.decompress(meta_file.read_bytes())
        for item in orjson.loads(text):
            for key, el in item.items():
                uri = el.get("BulkDataURI")
                if uri is None:
                    continue
                if key == "7FE00010":
                    assert (meta_file.parent / uri).is_dir()
                    continue
                found += 1
                assert uri.startswith("../../bulkdata/")
                assert read_mht((meta_file.parent / uri).resolve())
                inst = meta_file.parent / "instances" / item["00080018"]["Value"][0]
                inner = read_gz_json(inst / "metadata.gz")[0][key]["BulkDataURI"]
                assert (inst / inner).resolve() == (meta_file.parent / uri).resolve()
    assert found > 0


def test_thresholds(tmp_path: Path) -> None:
    small = Options(Thresholds(public=16, private=16))
    build_from_files([path("CT_small.dcm")], Tree(tmp_path), small)
    s, x, i = _ids("CT_small.dcm")
    meta = read_gz_json(tmp_path / f"studies/{s}/series/{x}/instances/{i}/metadata.gz")[0]
    big = {k for k, v in meta.items() if "BulkDataURI" in v} - {"7FE00010"}
    inline = {k for k, v in meta.items() if "InlineBinary" in v}
    assert big and all(len(v["InlineBinary"]) <= 24 for k, v in meta.items() if k in inline)


@pytest.mark.parametrize("name", FILES)
def test_export_round_trip(tree: Path, name: str) -> None:
    original = read(path(name))
    rebuilt = read(instance_bytes(tree, *_ids(name)))
    assert rebuilt == original
    assert rebuilt.get("PixelData") == original.get("PixelData")
    ts = original.file_meta.TransferSyntaxUID
    if ts != "1.2.840.10008.1.2.1.99":  # deflated objects are stored inflated
        assert rebuilt.file_meta.TransferSyntaxUID == ts


def test_export_cli(tree: Path, tmp_path: Path) -> None:
    s, x, i = _ids("SC_rgb_rle_2frame.dcm")
    result = CliRunner().invoke(
        main, ["static", "export", str(tree), "--study", s, "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert read(tmp_path / s / x / f"{i}.dcm") == read(path("SC_rgb_rle_2frame.dcm"))


def test_dedup_round_trip_and_ratio(tmp_path: Path) -> None:
    files = []
    for k, data in enumerate(ct_series(120)):
        f = tmp_path / "in" / f"{k}.dcm"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(data)
        files.append(f)
    out = tmp_path / "tree"
    result = CliRunner().invoke(
        main, ["static", "build", "--dedup", "--out", str(out), "--from", *map(str, files)]
    )
    assert result.exit_code == 0, result.output
    s, x = read(files[0]).StudyInstanceUID, read(files[0]).SeriesInstanceUID
    plain = gzip.decompress((out / f"studies/{s}/series/{x}/metadata.gz").read_bytes())
    assert dedup.series_metadata(out, s, x) == plain
    assert len(dedup.read_series(out, s, x)) == 120
    sizes = dedup.sizes(out, s, x)
    print(
        "dedup sizes",
        sizes,
        "raw ratio",
        sizes["dedup_raw"] / sizes["plain_raw"],
        "gz ratio",
        sizes["dedup_gz"] / sizes["plain_gz"],
    )
    assert sizes["dedup_raw"] < sizes["plain_raw"] / 10
