"""Bounded concurrency: a function over a (possibly huge, lazily listed) stream of items on a thread pool.

A plain ``pool.map`` submits every item at once, which for an archive listing of millions of keys holds millions of
futures (and their results) in memory. :func:`bounded_map` pulls items from the iterator only as work finishes,
so at most ``in_flight`` calls are queued or running at any time and memory stays bounded whatever the input size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def bounded_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int,
    in_flight: int | None = None,
    ordered: bool = False,
    thread_name_prefix: str = "bounded",
) -> Iterator[R]:
    """``fn(item)`` for each item on ``workers`` threads, yielding the results as they are ready.

    At most ``in_flight`` calls (default ``4 * workers``) are submitted and not yet yielded; the next item is taken
    from ``items`` only when one of them is yielded. Results come in completion order, or in the order of ``items``
    when ``ordered`` (a slow call then holds back the ones after it, still within ``in_flight``). With
    ``workers <= 1`` everything runs in the calling thread, in order. An exception raised by ``fn`` is raised by
    the iterator when its result is due; calls not yet started are then cancelled, as they are when the caller
    stops iterating early.
    """
    if workers <= 1:
        for item in items:
            yield fn(item)
        return
    limit = max(1, in_flight if in_flight is not None else 4 * workers)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name_prefix)
    try:
        if ordered:
            yield from _ordered(pool, fn, items, limit)
        else:
            yield from _completed(pool, fn, items, limit)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _completed(pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], limit: int) -> Iterator[R]:
    pending: set[Future[R]] = set()
    for item in items:
        pending.add(pool.submit(fn, item))
        if len(pending) >= limit:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            yield future.result()


def _ordered(pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], limit: int) -> Iterator[R]:
    queue: deque[Future[R]] = deque()
    for item in items:
        queue.append(pool.submit(fn, item))
        if len(queue) >= limit:
            yield queue.popleft().result()
    while queue:
        yield queue.popleft().result()
