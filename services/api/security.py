"""API keys (stored as SHA-256 digests, compared in constant time) and per-client token-bucket rate limiting."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from typing import Iterable


def hash_key(key: str) -> str:
    """The SHA-256 hex digest under which a key is configured (``fuxiops serve hash-key``)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_matches(key: str | None, digests: Iterable[str]) -> bool:
    """True if ``key`` hashes to one of ``digests``; every digest is compared, in constant time."""
    if not key:
        return False
    digest = hash_key(key).encode()
    ok = False
    for d in digests:
        ok |= hmac.compare_digest(digest, d.strip().lower().encode())
    return ok


class TokenBucketLimiter:
    """One token bucket per client: ``per_minute`` tokens a minute, bursts up to ``burst``.

    Buckets live in this process; with several workers each enforces its own share.
    """

    def __init__(self, per_minute: int, burst: int | None = None, max_clients: int = 50_000) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(burst if burst is not None else max(10, per_minute // 6))
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str, now: float | None = None) -> float:
        """Take a token; returns 0 if allowed, else the seconds to wait."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > self.max_clients:
                self._prune(now)
            return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        # Drop buckets that have refilled: they carry no state worth keeping.
        full = [c for c, (t, last) in self._buckets.items() if t + (now - last) * self.rate >= self.capacity]
        for c in full:
            del self._buckets[c]
