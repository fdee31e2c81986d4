"""bounded_map: results for every item, never more than ``in_flight`` calls outstanding, errors surface."""

from __future__ import annotations

import threading
import time

import pytest

from tiklive_assets.concurrency import bounded_map


class _Gauge:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.names: set[str] = set()

    def __call__(self, n: int) -> int:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.names.add(threading.current_thread().name)
        time.sleep(0.002 * (n % 3))
        with self.lock:
            self.now -= 1
        return n * n


def test_every_result_once_in_completion_order_with_bounded_concurrency() -> None:
    gauge = _Gauge()
    out = list(bounded_map(gauge, range(60), workers=4, thread_name_prefix="probe"))
    assert sorted(out) == [n * n for n in range(60)]
    assert gauge.peak <= 4
    assert all(name.startswith("probe") for name in gauge.names)


def test_items_are_pulled_lazily_so_at_most_in_flight_are_outstanding() -> None:
    pulled = 0
    yielded = 0
    worst = 0

    def items():
        nonlocal pulled
        for n in range(100):
            pulled += 1
            yield n

    for _ in bounded_map(lambda n: n, items(), workers=3, in_flight=5):
        yielded += 1
        worst = max(worst, pulled - yielded)
    assert yielded == 100
    assert worst <= 5


def test_ordered_keeps_the_input_order() -> None:
    def slow_first(n: int) -> int:
        time.sleep(0.02 if n == 0 else 0)
        return n

    assert list(bounded_map(slow_first, range(30), workers=4, in_flight=8, ordered=True)) == list(range(30))


def test_one_worker_runs_in_the_calling_thread() -> None:
    names = list(bounded_map(lambda _n: threading.current_thread().name, range(3), workers=1))
    assert names == [threading.current_thread().name] * 3


def test_an_error_is_raised_and_the_rest_cancelled() -> None:
    started: list[int] = []

    def fail_on_five(n: int) -> int:
        started.append(n)
        if n == 5:
            raise ValueError("five")
        time.sleep(0.001)
        return n

    with pytest.raises(ValueError, match="five"):
        for _ in bounded_map(fail_on_five, range(10_000), workers=2, in_flight=4):
            pass
    assert len(started) < 100
