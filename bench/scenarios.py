"""The three measured figures, each against its floor in the same run.

1. single sends through `POST /api/messages` at a fixed client concurrency;
2. dispatch of queued single-recipient messages by the host's `dispatch_sms` queue trigger;
3. one `POST /api/messages` with 1,000 recipients, repeated, median taken.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.floors import AcceptFloor, DispatchFloor
from bench.measure import (
    AcceptedWatch,
    CpuMeter,
    NumberPool,
    Run,
    median_run,
    run_concurrently,
    time_one,
)
from bench.stack import FUNCTION_KEY, ROOT, SENDER, Stack
from localdev.func_host import HostConfig
from sms_core.app import Services
from sms_core.models import SendRequest
from sms_core.sending import accept_send
from sms_core.settings import load_settings
from sms_core.storage import MESSAGES_TABLE, OUTBOUND_QUEUE

BODY = "Your verification code is 482913. Reply STOP to opt out."
DISPATCH_DEADLINE_S = 180.0
# The queue trigger's concurrency, as the host reads it from host.json (batchSize 16 and
# newBatchThreshold 8: at most 24 messages in flight); the dispatch floor uses the same.
QUEUE_OPTIONS = HostConfig.load(ROOT).queues


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass
class Figure:
    """One measured figure: our rate, the floor's rate, and the target for their ratio."""

    key: str
    title: str
    item: str  # what is counted: "msg", "recipient"
    ours: Run
    floor: Run
    target: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def unit(self) -> str:
        """The rate's unit."""
        return f"{self.item}/s"

    @property
    def ratio(self) -> float:
        """How many times the floor's rate ours is below (floor rate / our rate)."""
        return self.floor.rate / self.ours.rate if self.ours.rate > 0 else float("inf")

    @property
    def met(self) -> bool | None:
        """Whether the ratio meets its target (None without a target)."""
        return None if self.target is None else self.ratio <= self.target


class Api:
    """An HTTP client for the host's API with a keep-alive pool of `connections`."""

    def __init__(self, base_url: str, connections: int) -> None:
        self.client = httpx.Client(
            base_url=base_url, timeout=60,
            headers={"x-functions-key": FUNCTION_KEY, "content-type": "application/json"},
            limits=httpx.Limits(max_connections=connections,
                                max_keepalive_connections=connections))

    def send(self, body: bytes) -> httpx.Response:
        """POST /api/messages; raises unless the answer is 202."""
        resp = self.client.post("/messages", content=body)
        if resp.status_code != 202:
            raise RuntimeError(f"POST /api/messages answered {resp.status_code}: "
                               f"{resp.text[:500]}")
        return resp

    def close(self) -> None:
        """Close the pool."""
        self.client.close()


def _request_body(recipients: str | list[str]) -> bytes:
    return json.dumps({"to": recipients, "message": BODY}).encode()


def _check_queued(resp: httpx.Response, expected: int) -> None:
    statuses = Counter(m["status"] for m in resp.json()["messages"])
    if statuses != Counter({"queued": expected}):
        raise RuntimeError(f"expected {expected} queued, got {dict(statuses)}")


# -- 1. single sends ----------------------------------------------------------------------------


def single_sends(api: Api, floor: AcceptFloor, numbers: NumberPool, count: int,
                 warmup: int, concurrency: int, cpu: CpuMeter, rounds: int = 4) -> Figure:
    """`count` one-recipient sends through the API vs the storage operations they need, in
    `rounds` alternating floor and API rounds so a change in machine load affects both."""
    def ours(body: bytes) -> None:
        _check_queued(api.send(body), 1)

    log(f"single sends: warm-up ({warmup} floor, {warmup} API)")
    run_concurrently(floor.accept_one, numbers.take(warmup), concurrency, cpu)
    run_concurrently(ours, [_request_body(n) for n in numbers.take(warmup)], concurrency, cpu)
    floor_runs: list[Run] = []
    ours_runs: list[Run] = []
    for i in range(rounds):
        size = count // rounds + (1 if i < count % rounds else 0)
        log(f"single sends: round {i + 1} of {rounds}, {size} floor then {size} API "
            f"at concurrency {concurrency}")
        floor_runs.append(run_concurrently(floor.accept_one, numbers.take(size), concurrency,
                                           cpu))
        bodies = [_request_body(n) for n in numbers.take(size)]
        ours_runs.append(run_concurrently(ours, bodies, concurrency, cpu))
    return Figure("single_send_http", f"single sends via HTTP (C={concurrency})", "msg",
                  Run.combine(ours_runs), Run.combine(floor_runs), target=1.25,
                  detail={"concurrency": concurrency, "warmup": warmup, "rounds": rounds,
                          "ours_rates": [round(r.rate, 1) for r in ours_runs],
                          "floor_rates": [round(r.rate, 1) for r in floor_runs],
                          "floor_ops": "2 opt-out point reads + 1-entity transaction + "
                                       "1 queue send"})


# -- 3. one request, many recipients ------------------------------------------------------------


def big_requests(api: Api, floor: AcceptFloor, numbers: NumberPool, recipients: int,
                 repeats: int, warmup: int, cpu: CpuMeter) -> Figure:
    """One request of `recipients` recipients, `repeats` times (median) vs its storage work."""
    def ours_once() -> Run:
        body = _request_body(numbers.take(recipients))
        holder: list[httpx.Response] = []
        run = time_one(lambda: holder.append(api.send(body)), cpu, units=recipients)
        _check_queued(holder[0], recipients)
        return run

    def floor_once() -> Run:
        batch = numbers.take(recipients)
        return time_one(lambda: floor.accept_many(batch), cpu, units=recipients)

    log(f"{recipients}-recipient requests: warm-up ({warmup} floor, {warmup} API)")
    for _ in range(warmup):
        floor_once()
        ours_once()
    floor_runs: list[Run] = []
    ours_runs: list[Run] = []
    for i in range(repeats):
        log(f"{recipients}-recipient requests: round {i + 1} of {repeats} (floor, then API)")
        floor_runs.append(floor_once())
        ours_runs.append(ours_once())
    return Figure(
        "one_request_many_recipients", f"one {recipients:,}-recipient request (median of "
        f"{repeats})", "recipient", median_run(ours_runs), median_run(floor_runs),
        target=1.5,
        detail={"repeats": repeats, "warmup": warmup,
                "ours_rates": [round(r.rate, 1) for r in ours_runs],
                "floor_rates": [round(r.rate, 1) for r in floor_runs],
                "floor_ops": "2 opt-out range queries + 10 x 100-entity transactions (pool of 8)"
                             " + 10 queue sends (pool of 8)"})


# -- 2. dispatch --------------------------------------------------------------------------------


def _services(stack: Stack) -> Services:
    services = Services(load_settings(**stack.app_settings()))
    services.ensure_resources()
    return services


def _pre_accept(services: Services, recipients: list[str], tag: str) -> None:
    """Accept one single-recipient send per number with sms_core itself (no host consuming)."""
    requests = [SendRequest.model_validate({"to": to, "message": BODY, "tag": tag})
                for to in recipients]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda r: accept_send(services, r), requests))


def _statuses(services: Services, tag: str) -> Counter[str]:
    rows = services.storage.table(MESSAGES_TABLE).query_entities(
        "Tag eq @tag and Kind eq 'message'", parameters={"tag": tag}, select=["Status"])
    return Counter(str(r["Status"]) for r in rows)


def _failure_of(future: Future[None]) -> Callable[[], str | None]:
    def problem() -> str | None:
        if future.done() and future.exception() is not None:
            return f"the dispatch floor failed: {future.exception()!r}"
        return None
    return problem


def dispatch(stack: Stack, numbers: NumberPool, count: int, warmup: int
             ) -> tuple[Figure, int | None]:
    """Queued single-recipient messages sent by a fresh host's `dispatch_sms` vs the floor
    consumer. Both are timed by the emulator's accepted count, from the `warmup`-th to the
    `warmup + count`-th message, so process start and first calls are excluded.

    Returns the figure and the dispatch host's peak RSS (KiB).
    """
    total = warmup + count
    tag = f"bench-{secrets.token_hex(4)}"
    services = _services(stack)
    services.storage.queue(OUTBOUND_QUEUE).clear_messages()
    log(f"dispatch: accepting {total} single sends with sms_core (no host running)")
    _pre_accept(services, numbers.take(total), tag)
    floor = DispatchFloor(stack.storage, stack.emulator_url, stack.acs_key, SENDER, BODY,
                          batch_size=QUEUE_OPTIONS.batch_size,
                          new_batch_threshold=QUEUE_OPTIONS.new_batch_threshold)
    watch = AcceptedWatch(stack.emulator_url)
    try:
        log(f"dispatch: floor, {total} messages ({warmup} warm-up)")
        floor.prepare(numbers.take(total))
        base = watch.accepted()
        with ThreadPoolExecutor(max_workers=1) as runner:
            drained = runner.submit(floor.drain, total, DISPATCH_DEADLINE_S)
            floor_run = watch.time_marks(base, warmup, total, DISPATCH_DEADLINE_S,
                                         _failure_of(drained), stack.cpu_meter())
            drained.result()

        log(f"dispatch: function host, {total} messages ({warmup} warm-up)")
        base = watch.accepted()
        host = stack.start_host("func-host-dispatch", wait=False)
        ours_run = watch.time_marks(base, warmup, total, DISPATCH_DEADLINE_S,
                                    host.child.problem, stack.cpu_meter(host))
        end = time.monotonic() + 30
        while (statuses := _statuses(services, tag))["sent"] < total:
            if time.monotonic() > end:
                raise RuntimeError(f"dispatch: not every message is sent: {dict(statuses)}")
            time.sleep(0.2)
        peak = host.child.peak_rss_kib()
        host.child.stop()
    finally:
        watch.close()
        floor.close()
    workers = QUEUE_OPTIONS.batch_size + QUEUE_OPTIONS.new_batch_threshold
    figure = Figure(
        "dispatch", f"dispatch via queue trigger ({workers} in flight)", "msg", ours_run,
        floor_run,
        detail={"warmup": warmup, "in_flight": workers, "statuses": dict(statuses),
                "floor_ops": f"queue receive ({QUEUE_OPTIONS.batch_size} a call) + delete, "
                             "2 opt-out point reads, 1 ACS send (SDK), 1 provider-id upsert, "
                             "1 entity update",
                "extra_in_ours": "2 message load queries (the job's messages, then again for "
                                 "the final update), a pacing conditional write, a claim "
                                 "transaction before the ACS call, the history event in the "
                                 "final transaction, job and entity parsing"})
    return figure, peak
