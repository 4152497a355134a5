"""Running independent storage calls side by side: the one pool of the app.

Table transactions cannot span partitions and the Queue API has no batch send, so bulk paths
issue many small requests; they are I/O-bound and run on one shared pool.

The pool only helps: the calling thread works through its own items too, so a call is never
slower than doing its items one after another, however many other invocations keep the pool
busy. (With every item queued behind the pool instead, a 6-message campaign chunk confirmed while
900 delivery reports were being applied took 38 s, past the client's timeout: each report's
analytics and events held the pool's 16 workers, and the request's writes waited their turn.)
A function that `run_all` runs may call `run_all` again: the nested call runs inline on its
worker, so pool workers never wait for one another.

`GroupCommit` is the other way round: concurrent callers' writes for one key (a counter row, a
sender's conversation index) wait for the write under way and go out together in the next.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

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


class _Items(Generic[T, R]):
    """One `run_all` call's items, taken one at a time by the caller and by pool helpers."""

    def __init__(self, fn: Callable[[T], R], items: list[T]) -> None:
        self._fn = fn
        self._items = items
        self._next = 0
        self._finished = 0
        self._outcomes: list[tuple[bool, Any]] = [(False, None)] * len(items)
        self._cond = threading.Condition()

    def work(self) -> None:
        """Run items until none is left to take."""
        while True:
            with self._cond:
                i = self._next
                if i >= len(self._items):
                    return
                self._next += 1
            try:
                outcome: tuple[bool, Any] = (True, self._fn(self._items[i]))
            except BaseException as exc:  # re-raised in the caller, as Executor.map does
                outcome = (False, exc)
            with self._cond:
                self._outcomes[i] = outcome
                self._finished += 1
                if self._finished == len(self._items):
                    self._cond.notify_all()

    def help(self) -> None:
        """A pool worker's share: nested `run_all` calls inside run inline."""
        _worker.busy = True
        try:
            self.work()
        finally:
            _worker.busy = False

    def results(self) -> list[R]:
        """Wait for the items other threads took; results in order, or the first failure."""
        with self._cond:
            self._cond.wait_for(lambda: self._finished == len(self._items))
        for ok, value in self._outcomes:
            if not ok:
                raise value
        return [value for _, value in self._outcomes]


def run_all(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`fn` over `items` concurrently, results in order; one item, or a nested call, inline.

    Every item runs even when one fails; the first failing item's exception is raised then.
    """
    batch = list(items)
    if len(batch) <= 1 or getattr(_worker, "busy", False):
        return [fn(item) for item in batch]
    shared = _Items(fn, batch)
    for _ in range(min(len(batch) - 1, POOL_SIZE)):
        _POOL.submit(shared.help)
    shared.work()
    return shared.results()


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


K = TypeVar("K")


class _Ticket(Generic[T, R]):
    """One caller's items waiting in a `GroupCommit`, and what became of them."""

    def __init__(self, items: list[T]) -> None:
        self.items = items
        self.woken = threading.Event()
        self.written = False
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[K, T, R]):
    """Callers' items for one key written together, by one of the callers, in one go.

    `submit(key, items)` returns once `write(key, [items, ...])` has written its items, along
    with the items of every other caller that queued for the same key meanwhile (at most `limit`
    items in all, except a single caller's own), and gives back this caller's share of the
    result (`write` returns one result per list, in order), or raises what `write` raised. A
    caller alone writes at once: nothing waits for company. While a write for a key is under
    way the next callers queue; the first of them writes for all the others when it ends.

    This is group commit: an entity-group transaction costs the client far more than one
    entity (azure-core builds and parses its multipart body with the `email` package), so ten
    facts for one counter row are cheaper in one transaction than in ten.
    """

    def __init__(self, write: Callable[[K, list[list[T]]], list[R]], limit: int) -> None:
        self._write = write
        self._limit = limit
        self._lock = threading.Lock()
        self._queues: dict[K, list[_Ticket[T, R]]] = {}  # a key is here while it is written

    def submit(self, key: K, items: list[T]) -> R:
        """Write `items` under `key`, with whatever else is queued for it; this call's result."""
        ticket: _Ticket[T, R] = _Ticket(items)
        with self._lock:
            queue = self._queues.get(key)
            if queue is None:
                self._queues[key] = []
            else:
                queue.append(ticket)
        if queue is not None:
            ticket.woken.wait()
        if not ticket.written:  # alone, or woken to write: the queue is ours now
            self._lead(key, ticket)
        if ticket.error is not None:
            raise ticket.error
        return ticket.result  # type: ignore[return-value]  # set with `written`

    def waiting(self, key: K) -> int:
        """How many callers are queued behind the write under way for `key`."""
        with self._lock:
            return len(self._queues.get(key, ()))

    def _lead(self, key: K, own: _Ticket[T, R]) -> None:
        with self._lock:
            queue = self._queues[key]
            batch, size = [own], len(own.items)
            while queue and size + len(queue[0].items) <= self._limit:
                size += len(queue[0].items)
                batch.append(queue.pop(0))
        try:
            results = self._write(key, [t.items for t in batch])
            for t, result in zip(batch, results, strict=True):
                t.result = result
        except BaseException as exc:  # every caller of the batch hears it
            for t in batch:
                t.error = exc
        with self._lock:
            if queue:
                queue.pop(0).woken.set()  # it writes next (`written` is still False)
            else:
                del self._queues[key]
        for t in batch:
            t.written = True
            if t is not own:
                t.woken.set()
