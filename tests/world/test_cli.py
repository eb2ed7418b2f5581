"""The `fuxiops world` command group: help, clear errors (exit 2, no traceback) for bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fuxiops.cli import main as cli_main


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["fuxiops", "world", *args])
    code = 0
    try:
        cli_main.main()
    except SystemExit as e:
        code = int(e.code or 0)
    cap = capsys.readouterr()
    return code, " ".join((cap.out + cap.err).split())


def test_help_lists_commands(monkeypatch, capsys) -> None:
    code, text = _run(monkeypatch, capsys, "--help")
    assert code == 0
    for cmd in ("build", "describe", "info", "spinup"):
        assert cmd in text


@pytest.mark.parametrize("args, message", [
    (["--grid", "7deg"], "unknown grid"),
    (["--start", "2023-02-30T00"], "invalid start"),
    (["--start", "2023-01-01T03"], "00, 06, 12 or 18"),
    (["--days", "0"], "days must be"),
    (["--obs", "synop,radar"], "unknown observation type"),
])
def test_bad_input_exits_2(monkeypatch, capsys, fuxiops_home: Path, tmp_path: Path, args: list[str],
                           message: str) -> None:
    extra = ["--days", "1"] if "--days" not in args else []
    code, text = _run(monkeypatch, capsys, "build", "--out", str(tmp_path / "w"), *extra, *args)
    assert code == 2, text
    assert message in text and "Traceback" not in text
    assert not (tmp_path / "w").exists()  # nothing written for bad input


def test_describe_missing_world(monkeypatch, capsys, fuxiops_home: Path, tmp_path: Path) -> None:
    code, text = _run(monkeypatch, capsys, "describe", "--world", str(tmp_path), "--out", str(tmp_path / "f.png"))
    assert code == 2 and "not a testbed world" in text
