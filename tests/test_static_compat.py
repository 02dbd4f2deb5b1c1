"""Layout compatibility with static-wado: the paths OHIF requests from a static-wado root,
parsed with the rules static-wado readers use (see :mod:`tests.static_walk`), over a tree built
from pydicom's test files (several transfer syntaxes, multi-frame) and a multi-series study,
read from disk and through ``webpacs static serve``."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import pytest
from pydicom.dataset import Dataset

from tests.static_support import (
    FILES,
    ServerThread,
    multi_series_study,
    path,
    read,
    write_inputs,
)
from tests.static_walk import file_fetcher, http_fetcher, one_part, walk
from webpacs.static.build import Options, build_from_files
from webpacs.static.tree import BOUNDARY, Tree
from webpacs.web.static_app import create_static_app

#: syntaxes the tree must hold (frames): explicit LE (native and inflated), JPEG baseline,
#: JPEG lossless, JPEG 2000 (lossless and lossy), RLE
SYNTAXES = {
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Dataset]]:
    tmp = tmp_path_factory.mktemp("compat")
    inputs = [path(n) for n in FILES] + write_inputs(tmp / "in", multi_series_study(3, 2))
    report = build_from_files(inputs, Tree(tmp / "tree"), Options())
    assert report.failures == []
    originals = {}
    for f in inputs:
        ds = read(f)
        originals[ds.SOPInstanceUID] = ds
    return tmp / "tree", originals


def test_walk_files(built: tuple[Path, dict[str, Dataset]]) -> None:
    root, originals = built
    rep = walk(file_fetcher(root), originals)
    assert rep.studies == len({ds.StudyInstanceUID for ds in originals.values()})
    assert rep.series == len({ds.SeriesInstanceUID for ds in originals.values()})
    assert rep.series > rep.studies  # the multi-series study
    assert rep.syntaxes >= SYNTAXES
    assert rep.frames > rep.instances  # multi-frame files
    assert rep.bulk > 0  # private values over 64 bytes


def test_walk_static_serve(built: tuple[Path, dict[str, Dataset]]) -> None:
    root, originals = built
    with ServerThread(create_static_app(root)) as srv, httpx.Client() as client:
        rep = walk(http_fetcher(srv.url, client), originals)
    assert rep.instances == len(originals)


def test_frame_files_are_static_wado_multipart(built: tuple[Path, dict[str, Dataset]]) -> None:
    """Each frame file: ``--BOUNDARY\\r\\nContent-Type: <type>; transfer-syntax=<uid>\\r\\n\\r\\n``,
    the frame, ``\\r\\n--BOUNDARY--``; ``.mht`` for compressed syntaxes, ``.mht.gz`` for native."""
    root, _ = built
    files = list(root.glob("studies/*/series/*/instances/*/frames/*"))
    assert files
    for f in files:
        assert f.name.endswith((".mht", ".mht.gz"))
        data = gzip.decompress(f.read_bytes()) if f.name.endswith(".gz") else f.read_bytes()
        first = data.split(b"\r\n", 1)[0]
        assert first == b"--" + BOUNDARY.encode()
        ctype, body = one_part(data)
        assert data.endswith(b"\r\n" + first + b"--\r\n")
        assert data.count(first) == 2
        media = ctype.split(";")[0]
        assert (media == "application/octet-stream") == f.name.endswith(".gz"), f
        assert media in {"application/octet-stream", "image/jpeg", "image/jp2", "image/dicom-rle"}
