"""Recompression as static-wado's ``mkdicomweb --recompress`` does it: the ``ingest.recompress``
setting (stored objects) and ``webpacs static build --recompress`` (static frames). Pixels
decoded from the recompressed data equal pydicom's decoding of the original."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from tests.conftest import data_file, make_settings, start_server
from webpacs.cli.main import main
from webpacs.errors import ConfigError
from webpacs.static.export import instance_dataset
from webpacs.static.tree import read_gz_json

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")

JLS = "1.2.840.10008.1.2.4.80"
#: file -> its family (None: lossy, never recompressed)
FILES = {
    "CT_small.dcm": "uncompressed",
    "emri_small_jpeg_2k_lossless.dcm": "jp2",
    "SC_rgb_rle_2frame.dcm": "rle",
    "JPGLosslessP14SV1_1s_1f_8b.dcm": "jpeglossless",
    "SC_rgb_dcmtk_+eb+cy+s2.dcm": None,  # JPEG baseline: lossy, kept as received
}


def read(name: str) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(data_file(name))


def pixels(ds: Dataset) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ds.pixel_array


@pytest.mark.parametrize(
    "families", [["uncompressed", "jp2", "jpeglossless", "rle"], ["rle"], []], ids=str
)
def test_ingest_recompress(tmp_path: Path, families: list[str]) -> None:
    server = start_server(tmp_path / "data", ingest={"recompress": families})
    try:
        client = DICOMwebClient(server.url)
        originals = {name: read(name) for name in FILES}
        client.store_instances(list(originals.values()))
        for name, family in FILES.items():
            ds = originals[name]
            rec = server.store.index.get(ds.SOPInstanceUID)
            assert rec is not None
            recompressed = family in families
            stored_ts = JLS if recompressed else str(ds.file_meta.TransferSyntaxUID)
            assert rec.transfer_syntax == stored_ts, name
            got = client.retrieve_instance(
                ds.StudyInstanceUID,
                ds.SeriesInstanceUID,
                ds.SOPInstanceUID,
                media_types=(("application/dicom", "*"),),
            )
            assert got.file_meta.TransferSyntaxUID == stored_ts
            assert got.SOPInstanceUID == ds.SOPInstanceUID
            np.testing.assert_array_equal(pixels(got), pixels(ds))
            if recompressed:
                assert got.get("LossyImageCompression") == ds.get("LossyImageCompression")
                frames = client.retrieve_instance_frames(
                    ds.StudyInstanceUID,
                    ds.SeriesInstanceUID,
                    ds.SOPInstanceUID,
                    [1],
                    media_types=(("image/jls", JLS),),
                )
                assert frames[0][:2] == b"\xff\xd8"  # a JPEG-LS codestream, as stored
    finally:
        server.stop()


def test_recompress_setting_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ingest.recompress"):
        make_settings(tmp_path, ingest={"recompress": ["zip"]})
    settings = make_settings(tmp_path, ingest={"recompress": ["jp2", "rle"]})
    assert settings.get("ingest", "recompress") == ["jp2", "rle"]


def _build(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(main, ["static", "build", "--json", *args])
    assert result.exit_code == 0, result.output
    assert ("recompressed to JPEG-LS" in result.output) == ("--no-recompress" not in args)
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_static_build_recompress(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in FILES:
        shutil.copy(data_file(name), inputs / name)
    tree = tmp_path / "tree"
    numbers = _build(
        "--from", str(inputs), "--out", str(tree), "-r", "uncompressed,jp2", "-r", "rle"
    )
    ratio = numbers["recompress_ratio"]
    assert isinstance(ratio, float) and 0 < ratio < 1
    assert numbers["recompressed_in"] and numbers["recompressed_out"]
    for name, family in FILES.items():
        ds = read(name)
        study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        idir = tree / f"studies/{study}/series/{series}/instances/{sop}"
        meta = read_gz_json(idir / "metadata.gz")[0]
        available = meta["00083002"]["Value"][0]
        recompressed = family in ("uncompressed", "jp2", "rle")
        assert (available == JLS) == recompressed, name
        first = (idir / "frames/1.mht").read_bytes() if recompressed else b""
        assert not recompressed or b"image/jls" in first
        rebuilt = instance_dataset(tree, study, series, sop)
        assert str(rebuilt.file_meta.TransferSyntaxUID) == available
        np.testing.assert_array_equal(pixels(rebuilt), pixels(ds))

    plain = _build(
        "--from", str(inputs), "--out", str(tmp_path / "plain"), "-r", "rle", "--no-recompress"
    )
    assert plain["recompress_ratio"] is None


def test_static_build_recompress_refuses_unknown_alias(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["static", "build", "--out", str(tmp_path), "-r", "zip"])
    assert result.exit_code != 0
    assert "uncompressed" in result.output
