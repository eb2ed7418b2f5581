"""``fuxiops serve``: the help, key hashing, a demo run, and a real server started from the CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from fuxiops.cli.main import _register_groups, app
from fuxiops.services.api.security import hash_key


def _cli() -> CliRunner:
    _register_groups()
    return CliRunner()


def test_help_and_hash_key() -> None:
    r = _cli().invoke(app, ["serve", "--help"])
    assert r.exit_code == 0 and "--port" in r.output and "hash-key" in r.output
    r = _cli().invoke(app, ["serve", "hash-key", "s3cret"])
    assert r.exit_code == 0 and r.output.strip() == hash_key("s3cret")


def test_bad_run_id_exits_2(fuxiops_home: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "fuxiops.cli.main", "serve", "demo-run", "--run", "tomorrow"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "YYYYMMDDHH" in out.stderr and "Traceback" not in out.stderr


def test_serve_starts_uvicorn_on_the_configured_port(fuxiops_home: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "deploy.yaml"
    cfg.write_text(f"home: {fuxiops_home}\napi:\n  host: 127.0.0.1\n  port: {port}\n  workers: 1\n")
    r = _cli().invoke(app, ["serve", "demo-run", "--config", str(cfg), "--steps", "3", "--grid", "11.25deg"])
    assert r.exit_code == 0, r.output
    assert (fuxiops_home / "products" / "2023010100" / "manifest.json").exists()
    proc = subprocess.Popen([sys.executable, "-m", "fuxiops.cli.main", "serve", "--config", str(cfg)],
                            env={**os.environ, "FUXIOPS_HOME": str(fuxiops_home)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        body = None
        for _ in range(300):
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                if r.status_code == 200:
                    body = r.json()
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        assert body is not None, proc.stdout.read().decode() if proc.poll() is not None else "no answer"
        assert body["status"] == "ok" and body["latest"] == "2023010100"
        fc = httpx.get(f"http://127.0.0.1:{port}/v1/forecast",
                       params={"latitude": 1, "longitude": 1, "hourly": "temperature_2m"}, timeout=30).json()
        assert len(fc["hourly"]["temperature_2m"]) == 3
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
