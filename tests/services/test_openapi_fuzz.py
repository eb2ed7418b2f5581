"""Fuzz every operation of the OpenAPI document with schemathesis: no input may cause a 5xx."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

EXAMPLES = 4


def test_no_server_errors(live_server: str) -> None:
    schema = schemathesis.openapi.from_url(f"{live_server}openapi.json")
    base = live_server.rstrip("/")
    failures: list[str] = []
    n_ops = 0
    for result in schema.get_all_operations():
        op = result.ok()
        n_ops += 1

        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(base_url=base, timeout=60)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.query} -> {response.status_code} "
                                f"{response.text[:300]}")

        check()
    assert n_ops >= 20
    assert not failures, "\n".join(failures[:20])
