"""Running independent storage calls side by side.

Table transactions cannot span partitions and the Queue API has no batch send, so bulk paths
issue many small requests; they are I/O-bound and run on one shared pool. A function run by
`run_all` must not call `run_all` itself (it would wait on the pool it occupies).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="sms-io")


def run_all(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`fn` over `items` concurrently, results in order; a single item runs inline."""
    batch = list(items)
    if len(batch) <= 1:
        return [fn(item) for item in batch]
    return list(_POOL.map(fn, batch))
