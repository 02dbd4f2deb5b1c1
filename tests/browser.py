"""Debian's headless Chromium, driven through Debian's chromedriver (selenium), for the
browser tests: one browser per test session.

WebGL comes from SwiftShader (software), which cornerstone needs to draw images. The
driver is never downloaded (no Selenium Manager): ``chromedriver`` must be on PATH.
"""

from __future__ import annotations

import base64
import io
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing

WINDOW = (1400, 900)
TIMEOUT = 90  # seconds for a page to show what it should (software WebGL on a busy CI)
#: Where ``make test`` puts OHIF 3's built app (``npm pack @ohif/app``).
OHIF_DIST = Path(__file__).parent.parent / ".npm-tools/node_modules/@ohif/app/dist"


def require_ohif() -> Path:
    """OHIF 3's ``dist/``; skip (or fail in CI) when ``make test`` could not install it."""
    if not (OHIF_DIST / "index.html").is_file():
        missing(f"OHIF 3 is not installed in {OHIF_DIST} (`make test` installs it with npm)")
    return OHIF_DIST


def _program(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    missing(f"{names[0]} is not installed (Debian package needed; .ci/run installs it)")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A selenium WebDriver for headless Chromium with software WebGL and a fixed size."""
    chromium = _program("chromium", "chromium-browser")
    driver_path = _program("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:  # pragma: no cover - the test extra installs it
        missing("selenium is not installed (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests may run as root (CI containers)
        "--disable-dev-shm-usage",
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        "--ignore-gpu-blocklist",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--force-device-scale-factor=1",
        "--lang=en-US",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    # the page's own size (a window's size includes what headless Chromium counts as its frame)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False},
    )
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def pixel_stats(png: bytes) -> tuple[float, int]:
    """Standard deviation and number of distinct grey levels of an image (PNG bytes)."""
    import numpy as np
    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
    return float(grey.std()), len(np.unique(grey))


def browser_log(driver: Any) -> list[str]:
    """The browser console messages since the last call."""
    return [f"{e['level']} {e['message']}" for e in driver.get_log("browser")]


def wait_for(driver: Any, what: str, check: Any, timeout: float = TIMEOUT) -> Any:
    """``check()``'s first true value, polled; fails the test with the page's URL and the
    browser's last console messages when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n".join(browser_log(driver)[-40:])
            pytest.fail(f"timed out waiting for {what} at {driver.current_url}\n{logs}")
        time.sleep(0.5)


def canvas_png(browser: Any) -> bytes | None:
    """The pixels of the first cornerstone viewport (its 2D canvas), or None before it has
    any size."""
    url = browser.execute_script(
        "const c = document.querySelector('canvas.cornerstone-canvas');"
        "return c && c.width > 1 && c.height > 1 ? c.toDataURL('image/png') : null;"
    )
    return base64.b64decode(url.split(",", 1)[1]) if url else None


#: The first viewport's study (from its image ID) and the spread of the decoded pixel values
#: of its image, through cornerstone (which OHIF puts on ``window``).
VIEWPORT = """
const vp = window.cornerstone?.getRenderingEngines()[0]?.getViewports()[0];
const im = vp?.getCornerstoneImage ? vp.getCornerstoneImage() : null;
if (!im) return null;
const p = im.getPixelData();
let s = 0, s2 = 0;
for (let i = 0; i < p.length; i++) { s += p[i]; s2 += p[i] * p[i]; }
const m = s / p.length;
return [im.imageId, Math.sqrt(Math.max(s2 / p.length - m * m, 0))];
"""


def drawn(png: bytes | None) -> bool:
    if png is None:
        return False
    std, levels = pixel_stats(png)
    return std > 8 and levels >= 16
