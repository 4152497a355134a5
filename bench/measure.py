"""Measurement helpers: timed concurrent runs, percentiles, distinct phone numbers, a counter
watch on the ACS emulator and a drain watch on a queue."""

from __future__ import annotations

import itertools
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from azure.storage.queue import QueueClient

T = TypeVar("T")

# Fictional NANP numbers: any +1 NPA 555 XXXX is accepted by sms_core.rules.phone.to_e164. Lines
# start at 0001 (the emulator fails delivery reports for numbers ending in 0000).
_AREA_CODES = ("206", "425", "253", "360", "509", "312", "415", "646", "617", "303")


class NumberPool:
    """Hands out distinct fictional E.164 numbers (+1 NPA 555 XXXX), never the same one twice."""

    def __init__(self) -> None:
        self._numbers: Iterator[str] = (f"+1{area}555{line:04d}" for area in _AREA_CODES
                                        for line in range(1, 10_000))
        self.issued = 0

    def take(self, count: int) -> list[str]:
        """`count` numbers no earlier call returned, in ascending order within an area code."""
        numbers = list(itertools.islice(self._numbers, count))
        if len(numbers) != count:
            raise RuntimeError("the pool of fictional numbers is exhausted")
        self.issued += count
        return numbers


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct` percentile (0..100) with linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    if len(values) == 1:
        return float(values[0])
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    if pct <= 0:
        return float(min(values))
    if pct >= 100:
        return float(max(values))
    return float(cuts[round(pct) - 1])


class CpuMeter:
    """CPU time (user + system) of named processes from /proc/<pid>/stat, and as `other` what
    the rest of the machine used meanwhile (from /proc/stat): a busy neighbour shows there."""

    _TICK = os.sysconf("SC_CLK_TCK")
    _MACHINE = "_machine"

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)

    def snapshot(self) -> dict[str, float]:
        """CPU seconds used so far by each process that still runs, and by the machine."""
        out: dict[str, float] = {}
        for name, pid in self.pids.items():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[name] = (int(fields[11]) + int(fields[12])) / self._TICK
        # user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        out[self._MACHINE] = (sum(ticks) - ticks[3] - ticks[4]) / self._TICK
        return out

    @classmethod
    def used(cls, before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
        """CPU seconds per process between two snapshots, plus `other` (the rest of the
        machine, never below 0)."""
        used = {k: after[k] - before[k] for k in after if k in before and k != cls._MACHINE}
        machine = after.get(cls._MACHINE, 0.0) - before.get(cls._MACHINE, 0.0)
        used["other"] = max(0.0, machine - sum(used.values()))
        return used


@dataclass(frozen=True)
class Run:
    """A timed run of `count` operations (each of `units` items) with per-operation latencies,
    and the CPU seconds each process of the stack used during it."""

    count: int
    elapsed_s: float
    latencies_s: tuple[float, ...] = ()
    units: int = 1
    cpu_s: Mapping[str, float] = field(default_factory=dict)

    @staticmethod
    def combine(runs: Sequence[Run]) -> Run:
        """Several runs of the same operation as one (counts, times and CPU added up)."""
        cpu: dict[str, float] = {}
        for run in runs:
            for name, seconds in run.cpu_s.items():
                cpu[name] = cpu.get(name, 0.0) + seconds
        return Run(sum(r.count for r in runs), sum(r.elapsed_s for r in runs),
                   tuple(x for r in runs for x in r.latencies_s), runs[0].units, cpu)

    def cpu_ms_per_unit(self) -> dict[str, float]:
        """CPU milliseconds per item, per process."""
        items = self.count * self.units
        return {k: round(v * 1000 / items, 2) for k, v in self.cpu_s.items()} if items else {}

    @property
    def rate(self) -> float:
        """Items per second (operations x units / wall time)."""
        return self.count * self.units / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        """Median latency of one operation in milliseconds."""
        return percentile(self.latencies_s, 50) * 1000

    @property
    def p95_ms(self) -> float:
        """95th percentile latency of one operation in milliseconds."""
        return percentile(self.latencies_s, 95) * 1000

    def as_json(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        out: dict[str, Any] = {"count": self.count, "units": self.units,
                               "elapsed_s": round(self.elapsed_s, 4),
                               "rate_per_s": round(self.rate, 2)}
        if self.cpu_s:
            out["cpu_ms_per_item"] = self.cpu_ms_per_unit()
        if self.latencies_s:
            out.update(p50_ms=round(self.p50_ms, 2), p95_ms=round(self.p95_ms, 2),
                       p99_ms=round(percentile(self.latencies_s, 99) * 1000, 2),
                       mean_ms=round(statistics.fmean(self.latencies_s) * 1000, 2),
                       max_ms=round(max(self.latencies_s) * 1000, 2))
        return out


def run_concurrently(operation: Callable[[T], None], items: Sequence[T], concurrency: int,
                     cpu: CpuMeter, units: int = 1) -> Run:
    """Run `operation` once per item on `concurrency` threads (a closed loop: each thread starts
    its next operation when the previous one ends) and time the whole and each operation."""
    latencies: list[float] = [0.0] * len(items)

    def timed(index: int) -> None:
        started = time.perf_counter()
        operation(items[index])
        latencies[index] = time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench") as pool:
        before = cpu.snapshot()
        started = time.perf_counter()
        # list() re-raises the first failure.
        list(pool.map(timed, range(len(items))))
        elapsed = time.perf_counter() - started
        used = CpuMeter.used(before, cpu.snapshot())
    return Run(len(items), elapsed, tuple(latencies), units, used)


def time_one(operation: Callable[[], None], cpu: CpuMeter, units: int = 1) -> Run:
    """Time one call of `operation` (of `units` items)."""
    before = cpu.snapshot()
    started = time.perf_counter()
    operation()
    elapsed = time.perf_counter() - started
    return Run(1, elapsed, (elapsed,), units, CpuMeter.used(before, cpu.snapshot()))


def median_run(runs: Sequence[Run]) -> Run:
    """The run with the median rate (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r.rate)
    return ordered[(len(ordered) - 1) // 2]


class AcceptedWatch:
    """Polls the emulator's `GET /emulator/stats` and times when the accepted count passes marks.

    Two counters per poll, so watching every 20 ms costs the emulator next to nothing.
    """

    def __init__(self, emulator_url: str, interval_s: float = 0.02) -> None:
        self._http = httpx.Client(base_url=emulator_url, timeout=10)
        self._interval = interval_s

    def accepted(self) -> int:
        """Recipients the emulator has accepted so far."""
        resp = self._http.get("/emulator/stats")
        resp.raise_for_status()
        return int(resp.json()["accepted"])

    def time_marks(self, base: int, first: int, last: int, deadline_s: float,
                   alive: Callable[[], str | None], cpu: CpuMeter) -> Run:
        """Wait until `base + last` recipients are accepted; the run spans `first`..`last`.

        `alive` returns None while the producer is healthy, else why it failed (raised as a
        RuntimeError). Timing starts when `base + first` are accepted, so warm-up is excluded.
        """
        return time_count_marks(lambda: self.accepted() - base, first, last, deadline_s,
                                alive, cpu, self._interval, "accepted")

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()


def time_count_marks(count: Callable[[], int], first: int, last: int, deadline_s: float,
                     alive: Callable[[], str | None], cpu: CpuMeter, interval_s: float,
                     what: str, trace: list[tuple[float, int]] | None = None) -> Run:
    """Poll `count` every `interval_s` until it reaches `last`; the run spans `first`..`last`.

    `alive` returns None while the producer is healthy, else why it failed (raised as a
    RuntimeError). Timing starts at the first poll that sees `first`, so warm-up is excluded.
    Each poll's (perf_counter, count) is appended to `trace` when given.
    """
    end = time.monotonic() + deadline_s
    started: float | None = None
    cpu_before: dict[str, float] = {}
    while True:
        value = count()
        now = time.perf_counter()
        if trace is not None:
            trace.append((now, value))
        if started is None and value >= first:
            started, cpu_before = now, cpu.snapshot()
        if value >= last:
            assert started is not None
            return Run(last - first, now - started,
                       cpu_s=CpuMeter.used(cpu_before, cpu.snapshot()))
        problem = alive()
        if problem is not None:
            raise RuntimeError(f"{problem} ({what} {value} of {last})")
        if time.monotonic() > end:
            raise RuntimeError(f"timed out: {value} of {last} {what} after {deadline_s} s")
        time.sleep(interval_s)


class DrainWatch:
    """Counts the messages deleted from a queue since it was created, from the queue's
    approximate message count (one cheap request per poll; nothing else may write to the queue
    meanwhile). A queue-trigger host deletes a message once its function succeeded, so this is
    the number of messages processed."""

    def __init__(self, queue: QueueClient, interval_s: float = 0.05) -> None:
        self._queue = queue
        self._interval = interval_s
        self.initial = self.length()

    def length(self) -> int:
        """Messages in the queue now (invisible ones included)."""
        return int(self._queue.get_queue_properties().approximate_message_count or 0)

    def removed(self) -> int:
        """Messages deleted since the watch was created."""
        return self.initial - self.length()

    def time_marks(self, first: int, last: int, deadline_s: float,
                   alive: Callable[[], str | None], cpu: CpuMeter,
                   trace: list[tuple[float, int]] | None = None) -> Run:
        """Wait until `last` messages are deleted; the run spans `first`..`last` (see
        `time_count_marks`)."""
        return time_count_marks(self.removed, first, last, deadline_s, alive, cpu,
                                self._interval, "processed", trace)
