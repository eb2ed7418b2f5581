"""Container health probe: ``python -m fuxiops.pipeline.stack.healthcheck [ROLE]`` exits 0 when healthy.

The role (default ``$FUXIOPS_ROLE``) picks the endpoint each service already
offers: the API's ``/health``, the Prefect server's ``/api/health``, the
Prefect worker's ``--with-healthcheck`` server, the Dask dashboards'
``/health``. Standard library only, so it costs nothing in the API image.
"""

from __future__ import annotations

import os
import sys
import urllib.request

from fuxiops.pipeline.stack.stack_paths import API_HEALTH


def endpoint(role: str, env: os._Environ[str] | dict[str, str] = os.environ) -> str:
    """The URL probed for ``role`` (inside its own container, so 127.0.0.1)."""
    urls = {
        "api": f"http://127.0.0.1:{env.get('FUXIOPS_API__PORT', '8000')}{API_HEALTH}",
        "prefect-server": f"http://127.0.0.1:{env.get('PREFECT_SERVER_API_PORT', '4200')}/api/health",
        "prefect-worker": f"http://127.0.0.1:{env.get('PREFECT_WORKER_WEBSERVER_PORT', '8080')}/health",
        "dask-scheduler": "http://127.0.0.1:8787/health",
        "dask-worker": "http://127.0.0.1:8788/health",
    }
    if role not in urls:
        raise SystemExit(f"healthcheck: unknown role {role!r}; allowed: {', '.join(urls)}")
    return urls[role]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    role = args[0] if args else os.environ.get("FUXIOPS_ROLE", "api")
    url = endpoint(role)
    try:
        with urllib.request.urlopen(url, timeout=4) as r:  # noqa: S310 - fixed local URL
            ok = r.status == 200
    except OSError as e:
        print(f"{role}: {url} unreachable: {e}", file=sys.stderr)
        return 1
    if not ok:
        print(f"{role}: {url} answered {r.status}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
