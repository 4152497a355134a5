"""`run_all`: the shared pool helps a call but never holds it behind other invocations' work."""

from __future__ import annotations

import threading

import pytest

from sms_core.concurrency import POOL_SIZE, run_all
from tests.deadlines import scaled


def test_results_come_back_in_order() -> None:
    assert run_all(lambda n: n * n, range(40)) == [n * n for n in range(40)]


def test_every_item_runs_and_the_first_failure_in_order_is_raised() -> None:
    ran: list[int] = []
    lock = threading.Lock()

    def fn(n: int) -> int:
        with lock:
            ran.append(n)
        if n in (3, 7):
            raise ValueError(f"item {n}")
        return n

    with pytest.raises(ValueError, match="item 3"):
        run_all(fn, range(10))
    assert sorted(ran) == list(range(10))


def test_a_call_finishes_while_every_pool_worker_is_held_by_another() -> None:
    release = threading.Event()
    holding = threading.Semaphore(0)

    def hold(_: int) -> None:
        holding.release()
        assert release.wait(scaled(60)), "the blocked items were never released"

    # Another invocation's items take every pool worker (and its own thread) and keep them.
    other = threading.Thread(target=run_all, args=(hold, range(POOL_SIZE + 1)), daemon=True)
    other.start()
    try:
        for _ in range(POOL_SIZE + 1):
            assert holding.acquire(timeout=scaled(30)), "the pool never filled up"
        # With the pool full, this call's items still run: on the calling thread.
        answers: list[list[int]] = []
        mine = threading.Thread(
            target=lambda: answers.append(run_all(lambda n: n + 1, range(5))), daemon=True)
        mine.start()
        mine.join(scaled(30))
        assert answers == [[1, 2, 3, 4, 5]], "the call waited for the other invocation's items"
    finally:
        release.set()
        other.join(scaled(30))


def test_a_nested_call_inside_a_pool_worker_runs_inline() -> None:
    def outer(n: int) -> list[int]:
        return run_all(lambda m: n * 10 + m, range(3))

    assert run_all(outer, range(POOL_SIZE * 2)) == [
        [n * 10, n * 10 + 1, n * 10 + 2] for n in range(POOL_SIZE * 2)]
