"""OHIF 2 (npm ``@ohif/viewer``, its standalone ``dist/``) in Debian's headless Chromium,
reading ``webpacs serve`` loaded with ``make run``'s sample studies: its study list shows
every study (it crashed on a study without Modality), and studies stored in native, JPEG
baseline and JPEG 2000 syntaxes draw an image (canvas pixels). JPEG lossless is not among
them: OHIF 2's npm dist decodes it in a web worker whose script
(``610.bundle.min.worker.js``) the package does not ship, so the browser cannot load it.

OHIF 2 is served from another origin by a small app here: its ``dist/`` with the
``app-config.js`` of the README's OHIF 2 snippet, and without the polyfill script that
its ``index.html`` loads from the internet.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from tests.browser import pixel_stats, wait_for
from tests.conftest import RunningServer, make_settings, missing, start_server
from tests.static_support import ServerThread
from webpacs.cli.importer import iter_files, run_import, sample_paths

OHIF2_DIST = Path(__file__).parent.parent / ".npm-tools/node_modules/@ohif/viewer/dist"
#: Studies of the samples by stored syntax family: (Study Instance UID, syntax).
FAMILY_STUDIES = {
    "native": "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322",  # CT_small.dcm
    "jpeg-baseline": "1.2.840.114340.3.8251017118051.1.20160503.120850.2171",  # 30-frame US
    "jpeg-2000": "1.3.6.1.4.1.5962.1.2.13.20040826185059.5457",
}


def ohif2_config(dicomweb: str) -> str:
    """OHIF 2's ``app-config.js`` with one DICOMweb server (the README's OHIF 2 snippet)."""
    return (
        "window.config = {\n"
        "  routerBasename: '/',\n"
        "  showStudyList: true,\n"
        "  servers: {\n"
        "    dicomWeb: [{\n"
        "      name: 'webpacs',\n"
        f"      wadoUriRoot: '{dicomweb}/wado',\n"
        f"      qidoRoot: '{dicomweb}',\n"
        f"      wadoRoot: '{dicomweb}',\n"
        "      qidoSupportsIncludeField: true,\n"
        "      imageRendering: 'wadors',\n"
        "      thumbnailRendering: 'wadors',\n"
        "      enableStudyLazyLoad: true,\n"
        "      supportsFuzzyMatching: true,\n"
        "    }],\n"
        "  },\n"
        "};\n"
    )


def ohif2_app(dist: Path, dicomweb: str) -> Starlette:
    """OHIF 2's dist/ with a generated app-config.js, index.html for its own routes."""
    index = (dist / "index.html").read_text()
    start = index.find('<script\n    src="https://polyfill.io')
    if start >= 0:  # a script from the internet, which the tests cannot reach
        index = index[:start] + index[index.index("</script>", start) + len("</script>") :]

    async def page(request: Request) -> Response:
        path = request.path_params["path"]
        if path == "app-config.js":
            return Response(ohif2_config(dicomweb), media_type="application/javascript")
        if path and (dist / path).is_file() and ".." not in path:
            return FileResponse(dist / path)
        return Response(index, media_type="text/html")

    return Starlette(routes=[Route("/{path:path}", page)])


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, RunningServer, list[Any]]]:
    if not (OHIF2_DIST / "index.umd.js").is_file():
        missing(f"OHIF 2 is not installed in {OHIF2_DIST} (`make test` installs it with npm)")
    tmp = tmp_path_factory.mktemp("ohif2")
    counts = run_import(
        make_settings(tmp / "data"), list(iter_files(sample_paths())), 2, show=False, failures=[]
    )
    assert counts["stored"] > 40
    srv = start_server(tmp / "data")
    try:
        studies = httpx.get(f"{srv.url}/studies").json()
        with ServerThread(ohif2_app(OHIF2_DIST, srv.url)) as viewer:
            yield viewer.url, srv, studies
    finally:
        srv.stop()


def test_study_list_shows_every_study(browser: Any, site: Any, tmp_path: Path) -> None:
    url, _, studies = site
    assert any("00080061" not in s for s in studies)  # the studies OHIF 2 crashed on
    browser.get(url + "/")
    wait_for(browser, "the study list", lambda: browser.execute_script(
        "return document.querySelectorAll('tbody tr').length"))  # fmt: skip
    # 100 rows a page, so that one page holds every sample study
    browser.execute_script(
        "const s = document.querySelector('select');"
        "const set = Object.getOwnPropertyDescriptor(HTMLSelectElement.prototype, 'value').set;"
        "set.call(s, '100'); s.dispatchEvent(new Event('change', {bubbles: true}));"
    )
    rows = wait_for(browser, f"{len(studies)} rows", lambda: (
        browser.execute_script("return document.querySelectorAll('tbody tr').length")
        == len(studies) and True))  # fmt: skip
    browser.save_screenshot(str(tmp_path / "ohif2-study-list.png"))
    assert rows
    text = browser.execute_script("return document.querySelector('tbody').innerText")
    for s in studies:
        patient_id = s.get("00100020", {}).get("Value", [""])[0]
        assert patient_id in text


def _canvas_png(browser: Any) -> bytes | None:
    url = browser.execute_script(
        "const c = document.querySelector('canvas');"
        "return c && c.width > 1 ? c.toDataURL('image/png') : null;"
    )
    return base64.b64decode(url.split(",", 1)[1]) if url else None


@pytest.mark.parametrize("family", list(FAMILY_STUDIES))
def test_study_draws_an_image(browser: Any, site: Any, family: str, tmp_path: Path) -> None:
    url, srv, _ = site
    study = FAMILY_STUDIES[family]
    assert httpx.get(f"{srv.url}/studies", params={"StudyInstanceUID": study}).json()
    browser.get(f"{url}/viewer/{study}")

    def drawn() -> bytes | None:
        png = _canvas_png(browser)
        if png is None:
            return None
        std, levels = pixel_stats(png)
        return png if std > 8 and levels >= 16 else None

    png = wait_for(browser, f"a {family} image", drawn)
    browser.save_screenshot(str(tmp_path / f"ohif2-{family}.png"))
    (tmp_path / f"canvas-{family}.png").write_bytes(png)
