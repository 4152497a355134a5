"""Running independent storage calls side by side: the one pool of the app.

Table transactions cannot span partitions and the Queue API has no batch send, so bulk paths
issue many small requests; they are I/O-bound and run on one shared pool. A function that
`run_all` runs may call `run_all` again: the nested call runs inline on its worker, because
waiting for the pool from inside the pool could wait for ever once every worker waits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

POOL_SIZE = 16
# Threads that may each hold an HTTP connection to one host at the same time: the Python
# worker's sync invocation threads (a ThreadPoolExecutor with its default size, at most 32, when
# PYTHON_THREADPOOL_THREAD_COUNT is not set) plus this pool's workers. The SDK clients' connection
# pools keep this many (`adapters/http_pool.py`): a smaller pool closes the extra connections
# after every burst, each with urllib3's "Connection pool is full" warning.
INVOCATION_THREADS = 32
CONNECTIONS_PER_HOST = INVOCATION_THREADS + POOL_SIZE
_POOL = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="sms-io")
_worker = threading.local()


def _in_worker(fn: Callable[[T], R], item: T) -> R:
    _worker.busy = True
    try:
        return fn(item)
    finally:
        _worker.busy = False


def run_all(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`fn` over `items` concurrently, results in order; one item, or a nested call, inline."""
    batch = list(items)
    if len(batch) <= 1 or getattr(_worker, "busy", False):
        return [fn(item) for item in batch]
    return list(_POOL.map(lambda item: _in_worker(fn, item), batch))


class Slots:
    """At most `size` holders at once in this process, and no waiting for one: `held()` says
    whether this caller got a slot (the caller puts its work off when it did not)."""

    def __init__(self, size: int) -> None:
        self._free = threading.BoundedSemaphore(size)

    @contextmanager
    def held(self) -> Iterator[bool]:
        """A slot for the `with` block, if one is free: True when it was taken."""
        taken = self._free.acquire(blocking=False)
        try:
            yield taken
        finally:
            if taken:
                self._free.release()
