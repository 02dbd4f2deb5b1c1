"""OHIF 3 in Debian's headless Chromium, reading webpacs: the study list shows every sample
study and a study of each stored transfer-syntax family draws an image (canvas pixels).

Three sites, one browser: ``webpacs serve`` hosting OHIF at ``/viewer/`` (the generated
``app-config.js``), and a static tree of the same store served by ``webpacs static serve``
and by nginx, read by OHIF (hosted by ``viewer_routes``, another origin) with
``staticWado: true``. Per site, the viewer is loaded once with the six family studies, and
each family's test double-clicks its study's thumbnail (a page load costs ~10 s of software
WebGL and 17 MB of script; a double-click ~2 s). Screenshots are kept in each test's
temporary directory.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from click.testing import CliRunner
from pydicom.uid import generate_uid
from starlette.applications import Starlette

from tests.browser import VIEWPORT, browser_log, canvas_png, drawn, require_ohif, wait_for
from tests.conftest import data_file, free_port, make_settings, require_binary, start_server
from tests.static_support import ServerThread
from tests.test_static_nginx import start_nginx
from webpacs.cli.importer import iter_files, run_import, sample_paths
from webpacs.cli.main import main
from webpacs.web.static_app import create_static_app
from webpacs.web.viewer import dicomweb_source, viewer_routes

#: One study per transfer-syntax family: a pydicom test file (given new UIDs, so that it is
#: stored beside the samples) and the syntaxes of the family. The images differ from each
#: other, so that a viewport that still shows the previous study cannot pass for the next.
FAMILIES = {
    "native": ("CT_small.dcm", {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}),
    "jpeg-baseline": ("SC_rgb_jpeg_dcmtk.dcm", {"1.2.840.10008.1.2.4.50"}),
    "jpeg-lossless": ("JPEG-LL.dcm", {"1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"}),
    "jpeg-ls": ("MR_small_jpeg_ls_lossless.dcm", {"1.2.840.10008.1.2.4.80"}),
    "jpeg-2000": ("693_J2KR.dcm", {"1.2.840.10008.1.2.4.90"}),
    "rle": ("emri_small_RLE.dcm", {"1.2.840.10008.1.2.5"}),
}
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


@dataclass
class Samples:
    data_dir: Path
    studies: list[dict[str, Any]]  # QIDO's study rows
    family_study: dict[str, str]  # family -> Study Instance UID


@dataclass
class Site:
    name: str
    viewer: str  # OHIF's root URL
    dicomweb: str  # the data source's root


def _family_files(out: Path) -> dict[str, tuple[str, Path]]:
    out.mkdir()
    made = {}
    for family, (name, _) in FAMILIES.items():
        ds = pydicom.dcmread(data_file(name))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PatientName, ds.PatientID = f"Family^{family}", f"FAMILY-{family}"
        ds.StudyDescription = f"{family} {ds.file_meta.TransferSyntaxUID}"
        path = out / f"{family}.dcm"
        ds.save_as(path)
        made[family] = (str(ds.StudyInstanceUID), path)
    return made


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Samples:
    """A store holding ``webpacs import --samples`` plus one study per syntax family."""
    require_ohif()
    tmp = tmp_path_factory.mktemp("ohif")
    families = _family_files(tmp / "families")
    settings = make_settings(tmp / "data")
    files = list(iter_files(sample_paths())) + [p for _, p in families.values()]
    counts = run_import(settings, files, 2, show=False, failures=[])
    assert counts["stored"] > 40
    srv = start_server(tmp / "data")
    try:
        studies = httpx.get(f"{srv.url}/studies").json()
    finally:
        srv.stop()
    return Samples(tmp / "data", studies, {f: uid for f, (uid, _) in families.items()})


def _stored_syntax(dicomweb: str, study: str) -> str:
    """The transfer syntax the site names for the study's first frame."""
    series = httpx.get(f"{dicomweb}/studies/{study}/series").json()[0]["0020000E"]["Value"][0]
    row = httpx.get(f"{dicomweb}/studies/{study}/series/{series}/instances").json()[0]
    sop = row["00080018"]["Value"][0]
    url = f"{dicomweb}/studies/{study}/series/{series}/instances/{sop}/frames/1"
    with httpx.stream("GET", url, headers={"Accept": FRAME_ACCEPT}) as r:
        assert r.status_code == 200, r.status_code
        body = r.read()
    header = body.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    found = re.search(r"transfer-syntax=\"?([0-9.]+)", header + r.headers["content-type"])
    assert found, header
    return found.group(1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module", params=["webpacs-serve", "static-serve", "nginx"])
def site(
    request: pytest.FixtureRequest, samples: Samples, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    dist = require_ohif()
    if request.param == "webpacs-serve":
        srv = start_server(samples.data_dir, viewer={"ohifPath": str(dist)})
        try:
            yield Site(request.param, srv.url.rsplit("/", 1)[0] + "/viewer", srv.url)
        finally:
            srv.stop()
        return
    tree = tmp_path_factory.mktemp("tree") / "dicomweb"
    runner = CliRunner()
    built = runner.invoke(
        main, ["static", "build", "--data-dir", str(samples.data_dir), "--out", str(tree)]
    )
    assert built.exit_code == 0, built.output
    if request.param == "static-serve":
        with ServerThread(create_static_app(tree)) as static:
            yield from _static_site(request.param, dist, static.url)
        return
    binary = require_binary("nginx")
    port = free_port()
    conf = runner.invoke(main, ["static", "nginx-config", str(tree), "--port", str(port)])
    assert conf.exit_code == 0, conf.output
    prefix = tree.parent / "nginx"
    prefix.mkdir()
    (prefix / "nginx.conf").write_text(conf.output)
    ngx = start_nginx(binary, prefix / "nginx.conf", prefix, port)
    try:
        yield from _static_site(request.param, dist, ngx.url)
    finally:
        _stop(ngx.proc)


def _static_site(name: str, dist: Path, url: str) -> Iterator[Site]:
    """OHIF on an origin of its own, reading the static tree at ``url``."""
    source = dicomweb_source(url, static=True, name="webpacs-static")
    with ServerThread(Starlette(routes=viewer_routes(dist, lambda _r: source))) as viewer:
        yield Site(name, f"{viewer.url}/viewer", url)


def _dismiss_notices(browser: Any) -> None:
    """OHIF's "for investigational use only" banner and its first-visit tour (both are
    remembered by the browser profile once dismissed)."""
    browser.execute_script(
        "for (const b of document.querySelectorAll('button')) {"
        "  const t = b.innerText.trim();"
        "  if (t === 'Skip all' || b.dataset.cy === 'confirm-and-hide-button') b.click();"
        "}"
    )


_RANGE = re.compile(r"(\d+)\s*-\s*(\d+)\s+of\s+(\d+)")


def _list_page(browser: Any) -> tuple[list[str], tuple[int, int, int] | None]:
    """The instance counts of the study rows shown, and the "a-b of n" label if any."""
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('tbody tr[aria-selected]'))"
        ".map(tr => Array.from(tr.querySelectorAll('td')).map(td => td.innerText.trim()))"
    )
    label = _RANGE.search(browser.find_element("tag name", "body").text)
    numbers = tuple(int(g) for g in label.groups()) if label else None
    return [r[-2] if r[-1] == "" else r[-1] for r in rows], numbers  # type: ignore[return-value]


def test_study_list_shows_every_study(
    browser: Any, site: Site, samples: Samples, tmp_path: Path
) -> None:
    expected = len(samples.studies)
    assert expected == len(httpx.get(f"{site.dicomweb}/studies").json())
    browser.get(f"{site.viewer}/")

    def first_page() -> Any:
        counts, label = _list_page(browser)
        return (counts, label) if counts and label else None

    counts, label = wait_for(browser, "the study list", first_page)
    shown = list(counts)
    assert label is not None and label[2] == expected, label
    while label[1] < label[2]:  # later pages (OHIF shows "1-25 of 43" and a next button)
        shown_before = label
        browser.execute_script(
            "document.querySelector('button[aria-label=\"Next page\"]:not([disabled])').click()"
        )

        def next_page(before: tuple[int, int, int] = shown_before) -> Any:
            page = _list_page(browser)
            return page if page[1] is not None and page[1] != before else None

        counts, label = wait_for(browser, "the next page", next_page)
        shown += counts
    _dismiss_notices(browser)
    time.sleep(0.5)
    browser.save_screenshot(str(tmp_path / f"study-list-{site.name}.png"))
    assert len(shown) == expected
    # each row's instance count is the study's NumberOfStudyRelatedInstances
    want = sorted(str(s["00201208"]["Value"][0]) for s in samples.studies)
    assert sorted(shown) == want


#: The thumbnail of the study whose description starts with the family's name.
_THUMBNAIL = """
for (const region of document.querySelectorAll('[data-cy="studyBrowser-panel"] [role="region"]')) {
  const head = document.getElementById(region.getAttribute('aria-labelledby'));
  if (head && head.innerText.includes(arguments[0] + ' 1.2.840.'))
    return region.querySelector('[data-cy="study-browser-thumbnail"]');
}
return null;
"""


@pytest.fixture(scope="module")
def family_page(browser: Any, site: Site, samples: Samples) -> str:
    """OHIF's viewer opened on the six family studies at once (one page load per site);
    each test shows its study by double-clicking its thumbnail, as a user does."""
    uids = ",".join(samples.family_study.values())
    browser.get(f"{site.viewer}/viewer?StudyInstanceUIDs={uids}")
    wait_for(browser, "the first image", lambda: browser.execute_script(VIEWPORT))
    _dismiss_notices(browser)
    return site.name


@pytest.mark.parametrize("family", list(FAMILIES))
def test_study_of_each_syntax_draws_an_image(
    browser: Any, site: Site, samples: Samples, family_page: str, family: str, tmp_path: Path
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    study = samples.family_study[family]
    assert _stored_syntax(site.dicomweb, study) in FAMILIES[family][1]
    browser_log(browser)  # start the log afresh
    shown = browser.execute_script(VIEWPORT)
    before = None if shown and study in shown[0] else canvas_png(browser)
    thumbnail = wait_for(
        browser, f"the {family} thumbnail", lambda: browser.execute_script(_THUMBNAIL, family)
    )
    browser.execute_script("arguments[0].scrollIntoView()", thumbnail)
    ActionChains(browser).double_click(thumbnail).perform()

    def this_image() -> Any:
        image = browser.execute_script(VIEWPORT)
        if not image or study not in image[0] or not image[1] > 0:
            return None  # not yet this study's decoded image
        png = canvas_png(browser)
        return png if png != before and drawn(png) else None

    png = wait_for(browser, f"a {family} image in the viewport", this_image)
    time.sleep(1)  # let the overlays settle for the screenshot
    browser.save_screenshot(str(tmp_path / f"viewer-{site.name}-{family}.png"))
    (tmp_path / f"canvas-{site.name}-{family}.png").write_bytes(png)
    errors = [m for m in browser_log(browser) if m.startswith("SEVERE")]
    assert not [m for m in errors if "decode" in m.lower()], errors


def test_viewer_hosting(samples: Samples) -> None:
    """/viewer/ serves OHIF with its paths under /viewer/ and a config naming this server."""
    dist = require_ohif()
    srv = start_server(samples.data_dir, viewer={"ohifPath": str(dist)})
    try:
        origin = srv.url.rsplit("/", 1)[0]
        with httpx.Client(base_url=origin) as c:
            page = c.get("/viewer/viewer", params={"StudyInstanceUIDs": "1.2.3"})
            assert page.status_code == 200 and 'window.PUBLIC_URL="/viewer/"' in page.text
            assert not re.search(r'(?:src|href)="/(?!viewer/)', page.text)
            assert c.get("/viewer").headers["location"].endswith("/viewer/")
            config = c.get("/viewer/app-config.js").text
            assert '"routerBasename": "/viewer"' in config
            assert f'"qidoRoot": "{srv.url}"' in config and "acceptHeader" not in config
            for script in re.findall(r'src="/viewer/([^"]+\.js)"', page.text):
                assert c.get(f"/viewer/{script}").status_code == 200
            assert (
                c.get("/viewer/..%2f..%2fpyproject.toml")
                .headers["content-type"]
                .startswith("text/html")
            )
    finally:
        srv.stop()
    for setting, status, says in [("off", 404, ""), (str(dist.parent), 404, "no index.html")]:
        other = start_server(samples.data_dir, viewer={"ohifPath": setting})
        try:
            r = httpx.get(other.url.rsplit("/", 1)[0] + "/viewer/viewer")
            assert r.status_code == status and says in r.text
        finally:
            other.stop()


def test_readme_data_source_is_the_hosted_one() -> None:
    """The README's OHIF snippet is the data source the hosted viewer generates."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### OHIF viewer", 1)[1]
    block = section.split("```js", 1)[1].split("```", 1)[0]
    shown = dict(re.findall(r"^\s+(\w+): (.+?),$", block.split("configuration: {", 1)[1], re.M))
    want = dicomweb_source("http://127.0.0.1:8042/dicomweb")["configuration"]
    js = {k: f"'{v}'" if isinstance(v, str) else str(v).lower() for k, v in want.items()}
    assert shown == js
    assert "acceptHeader" not in block


def test_viewer_not_installed_says_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without OHIF's dist, /viewer/ answers 404 with how to get it."""
    import webpacs.web.viewer

    monkeypatch.setattr(webpacs.web.viewer, "PROJECT_DIST", tmp_path / "nothing")
    srv = start_server(tmp_path / "data")
    try:
        r = httpx.get(srv.url.rsplit("/", 1)[0] + "/viewer/")
        assert r.status_code == 404 and "make viewer" in r.text
    finally:
        srv.stop()
