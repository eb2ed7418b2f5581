"""Shared helpers of the benchmarks: machine facts, package versions, JSON results, Markdown tables."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any, Iterable, Sequence

RESULTS = Path(__file__).resolve().parent / "results"


def machine_facts() -> dict[str, Any]:
    """CPU model, core count, memory and platform of the machine running the benchmark."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": mem, "platform": platform.platform(),
            "python": platform.python_version(),
            "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            out[n] = None
    return out


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median and min-max of repeated measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    return path


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def checkpoint_pairs(specs: Iterable[str], grid: str, shipped: bool = True) -> dict[str, dict[str, Path]]:
    """Forecaster/assimilator pairs by name from ``--pair NAME=FORECASTER,ASSIMILATOR`` specs, after the
    shipped pair of ``grid`` unless ``shipped`` is False; exits with a message on a malformed spec."""
    from fuxiops.models.base import default_checkpoint

    pairs = {"shipped": {"forecaster": default_checkpoint(grid, "forecaster"),
                         "assimilator": default_checkpoint(grid, "assimilator")}} if shipped else {}
    for spec in specs:
        name, _, paths = spec.partition("=")
        fc, _, asm = paths.partition(",")
        if not (name and fc and asm):
            raise SystemExit(f"--pair wants NAME=FORECASTER,ASSIMILATOR, got {spec!r}")
        pairs[name] = {"forecaster": Path(fc), "assimilator": Path(asm)}
    return pairs
