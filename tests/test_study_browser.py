"""The study browser at ``/`` in Debian's headless Chromium, as a user drives it: search the
sample studies and page through them, open a study and see its thumbnails, upload a folder of
three files through the file input, download the study's ZIP and compare it with the files,
delete a series, send the study to dcmtk's storescp, and open it in the hosted OHIF viewer
(canvas pixels). One server per module; screenshots are kept in each test's temporary
directory (``WEBPACS_DOCS_SCREENSHOTS=1`` also writes the README's two into ``docs/``).
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.browser import (
    OHIF_DIST,
    VIEWPORT,
    browser_log,
    canvas_png,
    drawn,
    require_ohif,
    wait_for,
)
from tests.conftest import (
    RunningServer,
    data_file,
    free_port,
    make_settings,
    require_binary,
    start_server,
)
from tests.test_dimse import wait_port
from webpacs.cli.importer import iter_files, run_import, sample_paths

DOCS = Path(__file__).parent.parent / "docs"
#: A sample study with three CR series (pydicom-data), found by its patient's name.
SAMPLE_NAME, SAMPLE_STUDY = "Archibald", "1.3.6.1.4.1.5962.1.1.0.0.0.1196527414.5534.0.1"
UPLOAD_ID = "BROWSER-UPLOAD"


@dataclass
class Site:
    origin: str
    server: RunningServer
    scp_port: int

    @property
    def dicomweb(self) -> str:
        return self.server.url


@dataclass
class Upload:
    folder: Path
    study: str
    files: dict[str, Path]  # SOP Instance UID -> file
    series: dict[str, str]  # "ct" / "mr" -> Series Instance UID


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """``webpacs import --samples`` served with the hosted viewer (when OHIF is installed)
    and an ``ae`` entry for a storescp the send test starts."""
    tmp = tmp_path_factory.mktemp("browser")
    counts = run_import(
        make_settings(tmp / "data"), list(iter_files(sample_paths())), 2, show=False, failures=[]
    )
    assert counts["stored"] > 40
    ohif = str(OHIF_DIST) if (OHIF_DIST / "index.html").is_file() else "off"
    port = free_port()
    ae = {
        "archive": {
            "title": "ARCHIVE",
            "host": "127.0.0.1",
            "port": port,
            "description": "dcmtk storescp",
        }
    }
    srv = start_server(tmp / "data", viewer={"ohifPath": ohif}, ae=ae)
    try:
        yield Site(srv.url.rsplit("/", 1)[0], srv, port)
    finally:
        srv.stop()


def _rows(browser: Any) -> list[str]:
    """The Study Instance UIDs of the study list's rows."""
    return browser.execute_script(
        "return [...document.querySelectorAll('tr[data-study]')].map(r => r.dataset.study)"
    )


def _screenshot(browser: Any, tmp_path: Path, name: str, docs: bool = False) -> None:
    time.sleep(0.3)  # let images and fonts settle
    browser.save_screenshot(str(tmp_path / name))
    if docs and os.environ.get("WEBPACS_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copy(tmp_path / name, DOCS / name)


def _open_study(browser: Any, site: Site, study: str) -> None:
    browser.get(f"{site.origin}/#/studies/{study}")
    wait_for(browser, "the study page", lambda: browser.find_elements("css selector", "li.series"))


def test_search_page_and_open_a_study(browser: Any, site: Site, tmp_path: Path) -> None:
    browser.get(f"{site.origin}/")
    first = wait_for(browser, "the study list", lambda: _rows(browser))
    qido = httpx.get(f"{site.dicomweb}/studies", params={"limit": 25}).json()
    assert first == [s["0020000D"]["Value"][0] for s in qido]  # the server's first page
    _screenshot(browser, tmp_path, "study-browser-list.png", docs=True)
    # paging: 10 a page, then the next 10
    from selenium.webdriver.support.select import Select

    Select(
        browser.find_element("css selector", "select[aria-label='Studies per page']")
    ).select_by_value("10")
    wait_for(browser, "10 rows", lambda: len(_rows(browser)) == 10)
    page1 = _rows(browser)
    browser.find_element("xpath", "//button[contains(., 'Next')]").click()
    wait_for(browser, "the second page", lambda: _rows(browser) and _rows(browser) != page1)
    assert _rows(browser) == [s["0020000D"]["Value"][0] for s in qido[10:20]]
    assert "Studies 11–20" in browser.find_element("css selector", ".pager .range").text
    # search by name (any part, any case): that patient's studies, as the full list says
    everyone = httpx.get(f"{site.dicomweb}/studies").json()
    want = [
        s["0020000D"]["Value"][0]
        for s in everyone
        if SAMPLE_NAME.lower() in str(s.get("00100010", {}).get("Value", [""])[0]).lower()
    ]
    assert SAMPLE_STUDY in want
    browser.get(f"{site.origin}/#/")
    wait_for(browser, "the study list", lambda: _rows(browser))
    box = browser.find_element("css selector", "input[name='name']")
    box.send_keys(SAMPLE_NAME.lower())
    browser.find_element("css selector", "form.search button[type='submit']").click()
    wait_for(browser, "the search result", lambda: sorted(_rows(browser)) == sorted(want))
    assert "name=archibald" in browser.current_url
    browser.find_element("css selector", f"tr[data-study='{SAMPLE_STUDY}'] a").click()
    series = wait_for(
        browser, "the series", lambda: browser.find_elements("css selector", "li.series")
    )
    assert len(series) == 3
    assert "Doe, Archibald" in browser.find_element("css selector", ".study-head h1").text

    def loaded() -> Any:
        sizes = browser.execute_script(
            "return [...document.querySelectorAll('img.thumb')]"
            ".map(i => i.complete ? i.naturalWidth : 0)"
        )
        return sizes if len(sizes) == 3 and all(sizes) else None

    assert all(w > 0 for w in wait_for(browser, "three thumbnails", loaded))
    # an instance list and its metadata view
    browser.find_element("xpath", "(//button[normalize-space()='Instances'])[1]").click()
    button = wait_for(
        browser,
        "the instance list",
        lambda: browser.find_elements("xpath", "//button[normalize-space()='Metadata']"),
    )
    button[0].click()
    wait_for(browser, "the metadata", lambda: browser.find_elements("css selector", ".meta-table"))
    text = browser.find_element("css selector", "dialog .meta-table").text
    assert "PatientName" in text and "Computed Radiography Image Storage" in text
    _screenshot(browser, tmp_path, "metadata.png")
    browser.find_element("css selector", "dialog footer button").click()
    _screenshot(browser, tmp_path, "study.png")


def _upload_files(tmp: Path) -> Upload:
    """Three files of a new study: two CT images in one series, an MR image in another."""
    folder = tmp / "to-upload"
    (folder / "sub").mkdir(parents=True)
    study, series = generate_uid(), {"ct": generate_uid(), "mr": generate_uid()}
    files = {}
    for i, (name, kind) in enumerate(
        [("CT_small.dcm", "ct"), ("CT_small.dcm", "ct"), ("MR_small.dcm", "mr")]
    ):
        ds = pydicom.dcmread(data_file(name))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series[kind]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PatientName, ds.PatientID = "Browser^Upload", UPLOAD_ID
        ds.StudyDescription, ds.SeriesNumber, ds.InstanceNumber = "Uploaded", i // 2 + 1, i + 1
        path = folder / ("sub" if kind == "mr" else "") / f"image{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files[str(ds.SOPInstanceUID)] = path
    return Upload(folder, study, files, series)


@pytest.fixture(scope="module")
def uploaded(browser: Any, site: Site, tmp_path_factory: pytest.TempPathFactory) -> Upload:
    """A folder of three files uploaded through the page's folder input."""
    upload = _upload_files(tmp_path_factory.mktemp("upload"))
    browser.get(f"{site.origin}/#/upload")
    field = wait_for(
        browser, "the upload page", lambda: browser.find_elements("id", "upload-folder")
    )
    field[0].send_keys(str(upload.folder))
    wait_for(
        browser,
        "the uploads to end",
        lambda: browser.find_element("id", "upload-summary").get_attribute("data-done") == "true",
    )
    return upload


def test_upload_a_folder(browser: Any, site: Site, uploaded: Upload, tmp_path: Path) -> None:
    summary = browser.find_element("id", "upload-summary").text
    assert summary == "3 file(s): 3 stored, 0 failed.", summary
    rows = browser.execute_script(
        "return [...document.querySelectorAll('tr[data-file]')]"
        ".map(r => [r.dataset.file, r.dataset.outcome, r.querySelector('.result').innerText])"
    )
    assert sorted(r[0] for r in rows) == [
        "to-upload/image0.dcm",
        "to-upload/image1.dcm",
        "to-upload/sub/image2.dcm",
    ]
    assert {(r[1], r[2]) for r in rows} == {("stored", "Stored")}
    # a file that is not DICOM: refused, with the reason in words
    junk = tmp_path / "notes.txt"
    junk.write_text("not an image")
    browser.find_element("id", "upload-files").send_keys(str(junk))
    wait_for(
        browser,
        "the refusal",
        lambda: browser.find_elements("css selector", "tr[data-outcome='failed']"),
    )
    reason = browser.find_element("css selector", "tr[data-outcome='failed'] .result").text
    assert reason.startswith("Cannot understand: not a readable DICOM file (0xC000)"), reason
    _screenshot(browser, tmp_path, "upload.png")
    # the study the files went into is listed, with its two series
    link = browser.find_element("css selector", f".study-links a[data-study='{uploaded.study}']")
    wait_for(
        browser, "the study's name", lambda: link.text.startswith("Browser, Upload — Uploaded")
    )
    link.click()
    series = wait_for(
        browser, "the study", lambda: browser.find_elements("css selector", "li.series")
    )
    counts = sorted(
        s.find_element("css selector", ".series-info .muted").text.split(" · ")[0] for s in series
    )
    assert counts == ["1 instance", "2 instances"]
    browser.find_element("xpath", "(//button[normalize-space()='Instances'])[1]").click()
    wait_for(
        browser, "the instances", lambda: browser.find_elements("css selector", "tr[data-sop]")
    )
    _screenshot(browser, tmp_path, "study-browser-study.png", docs=True)
    browser.get(f"{site.origin}/#/?id={UPLOAD_ID}")
    wait_for(browser, "the uploaded study in the list", lambda: _rows(browser) == [uploaded.study])


#: Drop files on the upload page's drop zone as a user's drag and drop does (a DataTransfer
#: holding File objects made from the given names and base64 bodies).
_DROP = """
const [files, done] = [arguments[0], arguments[arguments.length - 1]];
const dt = new DataTransfer();
for (const [name, b64] of files) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  dt.items.add(new File([bytes], name, { type: 'application/dicom' }));
}
const zone = document.querySelector('.dropzone');
const how = { dataTransfer: dt, bubbles: true, cancelable: true };
zone.dispatchEvent(new DragEvent('dragover', how));
zone.dispatchEvent(new DragEvent('drop', how));
done(true);
"""


def test_drop_files(browser: Any, site: Site, tmp_path: Path) -> None:
    ds = pydicom.dcmread(data_file("MR_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(tmp_path / "dropped.dcm", enforce_file_format=True)
    body = base64.b64encode((tmp_path / "dropped.dcm").read_bytes()).decode()
    browser.get(f"{site.origin}/#/upload")
    wait_for(browser, "the drop zone", lambda: browser.find_elements("css selector", ".dropzone"))
    browser.execute_async_script(_DROP, [["dropped.dcm", body], ["junk.dcm", "AAAA"]])
    wait_for(
        browser,
        "the uploads to end",
        lambda: browser.find_element("id", "upload-summary").get_attribute("data-done") == "true",
    )
    outcomes = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('tr[data-file]')]"
        ".map(r => [r.dataset.file, r.dataset.outcome]))"
    )
    assert outcomes == {"dropped.dcm": "stored", "junk.dcm": "failed"}
    found = httpx.get(f"{site.dicomweb}/instances", params={"SOPInstanceUID": ds.SOPInstanceUID})
    assert len(found.json()) == 1


def _same_files(body: bytes, files: dict[str, Path]) -> None:
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        got = {}
        for name in z.namelist():
            ds = pydicom.dcmread(io.BytesIO(z.read(name)))
            got[str(ds.SOPInstanceUID)] = ds
    assert set(got) == set(files)
    for sop, path in files.items():
        assert got[sop] == pydicom.dcmread(path)  # every element, pixel data included


def test_download_zip(browser: Any, site: Site, uploaded: Upload) -> None:
    _open_study(browser, site, uploaded.study)
    href = browser.find_element("id", "download-study").get_attribute("href")
    r = httpx.get(href, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    _same_files(r.content, uploaded.files)
    mr = uploaded.series["mr"]
    link = browser.find_element("css selector", f"li[data-series='{mr}'] a[download]")
    only_mr = {k: v for k, v in uploaded.files.items() if v.parent.name == "sub"}
    _same_files(httpx.get(link.get_attribute("href"), timeout=60).content, only_mr)


def test_send_to_an_ae(browser: Any, site: Site, uploaded: Upload, tmp_path: Path) -> None:
    storescp = require_binary("storescp")
    out = tmp_path / "received"
    out.mkdir()
    proc = subprocess.Popen(
        [storescp, "+xa", "-aet", "ARCHIVE", "--output-directory", str(out), str(site.scp_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(site.scp_port, proc)
        _open_study(browser, site, uploaded.study)
        browser.find_element("xpath", "//div[@class='send']//button[.='Send']").click()
        status = wait_for(
            browser,
            "the send to end",
            lambda: browser.find_elements("css selector", ".send-status[data-outcome]"),
        )[0]
        _screenshot(browser, tmp_path, "sent.png")
    finally:
        proc.terminate()
        proc.wait(10)
    assert status.get_attribute("data-outcome") == "done", status.text
    assert status.text.startswith("Done: 3 of 3 sent to archive")
    got = {str(pydicom.dcmread(p).SOPInstanceUID) for p in out.iterdir()}
    assert got == set(uploaded.files)


def test_delete_a_series(browser: Any, site: Site, uploaded: Upload, tmp_path: Path) -> None:
    _open_study(browser, site, uploaded.study)
    mr = uploaded.series["mr"]
    browser.find_element("css selector", f"li[data-series='{mr}'] button.danger").click()
    dialog = wait_for(
        browser, "the confirmation", lambda: browser.find_elements("css selector", "dialog[open]")
    )
    assert "cannot be undone" in dialog[0].text
    _screenshot(browser, tmp_path, "confirm-delete.png")
    dialog[0].find_element("xpath", ".//button[.='Delete series']").click()
    wait_for(
        browser,
        "the series to go",
        lambda: len(browser.find_elements("css selector", "li.series")) == 1,
    )
    assert browser.find_elements("css selector", f"li[data-series='{mr}']") == []
    left = httpx.get(f"{site.dicomweb}/studies/{uploaded.study}/series").json()
    assert [s["0020000E"]["Value"][0] for s in left] == [uploaded.series["ct"]]


def test_open_in_the_viewer(browser: Any, site: Site, uploaded: Upload, tmp_path: Path) -> None:
    require_ohif()
    _open_study(browser, site, uploaded.study)
    link = browser.find_element("id", "open-viewer")
    assert link.get_attribute("href").endswith(f"/viewer/viewer?StudyInstanceUIDs={uploaded.study}")
    before = set(browser.window_handles)
    browser_log(browser)
    link.click()
    new = wait_for(browser, "the viewer's tab", lambda: set(browser.window_handles) - before)
    page = browser.current_window_handle
    browser.switch_to.window(new.pop())
    try:

        def image() -> Any:
            shown = browser.execute_script(VIEWPORT)
            if not shown or uploaded.study not in shown[0]:
                return None
            png = canvas_png(browser)
            return png if drawn(png) else None

        wait_for(browser, "an image in the viewer", image)
        _screenshot(browser, tmp_path, "viewer.png")
    finally:
        browser.close()
        browser.switch_to.window(page)


def test_delete_is_hidden_when_off(browser: Any, site: Site) -> None:
    other = start_server(site.server.settings.data_dir, server={"allowDelete": False})
    try:
        assert httpx.get(f"{other.url}/webpacs/browser").json()["allowDelete"] is False
        browser.get(f"{other.url.rsplit('/', 1)[0]}/#/studies/{SAMPLE_STUDY}")
        wait_for(
            browser, "the study page", lambda: browser.find_elements("css selector", "li.series")
        )
        assert browser.find_elements("css selector", "button.danger") == []
    finally:
        other.stop()


def test_home_json_for_clients_that_ask(site: Site) -> None:
    r = httpx.get(f"{site.origin}/", headers={"Accept": "application/json"})
    assert r.json() == {"name": "webpacs", "version": r.json()["version"], "dicomweb": "/dicomweb"}
    page = httpx.get(f"{site.origin}/", headers={"Accept": "text/html,*/*"})
    assert page.headers["content-type"].startswith("text/html")
    assert '<meta name="webpacs-root" content="/dicomweb">' in page.text
    for asset in ("main.js", "style.css", "dictionary.json"):
        assert httpx.get(f"{site.origin}/ui/{asset}").status_code == 200, asset
    tables = httpx.get(f"{site.origin}/ui/dictionary.json").json()
    assert tables["tags"]["00100010"] == "PatientName"
    assert tables["uids"]["1.2.840.10008.5.1.4.1.1.2"] == "CT Image Storage"
    # behind a proxy, the page's requests go to the public DICOMweb root
    public = "https://pacs.example.org/imaging/dicomweb"
    other = start_server(site.server.settings.data_dir, server={"publicUrl": public})
    try:
        page = httpx.get(other.url.rsplit("/", 1)[0] + "/")
        assert f'<meta name="webpacs-root" content="{public}">' in page.text
        assert 'src="ui/main.js"' in page.text  # relative: a prefix in front still works
    finally:
        other.stop()
