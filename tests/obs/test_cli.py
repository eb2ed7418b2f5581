"""``fuxiops obs``: ingest with a background file, channel listing, clear errors for bad options."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from typer.testing import CliRunner

from .test_qc import background


def _app():
    from fuxiops.cli.main import _register_groups, app

    if not any(g.name == "obs" for g in app.registered_groups):
        _register_groups()
    return app


def test_ingest_with_background_file(testbed_files: dict[str, Path], tmp_path: Path, fuxiops_home: Path) -> None:
    bg = tmp_path / "background.nc"
    background("2.8125deg").to_netcdf(bg)
    out = tmp_path / "out"
    r = CliRunner().invoke(_app(), ["obs", "ingest", *map(str, testbed_files.values()), "--cycle", "2023010100",
                                    "--out", str(out), "--background", str(bg), "--no-grid", "--mode", "serial"])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "qc_report.json").read_text())
    assert rep["background"] is True and rep["cycle"] == "2023-01-01T00:00Z"
    assert {row["variable"] for row in rep["o_minus_b"]} >= {"t2m", "msl", "t"}
    assert not (out / "gridded.nc").exists()
    md = (out / "qc_report.md").read_text()
    assert "## O-B (used rows)" in md and "| temp |" in md


def test_bad_options_exit_2(tmp_path: Path, fuxiops_home: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    from fuxiops.cli.main import main

    f = tmp_path / "synop_x.bufr"
    f.write_bytes(b"")
    for args, msg in ((["--cycle", "yesterday"], "not a time"),
                      (["--cycle", "2023010100", "--background", str(tmp_path / "none.zarr")], "does not exist"),
                      (["--cycle", "2023010100", "--reader", "nosuch"], "unknown observation reader")):
        monkeypatch.setattr(sys, "argv", ["fuxiops", "obs", "ingest", str(f), "--out", str(tmp_path / "o"), *args])
        with pytest.raises(SystemExit) as e:
            main()
        assert e.value.code == 2, args
        assert msg in " ".join(capsys.readouterr().err.split()), args


def test_channels_command(fuxiops_home: Path) -> None:
    r = CliRunner().invoke(_app(), ["obs", "channels"])
    assert r.exit_code == 0 and "upper_air (106)" in r.output.replace("\n", " ")
