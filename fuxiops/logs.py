"""Structured logging: every record says which cycle and run it belongs to.

``bind(cycle=..., run=...)`` sets context for the current task/thread;
records are rendered as one JSON object per line (``FUXIOPS_LOG_FORMAT=json``,
the default for services) or as ``key=value`` text for terminals.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import time
from typing import Any, Iterator

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("fuxiops_log_context", default={})


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add fields (cycle, run, step, ...) to every log record inside the block."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def context() -> dict[str, Any]:
    return dict(_context.get())


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.fuxiops = {**_context.get(), **getattr(record, "fields", {})}
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        out.update(getattr(record, "fuxiops", {}))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in getattr(record, "fuxiops", {}).items())
        base = f"{time.strftime('%H:%M:%S', time.gmtime(record.created))} {record.levelname:<7} {record.name}: " \
               f"{record.getMessage()}"
        s = f"{base} [{fields}]" if fields else base
        if record.exc_info:
            s += "\n" + self.formatException(record.exc_info)
        return s


def setup_logging(level: str | int = "INFO", fmt: str | None = None) -> None:
    """Configure the ``fuxiops`` logger once (idempotent)."""
    fmt = fmt or os.environ.get("FUXIOPS_LOG_FORMAT", "text")
    logger = logging.getLogger("fuxiops")
    for h in list(logger.handlers):
        if getattr(h, "_fuxiops", False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._fuxiops = True  # type: ignore[attr-defined]
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def get_logger(name: str) -> logging.Logger:
    """A logger under ``fuxiops``; pass extra fields with ``extra={"fields": {...}}``."""
    logger = logging.getLogger(name if name.startswith("fuxiops") else f"fuxiops.{name}")
    if not any(isinstance(f, _ContextFilter) for f in logger.filters):
        logger.addFilter(_ContextFilter())
    return logger
