"""API errors: one JSON shape for every failure, and handlers that never leak tracebacks or paths.

Bodies follow Open-Meteo's ``{"error": true, "reason": ...}`` and add the
offending ``parameter`` and the ``allowed`` values where they are known.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Sequence

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from fuxiops.errors import FuxiopsError, UnknownVariableError
from fuxiops.logs import get_logger

log = get_logger("fuxiops.services.api")

_PATH_RE = re.compile(r"(/[\w.\-]+){2,}")


class ApiError(Exception):
    """An error the client caused (or a missing resource), answered with ``status``."""

    def __init__(self, status: int, reason: str, parameter: str | None = None,
                 allowed: Sequence[Any] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.parameter = parameter
        self.allowed = list(allowed) if allowed is not None else None
        self.headers = headers or {}


def bad_parameter(parameter: str, reason: str, allowed: Sequence[Any] | None = None, status: int = 400) -> ApiError:
    return ApiError(status, f"{parameter}: {reason}", parameter=parameter, allowed=allowed)


def error_body(status: int, reason: str, parameter: str | None = None, allowed: Sequence[Any] | None = None,
               ) -> bytes:
    body: dict[str, Any] = {"error": True, "status": status, "reason": reason}
    if parameter is not None:
        body["parameter"] = parameter
    if allowed is not None:
        body["allowed"] = list(allowed)[:200]
    return orjson.dumps(body)


def error_response(status: int, reason: str, parameter: str | None = None, allowed: Sequence[Any] | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(status, reason, parameter, allowed), status_code=status,
                    media_type="application/json", headers=headers)


def _scrub(text: str) -> str:
    """Remove anything that looks like a filesystem path from a message shown to clients."""
    return _PATH_RE.sub("<path>", text)


def install_handlers(app: FastAPI) -> None:
    """Register the exception handlers on ``app``."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.reason, exc.parameter, exc.allowed, exc.headers)

    @app.exception_handler(UnknownVariableError)
    async def _unknown(request: Request, exc: UnknownVariableError) -> Response:
        return error_response(400, _scrub(str(exc)), None, exc.allowed)

    @app.exception_handler(FuxiopsError)
    async def _fuxiops(request: Request, exc: FuxiopsError) -> Response:
        return error_response(400, _scrub(str(exc)))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "body", "path", "header")]
        param = ".".join(loc) or None
        msg = str(first.get("msg", "invalid input")).removeprefix("Value error, ")
        allowed = None
        ctx = first.get("ctx") or {}
        if "expected" in ctx:
            allowed = [s.strip().strip("'") for s in re.split(r",| or ", str(ctx["expected"])) if s.strip()]
        bits = []
        for e in errs[:5]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "body", "path", "header"))
            bits.append(f"{where}: {str(e.get('msg', '')).removeprefix('Value error, ')}")
        return error_response(422, _scrub("; ".join(bits) or msg), param, allowed)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        reason = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and reason == "Not Found":
            reason = f"no such resource: {request.url.path}"
        return error_response(exc.status_code, _scrub(reason), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Full details go to the server log only; the client gets an id to quote.
        rid = uuid.uuid4().hex[:12]
        log.error("unhandled error %s on %s %s", rid, request.method, request.url.path, exc_info=exc)
        return error_response(500, f"internal error (id {rid})")
