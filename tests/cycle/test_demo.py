"""``fuxiops demo --no-serve`` on a fresh home: real testbed world, cold start, own-background cycles.

Slow (builds a dinosaur world): run with ``pytest -m slow tests/cycle/test_demo.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


@pytest.mark.slow
def test_demo_from_a_fresh_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    cfg = home / "fuxiops.yaml"
    cfg.write_text(yaml.safe_dump({"home": str(home), "world": {"days": 1},
                                   "schedule": {"forecast_steps": 8}}))
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "FUXIOPS_DASK_INPROCESS": "1"}
    p = subprocess.run([sys.executable, "-m", "fuxiops.cli.main", "--config", str(cfg), "demo", "--no-serve",
                        "--cycles", "3"], env=env, capture_output=True, text=True, timeout=3600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "cycle 1/3 2023010106: " in p.stdout and "(cold start)" in p.stdout
    runs = sorted((home / "products").glob("20*"))
    assert [r.name for r in runs] == ["2023010106", "2023010112", "2023010118"]
    manifest = json.loads((runs[-1] / "manifest.json").read_text())
    assert manifest["steps"][-1] == 48 and manifest["model"]["cycle"]["cold_start"] is False
    # A second demo finds everything published and is quick.
    p2 = subprocess.run([sys.executable, "-m", "fuxiops.cli.main", "--config", str(cfg), "demo", "--no-serve",
                         "--cycles", "3"], env=env, capture_output=True, text=True, timeout=600)
    assert p2.returncode == 0 and p2.stdout.count("already published") == 3
