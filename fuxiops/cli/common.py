"""Shared CLI plumbing: the global options and loading the configuration once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.console import Console

from fuxiops.config import FuxiopsConfig, load_config

console = Console(stderr=False)
err_console = Console(stderr=True)


@dataclass
class CliState:
    """Global options, set by the top-level callback."""

    config_path: Path | None = None
    debug: bool = False
    _config: FuxiopsConfig | None = field(default=None, repr=False)

    @property
    def config(self) -> FuxiopsConfig:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


STATE = CliState()


def config() -> FuxiopsConfig:
    """The active configuration (``--config`` / ``$FUXIOPS_CONFIG`` / defaults)."""
    return STATE.config


def config_option() -> Path | None:
    """Per-command ``--config`` so that it can follow the subcommand too."""
    return typer.Option(None, "--config", "-c", envvar="FUXIOPS_CONFIG", help="Deployment YAML file.",
                        show_default=False)


def use_config(path: Path | None) -> FuxiopsConfig:
    """Apply a per-command ``--config`` (if given) and return the configuration."""
    if path is not None:
        STATE.config_path = path
    STATE._config = None
    return STATE.config
