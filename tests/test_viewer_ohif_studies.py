"""Every sample study of ``make run`` that holds pixel data opens in OHIF 3 (hosted by
``webpacs serve`` at ``/viewer/``) and draws an image of that study.

One page load opens every such study at once (``StudyInstanceUIDs=a,b,...``); then, study
by study, the test double-clicks the thumbnail of the study's first display set, as a user
does, and waits until the viewport holds a decoded image of that study whose pixel values
vary and its canvas, blanked before the switch, is drawn again. "Has pixel data" is the
server's answer: a study some of whose instances have Pixel Data (or Float / Double Float
Pixel Data) in their metadata. The studies OHIF cannot show for reasons of its own are in
``OHIF_DOES_NOT_SHOW``, each with the fact that the test checks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import VIEWPORT, browser_log, canvas_png, drawn, require_ohif, wait_for
from tests.conftest import make_settings, start_server
from tests.test_viewer_ohif import _dismiss_notices
from webpacs.cli.importer import iter_files, run_import, sample_paths

PIXEL_DATA = ("7FE00010", "7FE00008", "7FE00009")
RETIRED_US = "1.2.840.10008.5.1.4.1.1.6"  # Ultrasound Image Storage (Retired)
SEG_HANDLER = "@ohif/extension-cornerstone-dicom-seg.sopClassHandlerModule.dicom-seg"

#: Sample studies with pixel data that OHIF 3.13 does not draw, for reasons outside the
#: server: Study Instance UID -> (what the test checks, why).
OHIF_DOES_NOT_SHOW = {
    "999.999.2.19941105.112000": (
        "retired-sop-class",
        "Ultrasound Image Storage (Retired) 1.2.840.10008.5.1.4.1.1.6: OHIF's SOP class "
        "handlers do not know the retired class, its display set is 'unsupported'",
    ),
    "1.2.392.200039.102.3.1096.11.20020524.111958": (
        "segmented-palette",
        "PALETTE COLOR with Segmented Palette Color LUT Data (0028,1221-1223) only: "
        "cornerstone's loader reads the plain LUT data (0028,1201-1203) and throws 'The "
        "image does not have a complete color palette'",
    ),
    "1.3.6.1.4.1.5962.1.2.9.20040826185059.5457": (
        "zero-pixel-spacing",
        "Pixel Spacing 0\\0 (PS3.3 wants values above 0): cornerstone sizes the image "
        "plane by it and draws nothing, viewport and thumbnail black (the same image with "
        "Pixel Spacing 0.1\\0.1 draws)",
    ),
    "1.2.392.200103.20080913.113635.0.2009.6.22.21.43.10.22941.1": (
        "seg-without-source",
        "Segmentation Storage: OHIF draws a SEG as a labelmap over the series it "
        "references, which is not among the samples",
    ),
}
#: OHIF's display sets of a study: [displaySetInstanceUID, SOP class handler, unsupported].
_DISPLAY_SETS = """
return window.services.displaySetService.getActiveDisplaySets()
  .filter(d => d.StudyInstanceUID === arguments[0])
  .map(d => [d.displaySetInstanceUID, d.SOPClassHandlerId, !!d.unsupported]);
"""
_BLANK_CANVAS = """
const c = document.querySelector('canvas.cornerstone-canvas');
const g = c.getContext('2d'); g.fillStyle = '#000'; g.fillRect(0, 0, c.width, c.height);
"""


@pytest.fixture(scope="module")
def hosted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, list[Any]]]:
    """``webpacs serve`` with the samples and OHIF at /viewer/: (viewer URL, DICOMweb root,
    the metadata of each study)."""
    dist = require_ohif()
    data = tmp_path_factory.mktemp("every-study") / "data"
    files = list(iter_files(sample_paths()))
    counts = run_import(make_settings(data), files, 2, show=False, failures=[])
    assert counts["stored"] > 40
    srv = start_server(data, viewer={"ohifPath": str(dist)})
    try:
        uids = [s["0020000D"]["Value"][0] for s in httpx.get(f"{srv.url}/studies").json()]
        metadata = [(uid, httpx.get(f"{srv.url}/studies/{uid}/metadata").json()) for uid in uids]
        yield srv.url.rsplit("/", 1)[0] + "/viewer", srv.url, metadata
    finally:
        srv.stop()


SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def check_exclusion(kind: str, metadata: list[Any], dicomweb: str) -> None:
    """The fact about a study's data that an exclusion of ``kind`` states (shared with the
    OHIF 2 test)."""
    if kind == "retired-sop-class":
        assert {m["00080016"]["Value"][0] for m in metadata} == {RETIRED_US}
    elif kind == "segmented-palette":
        for m in metadata:
            assert m["00280004"]["Value"] == ["PALETTE COLOR"]
            assert "00281221" in m and "00281201" not in m
    elif kind == "zero-pixel-spacing":
        assert [m["00280030"]["Value"] for m in metadata] == [[0, 0]] * len(metadata)
    elif kind == "seg-without-source":
        for m in metadata:
            assert m["00080016"]["Value"] == [SEG_SOP_CLASS]
            for ref in m["00081115"]["Value"]:
                series = ref["0020000E"]["Value"][0]
                found = httpx.get(f"{dicomweb}/series", params={"SeriesInstanceUID": series})
                assert found.status_code == 204 or found.json() == [], series
    else:
        raise AssertionError(f"no check for an exclusion of kind {kind!r}")


def _check_exclusion(browser: Any, dicomweb: str, study: str, metadata: list[Any]) -> None:
    """The fact each ``OHIF_DOES_NOT_SHOW`` entry states holds, and what OHIF made of it."""
    kind, _ = OHIF_DOES_NOT_SHOW[study]
    check_exclusion(kind, metadata, dicomweb)
    display_sets = browser.execute_script(_DISPLAY_SETS, study)
    if kind == "retired-sop-class":
        assert display_sets and all(unsupported for _, _, unsupported in display_sets)
    elif kind == "seg-without-source":
        assert {handler for _, handler, _ in display_sets} == {SEG_HANDLER}


def test_every_study_with_pixel_data_draws_an_image(
    browser: Any, hosted: tuple[str, str, list[Any]], tmp_path: Path
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    viewer, dicomweb, studies = hosted
    with_pixels = {
        uid: metadata
        for uid, metadata in studies
        if any(tag in m for m in metadata for tag in PIXEL_DATA)
    }
    assert len(with_pixels) > 30 and len(with_pixels) < len(studies)  # some have no pixels
    assert set(OHIF_DOES_NOT_SHOW) <= set(with_pixels)
    browser.get(f"{viewer}/viewer?StudyInstanceUIDs={','.join(with_pixels)}")
    wait_for(browser, "the first image", lambda: browser.execute_script(VIEWPORT), timeout=180)
    for _ in range(2):  # the banner, then the tour that follows it
        _dismiss_notices(browser)
        time.sleep(0.5)
    shown = []
    for study, metadata in with_pixels.items():
        if study in OHIF_DOES_NOT_SHOW:
            _check_exclusion(browser, dicomweb, study, metadata)
            continue
        browser_log(browser)  # start the log afresh
        display_set = wait_for(
            browser, f"the display sets of {study}",
            lambda s=study: browser.execute_script(_DISPLAY_SETS, s),
        )[0][0]  # fmt: skip
        thumbnail = browser.execute_script(
            "return document.getElementById('thumbnail-' + arguments[0])", display_set
        )
        assert thumbnail is not None, study
        browser.execute_script("arguments[0].scrollIntoView()", thumbnail)
        current = browser.execute_script(VIEWPORT)
        if not (current and study in current[0]):  # else a double-click may draw nothing new
            browser.execute_script(_BLANK_CANVAS)
        ActionChains(browser).double_click(thumbnail).perform()

        def study_drawn(study: str = study) -> Any:
            image = browser.execute_script(VIEWPORT)
            if not image or study not in image[0] or not image[1] > 0:
                return None  # not yet this study's decoded image
            png = canvas_png(browser)
            return png if drawn(png) else None

        png = wait_for(browser, f"an image of study {study}", study_drawn, timeout=30)
        (tmp_path / f"canvas-{study}.png").write_bytes(png)
        errors = [m for m in browser_log(browser) if m.startswith("SEVERE")]
        assert not [m for m in errors if "decode" in m.lower()], errors
        shown.append(study)
    assert len(shown) == len(with_pixels) - len(OHIF_DOES_NOT_SHOW)
