"""Refuse to start a service on missing or wrong settings, with a message naming the setting.

Used by ``fuxiops stack up`` before it starts anything and by the container
entrypoints (``fuxiops stack check ROLE``) before they exec the service.
Every message names the configuration field and its environment variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from fuxiops.config import FuxiopsConfig
from fuxiops.errors import ConfigError

ROLES = ("api", "worker", "prefect-server", "dask")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_DATA_LOCATIONS = ("world", "observations", "state", "runs", "products")


def env_name(field: str) -> str:
    """``data.catalog_url`` -> ``FUXIOPS_DATA__CATALOG_URL``."""
    return "FUXIOPS_" + field.upper().replace(".", "__")


def _named(field: str, problem: str) -> str:
    return f"setting {field} ({env_name(field)}): {problem}"


def check_storage(cfg: FuxiopsConfig, names: tuple[str, ...] = _DATA_LOCATIONS) -> list[str]:
    """Local data locations must be folders that exist or can be created, and be writable."""
    problems: list[str] = []
    home = Path(cfg.home).expanduser()
    if home.exists() and not home.is_dir():
        problems.append(f"setting home (FUXIOPS_HOME): {home} exists and is not a folder")
        return problems
    for name in names:
        loc = cfg.location(name)
        if "://" in loc and not loc.startswith("file://"):
            continue  # object stores are checked by fsspec when used
        path = Path(loc.removeprefix("file://"))
        field = f"data.{name}"
        if path.exists() and not path.is_dir():
            problems.append(_named(field, f"{path} exists and is not a folder"))
            continue
        probe = path
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
            problems.append(_named(field, f"{path} cannot be created or written ({probe} is not writable)"))
    return problems


def check_catalog_url(cfg: FuxiopsConfig, connect: bool = False) -> list[str]:
    """The run catalog URL must parse, name a supported database and (optionally) accept a connection."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    field = "data.catalog_url"
    raw = cfg.catalog_url
    try:
        url = make_url(raw)
    except ArgumentError:
        return [_named(field, f"{raw!r} is not a database URL (e.g. postgresql+psycopg://user:pw@host:5432/fuxiops "
                              "or sqlite:////path/catalog.sqlite)")]
    backend = url.get_backend_name()
    if backend not in ("postgresql", "sqlite"):
        return [_named(field, f"database {backend!r} is not supported; use postgresql or sqlite")]
    if backend == "postgresql":
        missing = [part for part, val in (("host", url.host), ("database", url.database), ("user", url.username))
                   if not val]
        if missing:
            return [_named(field, f"{url.render_as_string(hide_password=True)} lacks {', '.join(missing)}")]
    elif url.database and url.database != ":memory:":
        folder = Path(url.database).expanduser().parent
        probe = folder
        while not probe.exists():
            probe = probe.parent
        if not os.access(probe, os.W_OK | os.X_OK):
            return [_named(field, f"the SQLite file's folder {folder} cannot be created or written")]
    if connect:
        from sqlalchemy import create_engine, text

        args = {"connect_timeout": 5} if backend == "postgresql" else {}
        try:
            engine = create_engine(url, connect_args=args)
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
        except Exception as e:  # noqa: BLE001 - any driver error means "cannot use it"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return [_named(field, f"cannot connect to {url.render_as_string(hide_password=True)}: {first}")]
    return []


def check_api_keys(cfg: FuxiopsConfig, require_admin: bool = True) -> list[str]:
    """API key settings hold SHA-256 hex digests; the API needs at least one admin key."""
    problems: list[str] = []
    for field, digests in (("api.admin_key_sha256", cfg.api.admin_key_sha256),
                           ("api.read_key_sha256", cfg.api.read_key_sha256)):
        for i, d in enumerate(digests):
            if not _HEX64.match(d):
                problems.append(_named(field, f"entry {i} is not a lower-case SHA-256 hex digest (64 characters "
                                              f"0-9a-f, got {len(d)} characters); store the digest, never the key: "
                                              "printf %s KEY | sha256sum"))
    if require_admin and not cfg.api.admin_key_sha256:
        problems.append(_named("api.admin_key_sha256", "missing: the API refuses to start without at least one "
                                                        "admin key digest (JSON list, e.g. '[\"<sha256>\"]')"))
    return problems


def check_prefect_env(env: Mapping[str, str], role: str) -> list[str]:
    """Prefect connection settings of the worker (API URL) and the server (database URL)."""
    problems: list[str] = []
    if role == "worker":
        api = env.get("PREFECT_API_URL", "")
        parsed = urlparse(api)
        if not api:
            problems.append("setting PREFECT_API_URL: missing; the worker needs the Prefect server, "
                            "e.g. http://prefect-server:4200/api")
        elif parsed.scheme not in ("http", "https") or not parsed.netloc or not parsed.path.rstrip("/").endswith("/api"):
            problems.append(f"setting PREFECT_API_URL: {api!r} is not a Prefect API URL (http(s)://host:port/api)")
    if role == "prefect-server":
        db = env.get("PREFECT_API_DATABASE_CONNECTION_URL", "")
        if not db:
            problems.append("setting PREFECT_API_DATABASE_CONNECTION_URL: missing; the server needs its database, "
                            "e.g. postgresql+asyncpg://prefect:PASSWORD@postgres:5432/prefect")
        elif not (db.startswith("postgresql+asyncpg://") or db.startswith("sqlite+aiosqlite://")):
            problems.append(f"setting PREFECT_API_DATABASE_CONNECTION_URL: {db.split('://')[0]!r} is not supported; "
                            "use postgresql+asyncpg:// (or sqlite+aiosqlite:// for a single machine)")
    return problems


def check_dask(cfg: FuxiopsConfig) -> list[str]:
    addr = cfg.dask.scheduler_address
    if addr is None:
        return []
    parsed = urlparse(addr)
    if parsed.scheme not in ("tcp", "tls", "inproc", "ucx") or not parsed.hostname or not parsed.port:
        return [_named("dask.scheduler_address", f"{addr!r} is not a scheduler address (tcp://host:8786)")]
    return []


def preflight(cfg: FuxiopsConfig, role: str, env: Mapping[str, str] | None = None, connect: bool = False) -> None:
    """Raise ``ConfigError`` listing every problem of ``role``'s settings (nothing is started)."""
    if role not in ROLES:
        raise ConfigError(f"unknown service role {role!r}; allowed: {', '.join(ROLES)}")
    env = os.environ if env is None else env
    problems: list[str] = []
    if role == "api":
        # The API reads published runs from the products folder (manifests), not the run catalog database.
        problems += check_storage(cfg, ("products",))
        problems += check_api_keys(cfg)
    elif role == "worker":
        problems += check_storage(cfg)
        problems += check_catalog_url(cfg, connect)
        problems += check_dask(cfg)
        problems += check_prefect_env(env, "worker")
    elif role == "prefect-server":
        problems += check_prefect_env(env, "prefect-server")
    elif role == "dask":
        problems += check_storage(cfg)
    if problems:
        raise ConfigError(f"{role} refuses to start:\n  " + "\n  ".join(problems))
