"""Keys, rate limiting, CORS, health, metrics, OpenAPI, the cycle trigger, and no torch in the service."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from fuxiops.services.api.cycles import PrefectTrigger, SubprocessTrigger, default_trigger
from fuxiops.services.api.security import TokenBucketLimiter, hash_key, key_matches


def test_key_hashing() -> None:
    d = hash_key("k1")
    assert len(d) == 64 and key_matches("k1", [hash_key("other"), d.upper()])
    assert not key_matches("k2", [d]) and not key_matches(None, [d]) and not key_matches("", [d])


def test_token_bucket() -> None:
    tb = TokenBucketLimiter(per_minute=60, burst=3)
    assert [tb.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = tb.take("a", now=0.0)
    assert wait == pytest.approx(1.0)
    assert tb.take("b", now=0.0) == 0.0  # per client
    assert tb.take("a", now=1.01) == 0.0  # refilled at 1 token/s


def test_rate_limit_answers_429(make_client) -> None:
    c = make_client(api={"rate_limit_per_minute": 60})  # burst 10
    codes = [c.get("/runs").status_code for _ in range(12)]
    assert codes[:10] == [200] * 10 and codes[-1] == 429
    r = c.get("/runs")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "rate limit" in r.json()["reason"]
    assert c.get("/health").status_code == 200  # probes are never limited
    assert "fuxiops_api_rate_limited_total 3.0" in c.get("/metrics").text
    # Made-up keys do not buy a fresh bucket.
    assert c.get("/runs", headers={"X-API-Key": "random-1"}).status_code == 429


def test_read_keys(make_client, read_key: str, admin_key: str) -> None:
    c = make_client(api={"read_key_sha256": [hash_key(read_key)]})
    assert c.get("/runs").status_code == 401
    assert c.get("/runs", headers={"X-API-Key": "nope"}).status_code == 403
    assert c.get("/runs", headers={"X-API-Key": read_key}).status_code == 200
    assert c.get("/runs", headers={"X-API-Key": admin_key}).status_code == 200
    assert c.get("/v1/forecast", params={"latitude": 1, "longitude": 1, "apikey": read_key}).status_code == 200
    assert c.get("/health").status_code == 200 and c.get("/metrics").status_code == 200


def test_cors(make_client) -> None:
    c = make_client(api={"cors_origins": ["https://forecasters.example"]})
    r = c.get("/runs", headers={"Origin": "https://forecasters.example"})
    assert r.headers["access-control-allow-origin"] == "https://forecasters.example"
    r = c.get("/runs", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_health_metrics_openapi(client) -> None:
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["latest"] == "2023010106" and h["latest_status"] == "degraded"
    client.get("/v1/forecast", params={"latitude": 1, "longitude": 1})
    text = client.get("/metrics").text
    assert 'fuxiops_api_requests_total{method="GET",route="/v1/forecast",status="200"}' in text
    assert "fuxiops_api_request_duration_seconds_bucket" in text
    spec = client.get("/openapi.json").json()
    for path in ("/v1/forecast", "/edr/collections/{collection_id}/position", "/runs/{run_id}/files/{name}",
                 "/maps/{run}/{variable}/{step}.png", "/meteogram.png", "/admin/cycles", "/health", "/metrics"):
        assert path in spec["paths"], path
    assert client.get("/docs").status_code == 200


def test_no_admin_key_configured_disables_admin(make_client) -> None:
    c = make_client(api={"admin_key_sha256": []})
    r = c.post("/admin/cycles", json={"time": "2023-01-01T06:00:00Z"}, headers={"X-API-Key": "anything"})
    assert r.status_code == 403 and "disabled" in r.json()["reason"]


def test_trigger_cycle_spawns_the_command(make_client, admin_key: str, tmp_path: Path) -> None:
    out = tmp_path / "argv.txt"
    # The real subprocess backend, with a recorder program in place of the fuxiops executable.
    recorder = [sys.executable, "-c", f"import sys; open({str(out)!r}, 'w').write(' '.join(sys.argv[1:]))"]
    trig = SubprocessTrigger(command=recorder, log_dir=tmp_path / "logs", config_path="/etc/fuxiops.yaml")
    c = make_client(trigger=trig)
    assert c.post("/admin/cycles", json={"time": "2023-01-01T06:00:00Z"}).status_code == 401
    r = c.post("/admin/cycles", json={"time": "2023-01-01T06:00:00Z"}, headers={"X-API-Key": admin_key})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["backend"] == "subprocess" and body["run_id"] == "2023010106" and int(body["id"]) > 0
    for _ in range(100):
        if out.exists() and out.read_text():
            break
        time.sleep(0.1)
    assert out.read_text() == "--config /etc/fuxiops.yaml cycle run --time 2023-01-01T06:00:00Z"
    for _ in range(100):
        if trig.reap().get(int(body["id"])) == 0 or not trig.children:
            break
        time.sleep(0.1)
    assert not trig.children  # the finished child was reaped
    bad = c.post("/admin/cycles", json={"time": "2023-01-01T05:00:00Z"}, headers={"X-API-Key": admin_key})
    assert bad.status_code == 400 and bad.json()["parameter"] == "time" and "06:00Z" in bad.json()["allowed"]
    junk = c.post("/admin/cycles", json={"time": "soon"}, headers={"X-API-Key": admin_key})
    assert junk.status_code == 422 and junk.json()["parameter"] == "time"


def test_default_trigger_and_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    t = default_trigger()
    assert isinstance(t, SubprocessTrigger)
    assert t.argv(datetime(2023, 1, 1, 12))[-5:] == ["fuxiops.cli.main", "cycle", "run", "--time",
                                                      "2023-01-01T12:00:00Z"]
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    p = default_trigger()
    assert isinstance(p, PrefectTrigger) and p.deployment == "cycle/fuxiops-cycle"


def test_service_does_not_import_torch(tmp_path: Path, products_template: Path) -> None:
    code = f"""
import sys
from fastapi.testclient import TestClient
from fuxiops.config import load_config
from fuxiops.services.api.app import create_app
from fuxiops.services.api.settings import ServiceSettings, Settings
cfg = load_config(home={str(tmp_path)!r}, data={{"products": {str(products_template)!r}}})
app = create_app(Settings(cfg, ServiceSettings(cache_dir={str(tmp_path / 'cache')!r}, prebuild_latest=False)))
with TestClient(app) as c:
    assert c.get("/v1/forecast", params={{"latitude": 1, "longitude": 2, "hourly": "temperature_2m"}}).status_code == 200
    assert c.get("/edr/collections").status_code == 200
bad = [m for m in sys.modules if m == "torch" or m.startswith("torch.") or m.startswith("fuxiops.models")]
assert not bad, bad
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
