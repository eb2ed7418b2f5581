"""The rollout prefetcher: order kept, producer errors surface, early stop ends the producer."""

from __future__ import annotations

import threading
import time

import pytest

from fuxiops.models.inference import prefetched


def test_items_in_order_and_at_most_depth_ahead() -> None:
    produced: list[int] = []

    def gen():
        for i in range(6):
            produced.append(i)
            yield i

    seen = []
    for x in prefetched(gen(), depth=1):
        time.sleep(0.05)  # the producer may run ahead by one queued item plus the one in hand
        assert len(produced) <= x + 3
        seen.append(x)
    assert seen == list(range(6))


def test_producer_error_is_raised_to_the_consumer() -> None:
    def gen():
        yield 1
        raise ValueError("non-finite values at step 12 h")

    got = []
    with pytest.raises(ValueError, match="non-finite"):
        for x in prefetched(gen()):
            got.append(x)
    assert got == [1]


def test_consumer_stopping_early_stops_the_producer() -> None:
    stopped = threading.Event()

    def gen():
        try:
            for i in range(1000):
                yield i
        finally:
            stopped.set()

    it = prefetched(gen())
    assert next(it) == 0
    it.close()
    assert stopped.is_set()
    assert not any(t.name == "rollout-prefetch" and t.is_alive() for t in threading.enumerate())
