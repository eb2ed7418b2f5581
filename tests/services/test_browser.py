"""The forecasters' page in headless Chromium (Playwright): it loads, shows a map, and a click draws a meteogram.

Skipped only where /usr/bin/chromium does not exist (CI installs it).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium")]


def _nonblank(png: bytes) -> int:
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return len(np.unique(img.reshape(-1, 3)[::7], axis=0))


def test_page_map_and_meteogram(live_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(live_server, wait_until="networkidle", timeout=60_000)
            # Selectors are filled from the API: latest run, variables, levels, lead times.
            assert page.locator("#run-select option").count() == 2
            assert page.eval_on_selector("#run-select", "s => s.value") == "2023010106"
            assert page.locator("#variable-select option").count() >= 5
            assert page.locator("#step-select option").count() == 9
            page.wait_for_function("() => { const i = document.getElementById('map-img');"
                                   " return i.complete && i.naturalWidth > 0; }", timeout=90_000)
            assert "/maps/2023010106/" in page.eval_on_selector("#map-img", "i => i.src")
            # Change variable and lead time: the map URL follows.
            page.select_option("#variable-select", "temperature")
            page.select_option("#level-select", "temperature_850hPa")
            page.select_option("#step-select", "12")
            page.wait_for_function("() => document.getElementById('map-img').src.endsWith("
                                   "'/temperature_850hPa/12.png')")
            page.wait_for_function("() => { const i = document.getElementById('map-img');"
                                   " return i.complete && i.naturalWidth > 0; }", timeout=90_000)
            # Click on Paris (2.35E, 48.85N): the page computes coordinates from the map layout.
            box = page.locator("#map-img").bounding_box()
            assert box is not None
            layout = page.evaluate("() => layout")
            l, b, w, h = layout["axes"]
            fx = l + (2.35 + 180) / 360 * w
            fy = b + (48.85 + 90) / 180 * h
            page.mouse.click(box["x"] + fx * box["width"], box["y"] + (1 - fy) * box["height"])
            page.wait_for_function("() => { const i = document.getElementById('meteogram-img');"
                                   " return i.style.display === 'block' && i.complete && i.naturalWidth > 0; }",
                                   timeout=90_000)
            src = page.eval_on_selector("#meteogram-img", "i => i.src")
            lat = float(src.split("latitude=")[1].split("&")[0])
            lon = float(src.split("longitude=")[1].split("&")[0])
            assert abs(lat - 48.85) < 1.0 and abs(lon - 2.35) < 1.0
            info = page.inner_text("#click-info")
            assert abs(float(info.split("at ")[1].split("°N")[0]) - lat) < 0.011
            shot = page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            assert _nonblank(shot) > 100
            assert not errors, errors
        finally:
            browser.close()
