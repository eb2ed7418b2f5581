"""The fuxiops CLI: help everywhere, info, and exit code 2 without traceback for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _run(*args: str, env_home: Path | None = None) -> subprocess.CompletedProcess[str]:
    import os
    env = dict(os.environ)
    env.pop("FUXIOPS_CONFIG", None)
    if env_home is not None:
        env["FUXIOPS_HOME"] = str(env_home)
    return subprocess.run([sys.executable, "-m", "fuxiops.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_help_lists_commands() -> None:
    r = _run("--help")
    assert r.returncode == 0 and "info" in r.stdout


def test_every_subcommand_has_help() -> None:
    from typer.main import get_command

    from fuxiops.cli import main as cli_main
    cli_main._register_groups()
    root = get_command(cli_main.app)
    import click

    def walk(cmd: click.Command, path: list[str]) -> list[list[str]]:
        out = [path]
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                out += walk(sub, path + [name])
        return out

    paths = walk(root, [])
    ctx = click.Context(root)
    for p in paths:
        cmd: click.Command = root
        for name in p:
            assert isinstance(cmd, click.Group)
            cmd = cmd.commands[name]
        assert (cmd.help or cmd.short_help), f"fuxiops {' '.join(p)} has no help text"
    del ctx


def test_info_shows_home_and_config(tmp_path: Path) -> None:
    r = _run("info", env_home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert str(tmp_path) in r.stdout and "2.8125deg" in r.stdout and "numpy" in r.stdout


def test_info_does_not_import_torch(tmp_path: Path) -> None:
    code = ("import sys; from fuxiops.cli.main import app, _register_groups; _register_groups(); "
            "from typer.testing import CliRunner; r = CliRunner().invoke(app, ['info']); "
            "assert r.exit_code == 0, r.output; print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**__import__('os').environ, "FUXIOPS_HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("content", ["grid: 0.3deg\n", "grid: [\n"])
def test_bad_config_exits_2_without_traceback(tmp_path: Path, content: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(content)
    r = _run("--config", str(cfg), "info", env_home=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "error:" in r.stderr
    r = _run("--debug", "--config", str(cfg), "info", env_home=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_unknown_command_exits_2() -> None:
    assert _run("no-such-command").returncode == 2
