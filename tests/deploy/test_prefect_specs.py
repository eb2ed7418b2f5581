"""Prefect deployment specs: every entrypoint exists, every deployment targets the stack's work pool,
names are unique across deploy/prefect.yaml and deploy/prefect/*.yaml."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from fuxiops.pipeline.stack.settings import WORK_POOL
from fuxiops.pipeline.stack.stack_paths import deployment_files

REPO = Path(__file__).resolve().parents[2]


def specs() -> list[Path]:
    return deployment_files()


def test_the_ops_specs_are_found() -> None:
    names = {p.relative_to(REPO).as_posix() for p in specs()}
    assert "deploy/prefect/ops.yaml" in names


@pytest.mark.parametrize("spec", specs(), ids=lambda p: p.name)
def test_entrypoints_and_pools(spec: Path) -> None:
    doc = yaml.safe_load(spec.read_text())
    assert doc["deployments"], spec
    for dep in doc["deployments"]:
        path, _, func = dep["entrypoint"].partition(":")
        source = REPO / path
        assert source.is_file(), f"{spec.name}: {dep['name']}: no file {path}"
        flows = {n.name for n in ast.parse(source.read_text()).body if isinstance(n, ast.FunctionDef)}
        assert func in flows, f"{spec.name}: {dep['name']}: {path} has no function {func}"
        assert dep["work_pool"]["name"] == WORK_POOL, f"{dep['name']} targets pool {dep['work_pool']['name']}"


def test_deployment_names_are_unique_and_cover_the_operations() -> None:
    names: list[str] = []
    for spec in specs():
        names += [d["name"] for d in yaml.safe_load(spec.read_text())["deployments"]]
    assert len(names) == len(set(names)), names
    assert {"fuxiops-train", "fuxiops-compress"} <= set(names)


def test_ops_flows_run_the_cli_and_fail_loudly() -> None:
    """The train/compress flow body runs a real fuxiops command, logs its output and raises on failure."""
    import importlib.util
    import logging

    spec = importlib.util.spec_from_file_location("ops_flows", REPO / "deploy" / "prefect" / "ops_flows.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    log = logging.getLogger("ops-flows-test")
    log.setLevel(logging.INFO)
    log.addHandler(Keep())
    ok = mod.run_fuxiops(["stack"], ["--help"], logger=log)
    assert ok["returncode"] == 0 and ok["command"][:2] == ["fuxiops", "stack"]
    assert any("Usage" in line for line in lines)
    with pytest.raises(RuntimeError, match="exit code 2"):
        mod.run_fuxiops(["stack", "check"], ["no-such-role"], logger=log)
    assert mod.train.name == "train" and mod.compress.name == "compress"
