"""User-facing errors: each names the offending input and what is allowed.

The CLI turns any ``FuxiopsError`` into a one-line message and exit code 2
(no traceback unless ``--debug``); the API turns them into 400/422 responses.
"""

from __future__ import annotations

from typing import Sequence


class FuxiopsError(Exception):
    """Base class for errors caused by input or configuration, not by a bug."""


class ConfigError(FuxiopsError):
    """A configuration file or setting is invalid."""


class UnknownVariableError(FuxiopsError, KeyError):
    """A variable or channel name the catalog (or this deployment) does not know."""

    def __init__(self, name: str, allowed: Sequence[str], what: str = "variable") -> None:
        self.name = name
        self.allowed = list(allowed)
        shown = ", ".join(self.allowed[:40]) + (" ..." if len(self.allowed) > 40 else "")
        super().__init__(f"unknown {what} {name!r}; allowed: {shown}")

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return str(self.args[0])


class GridError(FuxiopsError, ValueError):
    """A grid name or coordinate set that does not match a known grid."""


class DataError(FuxiopsError, ValueError):
    """Input data that is corrupt, incomplete or inconsistent."""
