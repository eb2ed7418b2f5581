"""docker-compose.yml validates against the Compose Specification (and docker-compose when installed),
has every service with a healthcheck and a restart policy, and .env.example documents every setting."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
SERVICES = ("postgres", "prefect-server", "prefect-worker", "api", "dask-scheduler", "dask-worker")
#: Interpolated values needed to render the file (required ones have no default on purpose).
RENDER_ENV = {"POSTGRES_PASSWORD": "test-password", "FUXIOPS_ENV_FILE": ".env.example",
              "FUXIOPS_API__ADMIN_KEY_SHA256": '["' + "a" * 64 + '"]'}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _check_jsonschema() -> list[str]:
    exe = Path(sys.executable).parent / "check-jsonschema"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("check-jsonschema")
    assert found, "check-jsonschema not installed: pip install check-jsonschema"
    return [found]


def test_compose_file_matches_the_compose_specification_schema() -> None:
    # The schema is vendored inside check-jsonschema (no network needed).
    res = subprocess.run([*_check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_schema_check_rejects_a_broken_compose_file(tmp_path: Path) -> None:
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  api:\n    image: x\n    helthcheck:\n      test: [CMD, 'true']\n")
    res = subprocess.run([*_check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="Debian's docker-compose not installed (apt-get install -y docker-compose)")
def test_docker_compose_config_validates_and_requires_the_secrets() -> None:
    env = {k: v for k, v in os.environ.items() if k not in RENDER_ENV}
    ok = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"], cwd=REPO,
                        env={**env, **RENDER_ENV}, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    missing = {k: v for k, v in RENDER_ENV.items() if k != "POSTGRES_PASSWORD"}
    bad = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"], cwd=REPO,
                         env={**env, **missing}, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "POSTGRES_PASSWORD" in bad.stdout + bad.stderr


def test_every_service_is_there_with_healthcheck_and_restart(compose: dict) -> None:
    services = compose["services"]
    assert set(SERVICES) <= set(services), f"missing services: {set(SERVICES) - set(services)}"
    for name in SERVICES:
        svc = services[name]
        assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), f"{name}: no restart policy"
        hc = svc.get("healthcheck", {})
        assert hc.get("test") and not hc.get("disable"), f"{name}: no healthcheck"


def test_volumes_images_and_wiring(compose: dict) -> None:
    services = compose["services"]
    assert {"data", "products", "pgdata"} <= set(compose["volumes"])
    for name in ("prefect-worker", "dask-worker"):
        mounts = services[name]["volumes"]
        assert "data:/data" in mounts and "products:/products" in mounts, name
    assert "products:/products" in services["api"]["volumes"]
    assert services["api"]["build"]["target"] == "api"
    for name in ("prefect-server", "prefect-worker", "dask-scheduler", "dask-worker"):
        assert services[name]["build"]["target"] == "cpu", name
    server_env = services["prefect-server"]["environment"]
    assert server_env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert "@postgres:5432/prefect" in server_env["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert services["prefect-server"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    api_env = services["api"]["environment"]
    assert re.search(r":-(\d+)\}", api_env["FUXIOPS_API__WORKERS"]) and \
        int(re.search(r":-(\d+)\}", api_env["FUXIOPS_API__WORKERS"]).group(1)) > 1, "api: several uvicorn workers"
    worker_env = services["prefect-worker"]["environment"]
    assert worker_env["FUXIOPS_DATA__CATALOG_URL"].startswith("postgresql+psycopg://")
    assert worker_env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert "FUXIOPS_DATA__CATALOG_URL" not in api_env, "the API needs no database credentials"
    assert services["prefect-worker"]["command"] == ["prefect-worker"]
    # The worker role registers the deployments (the cycle's among them) before it starts polling.
    entry = (REPO / "deploy" / "docker" / "entrypoint.sh").read_text()
    worker_branch = entry.split("prefect-worker)")[1].split(";;")[0]
    assert "fuxiops stack register" in worker_branch and "fuxiops stack check worker" in worker_branch
    assert os.access(REPO / "deploy" / "docker" / "entrypoint.sh", os.X_OK)
    assert os.access(REPO / "deploy" / "compose" / "initdb" / "10-fuxiops.sh", os.X_OK)
    assert "replicas" in services["dask-worker"]["deploy"]


def test_env_example_documents_every_setting() -> None:
    from fuxiops.pipeline.stack.envdoc import env_example

    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (REPO / ".env.example").read_text(), re.M))
    generated = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", env_example(), re.M))
    assert generated - documented == set(), \
        f"not in .env.example (run `fuxiops stack env-example > .env.example`): {sorted(generated - documented)}"
    referenced = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text()))
    assert referenced - documented == set(), f"compose variables not documented: {sorted(referenced - documented)}"
    # Each variable (or small group of variables) has a comment above it saying what it is.
    lines = (REPO / ".env.example").read_text().splitlines()
    is_var = re.compile(r"^#? ?[A-Z][A-Z0-9_]+=").match
    for i, line in enumerate(lines):
        if is_var(line):
            j = i - 1
            while j >= 0 and is_var(lines[j]):
                j -= 1
            assert j >= 0 and lines[j].startswith("# ") and not lines[j].startswith("# ---"), f"undocumented: {line}"


def test_env_example_names_only_real_settings() -> None:
    """Every FUXIOPS_ variable of the deployment sections maps to a field of the configuration."""
    from fuxiops.config import FuxiopsConfig

    names = re.findall(r"^# (FUXIOPS_[A-Z0-9_]+)=", (REPO / ".env.example").read_text(), re.M)
    skip_prefixes = ("FUXIOPS_STACK_", "FUXIOPS_SERVICE_", "FUXIOPS_IMAGE_", "FUXIOPS_ENV_FILE", "FUXIOPS_CATALOG_DB", "FUXIOPS_CONFIG",
                     "FUXIOPS_API_PUBLISH_PORT", "FUXIOPS_WORKER_LIMIT")
    for name in names:
        if name.startswith(skip_prefixes):
            continue
        model: type = FuxiopsConfig
        for part in name.removeprefix("FUXIOPS_").lower().split("__"):
            assert part in model.model_fields, f"{name}: no field {part!r}"
            model = model.model_fields[part].annotation
