"""`GroupCommit`: callers queued behind a write for the same key go out together, each hears
its own result or the write's failure, and nobody waits for company."""

from __future__ import annotations

import threading

import pytest

from sms_core.concurrency import GroupCommit
from tests.deadlines import scaled


class _Writes:
    """A write function that records its calls and can be held open."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[list[int]]]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail: BaseException | None = None

    def __call__(self, key: str, batches: list[list[int]]) -> list[int]:
        self.calls.append((key, [list(b) for b in batches]))
        self.entered.set()
        assert self.release.wait(scaled(30))
        if self.fail is not None:
            raise self.fail
        return [sum(b) for b in batches]


def _submit_in_thread(commit: GroupCommit[str, int, int], key: str, items: list[int],
                      out: dict[int, object]) -> threading.Thread:
    def run() -> None:
        try:
            out[items[0]] = commit.submit(key, items)
        except Exception as exc:
            out[items[0]] = exc
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_queued(commit: GroupCommit[str, int, int], key: str, count: int) -> None:
    pause = threading.Event()  # never set: a sleep between polls
    for _ in range(int(scaled(30) / 0.005)):
        if commit.waiting(key) >= count:
            return
        pause.wait(0.005)
    raise AssertionError(f"{count} callers never queued")


def _held_first_write(limit: int) -> tuple[_Writes, GroupCommit[str, int, int],
                                           dict[int, object], threading.Thread]:
    """A commit whose first write (item 1 under "a") is under way and held open; the results
    of the callers go into the dict, by their first item."""
    writes = _Writes()
    writes.release.clear()
    commit: GroupCommit[str, int, int] = GroupCommit(writes, limit=limit)
    out: dict[int, object] = {}
    first = _submit_in_thread(commit, "a", [1], out)
    assert writes.entered.wait(scaled(30))
    return writes, commit, out, first


def _release(writes: _Writes, threads: list[threading.Thread]) -> None:
    writes.release.set()
    for t in threads:
        t.join(scaled(30))


def test_a_caller_alone_writes_at_once_and_gets_its_result() -> None:
    writes = _Writes()
    commit: GroupCommit[str, int, int] = GroupCommit(writes, limit=10)
    assert commit.submit("a", [1, 2, 3]) == 6
    assert commit.submit("a", [4]) == 4
    assert writes.calls == [("a", [[1, 2, 3]]), ("a", [[4]])]


def test_callers_queued_behind_a_write_go_out_together_in_one_write() -> None:
    writes, commit, out, first = _held_first_write(limit=10)
    queued = [_submit_in_thread(commit, "a", [n, n], out) for n in (10, 20, 30)]
    _wait_queued(commit, "a", 3)
    _release(writes, [first, *queued])
    assert out == {1: 1, 10: 20, 20: 40, 30: 60}  # each caller its own share
    assert len(writes.calls) == 2
    assert sorted(map(sorted, writes.calls[1][1])) == [[10, 10], [20, 20], [30, 30]]


def test_a_write_takes_no_more_than_the_limit_and_the_rest_follow() -> None:
    writes, commit, out, first = _held_first_write(limit=4)
    queued = []
    for n in (10, 20, 30):  # two items each: two fit in one write of at most 4
        queued.append(_submit_in_thread(commit, "a", [n, n], out))
        _wait_queued(commit, "a", len(queued))
    _release(writes, [first, *queued])
    assert [batches for _, batches in writes.calls] == [[[1]], [[10, 10], [20, 20]], [[30, 30]]]
    assert out == {1: 1, 10: 20, 20: 40, 30: 60}


def test_another_key_does_not_wait_for_a_write_under_way() -> None:
    writes = _Writes()
    writes.release.clear()
    held_a = threading.Event()

    def write(key: str, batches: list[list[int]]) -> list[int]:
        if key == "a":
            held_a.set()
            return writes(key, batches)
        return [sum(b) for b in batches]

    commit: GroupCommit[str, int, int] = GroupCommit(write, limit=10)
    out: dict[int, object] = {}
    held = _submit_in_thread(commit, "a", [1], out)
    assert held_a.wait(scaled(30))
    assert commit.submit("b", [5]) == 5  # while "a" is still being written
    assert out == {}
    writes.release.set()
    held.join(scaled(30))
    assert out == {1: 1}


def test_every_caller_of_a_failed_write_hears_the_failure_and_the_next_write_runs() -> None:
    writes, commit, out, first = _held_first_write(limit=10)
    queued = [_submit_in_thread(commit, "a", [n], out) for n in (10, 20)]
    _wait_queued(commit, "a", 2)
    writes.fail = RuntimeError("storage down")
    _release(writes, [first, *queued])
    assert all(isinstance(out[n], RuntimeError) for n in (1, 10, 20))
    writes.fail = None
    assert commit.submit("a", [7]) == 7  # nothing is left holding the key


def test_many_threads_each_get_exactly_their_own_result() -> None:
    writes = _Writes()
    commit: GroupCommit[str, int, int] = GroupCommit(writes, limit=8)
    out: dict[int, object] = {}
    threads = [_submit_in_thread(commit, "a", [n, 1], out) for n in range(100, 400)]
    for t in threads:
        t.join(scaled(60))
    assert out == {n: n + 1 for n in range(100, 400)}
    written = [item for _, batches in writes.calls for b in batches for item in b]
    assert sorted(written) == sorted([n for n in range(100, 400)] + [1] * 300)


@pytest.mark.parametrize("limit", [1, 3])
def test_a_caller_with_more_than_the_limit_still_writes_its_items(limit: int) -> None:
    writes = _Writes()
    commit: GroupCommit[str, int, int] = GroupCommit(writes, limit=limit)
    assert commit.submit("a", [1, 2, 3, 4]) == 10


def test_a_write_that_answers_for_the_wrong_number_of_callers_fails_them_and_frees_the_key(
        ) -> None:
    answers = [[1, 2]]  # two results for one caller: a bug in the write, not a silent mix-up

    def write(key: str, batches: list[list[int]]) -> list[int]:
        return answers.pop() if answers else [sum(b) for b in batches]

    commit: GroupCommit[str, int, int] = GroupCommit(write, limit=10)
    with pytest.raises(ValueError):
        commit.submit("a", [5])
    assert commit.waiting("a") == 0 and commit.submit("a", [5]) == 5
