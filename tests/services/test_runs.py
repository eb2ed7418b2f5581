"""/runs: listing with status, manifests, downloads with Range / ETag / If-None-Match, path safety, deletion."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

PUBLISHED, DEGRADED, FAILED = "2023010100", "2023010106", "2023010112"


def _files(client, run_id: str) -> dict:
    return {f["name"]: f for f in client.get(f"/runs/{run_id}").json()["files"]}


def test_listing_newest_first_with_status(client) -> None:
    body = client.get("/runs").json()
    assert [r["id"] for r in body["runs"]] == [FAILED, DEGRADED, PUBLISHED]
    assert [r["status"] for r in body["runs"]] == ["failed", "degraded", "published"]
    assert [r["servable"] for r in body["runs"]] == [False, True, True]
    assert body["latest"] == DEGRADED
    assert body["runs"][1]["model"]["name"] == "fuxi-tiny-degraded"
    m = client.get(f"/runs/{PUBLISHED}").json()
    assert m["run_id"] == PUBLISHED and m["status"] == "published" and len(m["files"]) == 3
    assert client.get("/runs/2000010100").status_code == 404
    assert client.get("/runs/../../etc").status_code in (404, 422)


def test_download_full_etag_and_304(client, products_template: Path) -> None:
    files = _files(client, PUBLISHED)
    name = next(n for n in files if n.endswith(".nc"))
    r = client.get(f"/runs/{PUBLISHED}/files/{name}")
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == files[name]["sha256"]
    assert r.headers["etag"] == f'"{files[name]["sha256"]}"'
    assert r.headers["accept-ranges"] == "bytes"
    assert r.content == (products_template / PUBLISHED / name).read_bytes()
    again = client.get(f"/runs/{PUBLISHED}/files/{name}", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    head = client.head(f"/runs/{PUBLISHED}/files/{name}")
    assert head.status_code == 200 and int(head.headers["content-length"]) == files[name]["size"]


def test_ranges(client, products_template: Path) -> None:
    name = f"{PUBLISHED}-0h.grib2"
    data = (products_template / PUBLISHED / name).read_bytes()
    url = f"/runs/{PUBLISHED}/files/{name}"
    r = client.get(url, headers={"Range": "bytes=0-3"})
    assert r.status_code == 206 and r.content == b"GRIB"
    assert r.headers["content-range"] == f"bytes 0-3/{len(data)}"
    tail = client.get(url, headers={"Range": "bytes=-4"})
    assert tail.status_code == 206 and tail.content == b"7777"
    mid = client.get(url, headers={"Range": "bytes=1000-"})
    assert mid.content == data[1000:]
    multi = client.get(url, headers={"Range": "bytes=0-3, 100-109"})
    assert multi.status_code == 206
    m = re.match(r"multipart/byteranges; boundary=(\w+)", multi.headers["content-type"])
    assert m
    parts = [p for p in multi.content.split(b"--" + m.group(1).encode()) if p.strip() not in (b"", b"--")]
    bodies = [p.split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n") for p in parts]
    assert bodies == [data[0:4], data[100:110]]
    assert int(multi.headers["content-length"]) == len(multi.content)
    bad = client.get(url, headers={"Range": f"bytes={len(data) + 10}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(data)}"
    # If-Range with another ETag: the whole file
    full = client.get(url, headers={"Range": "bytes=0-3", "If-Range": '"other"'})
    assert full.status_code == 200 and len(full.content) == len(data)


def test_names_never_escape_the_run(make_client, products: Path) -> None:
    c = make_client()
    secret = products.parent / "secret.txt"
    secret.write_text("top secret")
    for name in ("..%2Fsecret.txt", "..%2F..%2Fsecret.txt", "manifest.json", "forecast.zarr", "%2Fetc%2Fpasswd",
                 "%2E%2E", "nothere.grib2"):
        r = c.get(f"/runs/{PUBLISHED}/files/{name}")
        assert r.status_code in (404, 422), (name, r.status_code)
        assert b"top secret" not in r.content and str(products).encode() not in r.content
    # Names that an HTTP client would normalise away, checked at the function that resolves them.
    import pytest

    from fuxiops.services.api.downloads import safe_path
    from fuxiops.services.api.errors import ApiError
    from fuxiops.services.api.store.catalog import read_manifest

    info = read_manifest(products / PUBLISHED)
    for name in (".", "..", "../secret.txt", "/etc/passwd", "a/../../secret.txt"):
        with pytest.raises(ApiError):
            safe_path(info, name)
    # A manifest entry that is a symlink to a file outside the run is not served either.
    link = products / PUBLISHED / "evil.grib2"
    os.symlink(secret, link)
    import json
    mpath = products / PUBLISHED / "manifest.json"
    m = json.loads(mpath.read_text())
    m["files"].append({"name": "evil.grib2", "format": "grib2", "size": 10, "sha256": "0" * 64})
    mpath.write_text(json.dumps(m))
    r = c.get(f"/runs/{PUBLISHED}/files/evil.grib2")
    assert r.status_code == 404 and b"top secret" not in r.content


def test_delete_needs_the_admin_key(make_client, admin_key: str, products: Path) -> None:
    c = make_client()
    assert c.delete(f"/runs/{PUBLISHED}").status_code == 401
    assert c.delete(f"/runs/{PUBLISHED}", headers={"X-API-Key": "wrong"}).status_code == 403
    assert (products / PUBLISHED).exists()
    assert c.get("/v1/forecast", params={"latitude": 0, "longitude": 0, "run": PUBLISHED}).status_code == 200
    r = c.delete(f"/runs/{PUBLISHED}", headers={"X-API-Key": admin_key})
    assert r.status_code == 200 and r.json() == {"deleted": PUBLISHED}
    assert not (products / PUBLISHED).exists()
    assert [x["id"] for x in c.get("/runs").json()["runs"]] == [FAILED, DEGRADED]
    assert c.get("/v1/forecast", params={"latitude": 0, "longitude": 0, "run": PUBLISHED}).status_code == 404
    assert c.delete(f"/runs/{PUBLISHED}", headers={"X-API-Key": admin_key}).status_code == 404


def test_stale_point_indexes_are_pruned(make_client, products: Path, tmp_path: Path) -> None:
    c = make_client()
    assert c.get("/v1/forecast", params={"latitude": 0, "longitude": 0, "run": PUBLISHED}).status_code == 200
    assert c.get("/v1/forecast", params={"latitude": 0, "longitude": 0, "run": DEGRADED}).status_code == 200
    cache = tmp_path / "cache"
    assert len(list(cache.glob("*.points.npy"))) == 2
    import shutil
    shutil.rmtree(products / PUBLISHED)  # removed behind the service's back
    repo = c.app.state.runs
    repo.catalog.refresh(force=True)
    assert repo.prune_cache() == 1
    assert [p.name.split("-")[0] for p in cache.glob("*.points.npy")] == [DEGRADED]


def test_damaged_run_errors_do_not_leak(make_client, products: Path) -> None:
    c = make_client()
    # Corrupt every chunk of one variable: reading fails inside the point-index build.
    chunks = [p for p in (products / PUBLISHED / "forecast.zarr" / "t2m").rglob("*")
              if p.is_file() and not p.name.startswith(".") and p.name != "zarr.json"]
    assert chunks
    for chunk in chunks:
        chunk.write_bytes(b"not zstd at all")
    r = c.get("/v1/forecast", params={"latitude": 0, "longitude": 0, "run": PUBLISHED, "hourly": "temperature_2m"})
    assert r.status_code == 500
    text = r.text
    assert "Traceback" not in text and str(products) not in text and "internal error" in r.json()["reason"]
    # A run whose store is missing: 503 naming the run, no paths.
    import shutil
    shutil.rmtree(products / DEGRADED / "forecast.zarr")
    r = c.get("/v1/forecast", params={"latitude": 0, "longitude": 0, "run": DEGRADED})
    assert r.status_code == 503 and DEGRADED in r.json()["reason"] and str(products) not in r.text
