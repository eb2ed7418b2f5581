"""Maps, meteograms and the forecasters' page (without a browser; see test_browser.py for the real one)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

PUBLISHED = "2023010100"


def _image(content: bytes) -> np.ndarray:
    assert content[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))


def test_map_png(client) -> None:
    r = client.get(f"/maps/{PUBLISHED}/temperature_2m/24.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-fuxiops-run"] == PUBLISHED
    img = _image(r.content)
    layout = client.get("/maps/layout").json()
    assert img.shape[:2] == (layout["height"], layout["width"])
    # Not blank: the axes area holds many colours (field + coastlines), not one.
    l, b, w, h = layout["axes"]
    H, W = img.shape[:2]
    inner = img[int(H * (1 - b - h)) + 5:int(H * (1 - b)) - 5, int(W * l) + 5:int(W * (l + w)) - 5]
    assert len(np.unique(inner.reshape(-1, 3), axis=0)) > 50
    # Coastlines: near-black pixels exist inside the map (the colour maps have none that dark).
    assert (inner.max(axis=2) < 40).sum() > 500
    again = client.get(f"/maps/{PUBLISHED}/temperature_2m/24.png")
    assert again.content == r.content  # served from the cache, deterministic


@pytest.mark.parametrize("path,status,parameter", [
    (f"/maps/{PUBLISHED}/snowfall/24.png", 400, "variable"),
    (f"/maps/{PUBLISHED}/temperature_2m/25.png", 400, "step"),
    ("/maps/20230101/temperature_2m/24.png", 422, "run"),
    ("/maps/2000010100/temperature_2m/24.png", 404, "run"),
])
def test_map_bad_input(client, path: str, status: int, parameter: str) -> None:
    r = client.get(path)
    assert r.status_code == status, r.text
    assert r.json()["parameter"] == parameter


def test_derived_wind_map_and_meteogram(client) -> None:
    r = client.get("/maps/latest/wind_speed_850hPa/6.png", params={"wind_speed_unit": "kn"})
    assert r.status_code == 200
    m = client.get("/meteogram.png", params={"latitude": 48.85, "longitude": 2.35, "run": PUBLISHED})
    assert m.status_code == 200
    img = _image(m.content)
    assert img.shape[0] > 400 and len(np.unique(img.reshape(-1, 3), axis=0)) > 20
    bad = client.get("/meteogram.png", params={"latitude": 100, "longitude": 0})
    assert bad.status_code == 400 and bad.json()["parameter"] == "latitude"


def test_page_and_its_catalog(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for element in ("run-select", "variable-select", "level-select", "step-select", "map-img", "meteogram-img"):
        assert f'id="{element}"' in page.text
    cat = client.get("/page/catalog.json", params={"run": PUBLISHED}).json()
    assert cat["run"] == PUBLISHED and len(cat["steps"]) == 41
    levels = [v["level"] for v in cat["families"]["temperature"]]
    assert levels == ["2m", "850 hPa", "500 hPa"]
    assert [v["name"] for v in cat["families"]["wind_speed"]] == ["wind_speed_10m", "wind_speed_850hPa",
                                                                   "wind_speed_500hPa"]
