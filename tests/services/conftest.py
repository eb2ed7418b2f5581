"""Fixtures of the API tests: a products folder with synthetic runs, and apps/clients over it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from fuxiops.config import load_config
from fuxiops.services.api.security import hash_key
from fuxiops.services.api.settings import ServiceSettings, Settings
from fuxiops.services.api.synthetic import write_run

ADMIN_KEY = "admin-secret-for-tests"
READ_KEY = "read-secret-for-tests"
PUBLISHED = "2023010100"
DEGRADED = "2023010106"
FAILED = "2023010112"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives headless Chromium (/usr/bin/chromium)")


@pytest.fixture(scope="session")
def products_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three runs: published (41 steps), degraded (newer, 9 steps), failed (newest, not servable)."""
    root = tmp_path_factory.mktemp("products_template")
    write_run(root, PUBLISHED, grid="5.625deg", steps=41, seed=0, status="published")
    write_run(root, DEGRADED, grid="5.625deg", steps=9, seed=1, status="degraded", model="fuxi-tiny-degraded")
    write_run(root, FAILED, grid="5.625deg", steps=3, seed=2, status="failed", product_files=False)
    return root


@pytest.fixture
def products(tmp_path: Path, products_template: Path) -> Path:
    """A private copy (tests may delete or damage runs)."""
    dst = tmp_path / "products"
    shutil.copytree(products_template, dst, symlinks=True)
    return dst


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path, products: Path) -> SettingsFactory:
    def make(api: dict[str, Any] | None = None, **service: Any) -> Settings:
        return _settings(tmp_path / "home", products, tmp_path / "cache", api, **service)
    return make


def _settings(home: Path, products: Path, cache: Path, api: dict[str, Any] | None = None,
              **service: Any) -> Settings:
    api_cfg = {"admin_key_sha256": [hash_key(ADMIN_KEY)], "rate_limit_per_minute": 1_000_000, **(api or {})}
    cfg = load_config(home=str(home), data={"products": str(products)}, api=api_cfg)
    svc = {"cache_dir": str(cache), "prebuild_latest": False, "catalog_recheck_seconds": 0.0, **service}
    return Settings(cfg, ServiceSettings(**svc))


@pytest.fixture(scope="session")
def client(products_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A client over the shared template runs: for tests that only read."""
    from fastapi.testclient import TestClient

    from fuxiops.services.api.app import create_app

    base = tmp_path_factory.mktemp("ro")
    settings = _settings(base / "home", products_template, base / "cache")
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def make_client(make_settings: SettingsFactory) -> Iterator[Callable[..., Any]]:
    """Clients over a private copy of the runs, with custom settings (for tests that change things)."""
    from fastapi.testclient import TestClient

    from fuxiops.services.api.app import create_app

    opened: list[Any] = []

    def make(api: dict[str, Any] | None = None, trigger: Any = None, **service: Any) -> Any:
        c = TestClient(create_app(make_settings(api, **service), trigger=trigger), raise_server_exceptions=False)
        c.__enter__()
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.__exit__(None, None, None)


@pytest.fixture
def admin_key() -> str:
    return ADMIN_KEY


@pytest.fixture
def read_key() -> str:
    return READ_KEY


def read_manifest(products: Path, run_id: str) -> dict[str, Any]:
    return json.loads((products / run_id / "manifest.json").read_text())


@pytest.fixture(scope="session")
def live_server(products_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app under a real uvicorn server in a thread (HTTP on 127.0.0.1): base URL with trailing slash."""
    import socket
    import threading
    import time

    import uvicorn

    from fuxiops.services.api.app import create_app

    base = tmp_path_factory.mktemp("live")
    settings = _settings(base / "home", products_template, base / "cache")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if time.monotonic() - t0 > 30:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)
