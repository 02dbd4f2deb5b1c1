"""OHIF 2 (npm ``@ohif/viewer``, its standalone ``dist/``) in Debian's headless Chromium,
reading ``webpacs serve`` loaded with ``make run``'s sample studies and configured as the
README's "OHIF 2" part says (``server.decodeForAny: ["jpeglossless", "jpeg"]``): its study list
shows every study (it crashed on a study without Modality), and every sample study with
pixel data opens and draws an image of that study (canvas pixels), apart from those OHIF
cannot show for reasons of its own (``OHIF2_DOES_NOT_SHOW``, each with the fact the test
checks).

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

from tests.browser import browser_log, drawn, wait_for
from tests.conftest import RunningServer, make_settings, missing, start_server
from tests.static_support import ServerThread
from tests.test_viewer_ohif_studies import PIXEL_DATA, check_exclusion
from webpacs.cli.importer import iter_files, run_import, sample_paths

OHIF2_DIST = Path(__file__).parent.parent / ".npm-tools/node_modules/@ohif/viewer/dist"
#: Sample studies with pixel data that OHIF 2 does not draw, for reasons outside the
#: server: Study Instance UID -> (what the test checks, why). (OHIF 2 draws the retired
#: ultrasound class, the zero Pixel Spacing and the segmentation that OHIF 3 does not.)
OHIF2_DOES_NOT_SHOW = {
    "1.2.392.200039.102.3.1096.11.20020524.111958": (
        "segmented-palette",
        "PALETTE COLOR with Segmented Palette Color LUT Data (0028,1221-1223) only: "
        "cornerstone-wado-image-loader reads the plain LUT data (0028,1201-1203), and "
        "nothing is drawn",
    ),
}
#: Stored syntaxes whose frames OHIF 2 decodes with a codec chunk that its decoder worker,
#: started from a ``blob:`` URL, cannot load (12-bit JPEG extended, ``888.bundle.min.worker.js``;
#: the server cannot decode it either, so ``decodeForAny`` sends it as stored): the worker
#: dies and the studies opened after it in the same page never finish loading. The next
#: study is opened in a fresh page, as a user would reload a stuck viewer.
WORKER_KILLERS = {"1.2.840.10008.1.2.4.51"}
#: Leave the viewer for the study list, then open a study: OHIF 2's own routing (react
#: router, on the history's popstate), with no page load between studies.
_OPEN_STUDY = """
const go = (path) => { window.history.pushState({}, '', path);
  window.dispatchEvent(new PopStateEvent('popstate', {state: {}})); };
go('/'); setTimeout(() => go('/viewer/' + arguments[0]), 300);
"""
#: The image ID of the image in OHIF 2's first viewport (cornerstone-core).
_IMAGE_ID = """
const els = window.cornerstone ? window.cornerstone.getEnabledElements() : [];
return els.length && els[0].image ? els[0].image.imageId : null;
"""


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
    srv = start_server(tmp / "data", server={"decodeForAny": ["jpeglossless", "jpeg"]})
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
    """The pixels of the viewport: the largest canvas (the thumbnails are canvases too)."""
    url = browser.execute_script(
        "const cs = [...document.querySelectorAll('canvas')].filter(c => c.width > 1);"
        "cs.sort((a, b) => b.width * b.height - a.width * a.height);"
        "return cs.length ? cs[0].toDataURL('image/png') : null;"
    )
    return base64.b64decode(url.split(",", 1)[1]) if url else None


def test_every_study_with_pixel_data_draws_an_image(
    browser: Any, site: Any, tmp_path: Path
) -> None:
    url, srv, studies = site
    metadata = {
        uid: httpx.get(f"{srv.url}/studies/{uid}/metadata").json()
        for uid in (s["0020000D"]["Value"][0] for s in studies)
    }
    with_pixels = {
        uid: meta
        for uid, meta in metadata.items()
        if any(tag in m for m in meta for tag in PIXEL_DATA)
    }
    assert len(with_pixels) > 30 and len(with_pixels) < len(studies)  # some have no pixels
    assert set(OHIF2_DOES_NOT_SHOW) <= set(with_pixels)
    browser.get(url + "/")
    wait_for(browser, "the study list", lambda: browser.execute_script(
        "return document.querySelectorAll('tbody tr').length"))  # fmt: skip
    shown, failed = [], []
    for study, meta in with_pixels.items():
        if study in OHIF2_DOES_NOT_SHOW:
            check_exclusion(OHIF2_DOES_NOT_SHOW[study][0], meta, srv.url)
            continue
        browser_log(browser)  # start the log afresh
        browser.execute_script(_OPEN_STUDY, study)

        def study_drawn(study: str = study) -> bytes | None:
            image = browser.execute_script(_IMAGE_ID)
            if not image or f"/studies/{study}/" not in image:
                return None
            png = _canvas_png(browser)
            return png if png is not None and drawn(png) else None

        try:
            png = wait_for(browser, f"an image of study {study}", study_drawn, timeout=60)
        except pytest.fail.Exception as e:
            browser.save_screenshot(str(tmp_path / f"failed-{study}.png"))
            failed.append(f"{study}: {str(e)[:600]}")
            browser.get(url + "/")  # a fresh page for the next study
            continue
        (tmp_path / f"canvas-{study}.png").write_bytes(png)
        shown.append(study)
        stored = {srv.store.index.get(m["00080018"]["Value"][0]).transfer_syntax for m in meta}
        if stored & WORKER_KILLERS:
            browser.get(url + "/")  # fresh decoder workers for the next study
            wait_for(browser, "the study list", lambda: browser.execute_script(
                "return document.querySelectorAll('tbody tr').length"))  # fmt: skip
    browser.save_screenshot(str(tmp_path / "ohif2-last-study.png"))
    assert not failed, "\n".join(failed)
    assert len(shown) == len(with_pixels) - len(OHIF2_DOES_NOT_SHOW)
