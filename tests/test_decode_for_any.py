"""``server.decodeForAny``: frames stored in the listed families go out decoded (Explicit VR
Little Endian) to a client that leaves the syntax to the server (``transfer-syntax=*``, as
the image loaders of OHIF 2 and 3 ask), where decoding keeps the instance's own pixel
description; as stored when the client names the stored syntax, when decoding would change
the Photometric Interpretation (YBR), or when the installed codecs cannot decode it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from tests.conftest import RunningServer, data_file, start_server
from tests.test_dicomweb_client import LOADER_ACCEPT, multipart_parts
from tests.test_ops import stow
from tests.test_transcode import EXPLICIT, decode_frame, frame_url, original_pixels, read
from webpacs.config import ConfigError, isolated

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")

JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
J2K = "1.2.840.10008.1.2.4.90"
FILES = {  # name -> stored syntax
    "JPGLosslessP14SV1_1s_1f_8b.dcm": JPEG_LOSSLESS,  # MONOCHROME2: decoded
    "SC_rgb_jpeg.dcm": JPEG_BASELINE,  # RGB: decoded
    "SC_rgb_dcmtk_+eb+cy+s2.dcm": JPEG_BASELINE,  # YBR_FULL_422: stays as stored
    "JPEG-lossy.dcm": JPEG_EXTENDED,  # 12-bit, which no installed codec decodes
    "emri_small_jpeg_2k_lossless.dcm": J2K,  # a family not listed: as stored
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two servers holding the same files: with decodeForAny and without."""
    datasets = {name: read(name) for name in FILES}
    on = start_server(
        tmp_path_factory.mktemp("on"), server={"decodeForAny": ["jpeglossless", "jpeg"]}
    )
    off = start_server(tmp_path_factory.mktemp("off"))
    try:
        files = [data_file(name) for name in FILES]
        for srv in (on, off):  # the files as they are (dicomweb-client rewrites them)
            assert stow(srv.url, *files).status_code == 200
        yield {"on": on, "off": off, "datasets": datasets}
    finally:
        on.stop()
        off.stop()


def first_frame(server: RunningServer, name: str, ds: Any, accept: str) -> tuple[str, bytes]:
    r = requests.get(frame_url(server, ds, "1"), headers={"Accept": accept}, timeout=30)
    assert r.status_code == 200, (name, r.text)
    ((ctype, body),) = multipart_parts(r)
    return ctype, body


@pytest.mark.parametrize("name", ["JPGLosslessP14SV1_1s_1f_8b.dcm", "SC_rgb_jpeg.dcm"])
def test_listed_family_goes_out_decoded_to_any(servers: Any, name: str) -> None:
    ds = servers["datasets"][name]
    ctype, body = first_frame(servers["on"], name, ds, LOADER_ACCEPT)
    assert ctype == f"application/octet-stream; transfer-syntax={EXPLICIT}"
    decoded = decode_frame(ds, body, EXPLICIT)
    assert np.array_equal(decoded, original_pixels(ds)[0])
    # dicomweb-client asking the loader's way gets the same decoded bytes
    got = DICOMwebClient(servers["on"].url).retrieve_instance_frames(
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
        [1],
        media_types=(("application/octet-stream", "*"),),
    )
    assert got == [body]
    # without the setting the same request gets the stored bytes
    ctype, stored = first_frame(servers["off"], name, ds, LOADER_ACCEPT)
    assert ctype.endswith(f"transfer-syntax={FILES[name]}")
    assert stored != body


def test_naming_the_stored_syntax_still_gets_it(servers: Any) -> None:
    name = "JPGLosslessP14SV1_1s_1f_8b.dcm"
    ds = servers["datasets"][name]
    accept = f"multipart/related; type=image/jpeg; transfer-syntax={JPEG_LOSSLESS}"
    ctype, body = first_frame(servers["on"], name, ds, accept)
    assert ctype == f"image/jpeg; transfer-syntax={JPEG_LOSSLESS}"
    assert first_frame(servers["off"], name, ds, accept)[1] == body


@pytest.mark.parametrize(
    "name, why",
    [
        ("SC_rgb_dcmtk_+eb+cy+s2.dcm", "decoding makes YBR_FULL_422 RGB"),
        ("JPEG-lossy.dcm", "no installed codec decodes 12-bit JPEG extended"),
        ("emri_small_jpeg_2k_lossless.dcm", "JPEG 2000 is not listed"),
    ],
)
def test_otherwise_as_stored(servers: Any, name: str, why: str) -> None:
    ds = servers["datasets"][name]
    ctype, body = first_frame(servers["on"], name, ds, LOADER_ACCEPT)
    assert ctype.endswith(f"transfer-syntax={FILES[name]}"), why
    assert first_frame(servers["off"], name, ds, LOADER_ACCEPT) == (ctype, body), why


def test_only_known_families(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="decodeForAny items must be among"):
        isolated({"dataDir": str(tmp_path), "server": {"decodeForAny": ["uncompressed"]}})
