"""Prometheus metrics of the service, and the ASGI middleware that counts requests and enforces rate limits.

Metrics use a registry per application (so that tests can build many apps);
with ``PROMETHEUS_MULTIPROC_DIR`` set (several uvicorn workers) /metrics
aggregates all workers.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

from fuxiops.services.api.errors import error_body
from fuxiops.services.api.security import TokenBucketLimiter, hash_key, key_matches

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Paths never rate limited (probes and scrapes must work under load).
UNLIMITED = ("/health", "/metrics")


class Metrics:
    """The service's metrics on their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("fuxiops_api_requests_total", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("fuxiops_api_request_duration_seconds", "Request latency by route", ["route"],
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                 registry=self.registry)
        self.rate_limited = Counter("fuxiops_api_rate_limited_total", "Requests refused by the rate limiter",
                                    registry=self.registry)
        self.runs_available = Gauge("fuxiops_api_runs_available", "Runs listed in the products folder",
                                    registry=self.registry)
        self.index_builds = Counter("fuxiops_api_point_index_builds_total", "Point indexes opened or built",
                                    registry=self.registry)
        self.cycles_triggered = Counter("fuxiops_api_cycles_triggered_total", "Cycles triggered via the admin API",
                                        ["backend"], registry=self.registry)

    def exposition(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            reg = CollectorRegistry()
            multiprocess.MultiProcessCollector(reg)
            return generate_latest(reg), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class GuardMiddleware:
    """Counts and times every request, and applies the per-client token bucket."""

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: Metrics, limiter: TokenBucketLimiter,
                 trust_forwarded_for: bool = False, key_digests: tuple[str, ...] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.limiter = limiter
        self.trust_forwarded_for = trust_forwarded_for
        self.key_digests = key_digests

    def _client(self, scope: Scope) -> str:
        key = None
        forwarded = None
        for name, value in scope.get("headers", ()):
            if name == b"x-api-key":
                key = value.decode("latin-1")
            elif name == b"x-forwarded-for" and self.trust_forwarded_for:
                forwarded = value.decode("latin-1").split(",")[0].strip()
        # Only a valid key gets its own bucket: random keys must not buy fresh buckets.
        if key and self.key_digests and key_matches(key, self.key_digests):
            return "key:" + hash_key(key)[:16]
        if forwarded:
            return "ip:" + forwarded
        client = scope.get("client")
        return "ip:" + (client[0] if client else "unknown")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if not path.startswith(UNLIMITED):
            wait = self.limiter.take(self._client(scope))
            if wait > 0:
                self.metrics.rate_limited.inc()
                retry = str(max(1, math.ceil(wait)))
                await send({"type": "http.response.start", "status": 429,
                            "headers": [(b"content-type", b"application/json"), (b"retry-after", retry.encode())]})
                await send({"type": "http.response.body",
                            "body": error_body(429, f"rate limit exceeded; retry after {retry} s")})
                return
        t0 = time.perf_counter()
        status = [500]

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(scope.get("method", ""), route, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)
