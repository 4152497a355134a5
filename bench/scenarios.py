"""The three measured figures, each against its floor in the same run.

1. single sends through `POST /api/messages` at a fixed client concurrency;
2. dispatch of queued single-recipient messages by the host's `dispatch_sms` queue trigger;
3. one `POST /api/messages` with 1,000 recipients, repeated, median taken;
5. inbound SMSReceived events through `POST /api/inbound`: (a) ordinary texts, (b) STOPs.

(4, peak memory, is read in `bench.__main__`.)
"""

from __future__ import annotations

import copy
import json
import random
import secrets
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.floors import AcceptFloor, DispatchFloor, InboundFloor
from bench.measure import (
    AcceptedWatch,
    CpuMeter,
    NumberPool,
    Run,
    median_run,
    run_concurrently,
    time_one,
)
from bench.stack import FUNCTION_KEY, ROOT, SENDER, Host, PauseWatch, Stack
from localdev.func_host import HostConfig
from sms_core.app import Services
from sms_core.models import SendRequest
from sms_core.sending import accept_send
from sms_core.settings import load_settings
from sms_core.storage import EVENTS_QUEUE, MESSAGES_TABLE, OUTBOUND_QUEUE

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

    label: str  # its number in the table and bench/README.md: "1", "5a"
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
    return Figure("1", "single_send_http", f"single sends via HTTP (C={concurrency})", "msg",
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
        "3", "one_request_many_recipients", f"one {recipients:,}-recipient request (median of "
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
        "2", "dispatch", f"dispatch via queue trigger ({workers} in flight)", "msg", ours_run,
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


# -- 5. inbound events --------------------------------------------------------------------------

INBOUND_TEXT = "See you at 5"
INBOUND_STOP = "STOP"
# The verbatim docs sample that tests/integration/test_inbound.py builds its events from.
EVENT_TEMPLATE = (ROOT / "tests" / "fixtures" / "eventgrid"
                  / "eventgrid-schema.sms-received.docs-2025.json")
VERIFY_SAMPLE = 50
# The storage requests per event: the floor's, and ours as read in sms_core (inbound.py,
# inbound_store.py, conversations.py, app_events.py, optout_store/store.py, sending.py with
# idempotency.py, message_store.py and queues.py), with SMS_APP_WEBHOOK_URL unset.
INBOUND_FLOOR_OPS = {
    "text": "1 insert (claim) + 1 upsert (conversation row) + 1 queue send (sms.received) "
            "+ 1 merge (claim done) = 4",
    "stop": "the 4 of a text + 1 opt-out point read (404) + 1 insert (history row) + 1 upsert "
            "(state) + 1 queue send (optout.changed) + 1 insert (idempotency row) + 1-entity "
            "transaction (reply message) + 1 queue send (job) + 1 merge (idempotency "
            "complete) = 12",
}
INBOUND_OUR_OPS = {
    "text": "InboundStore.claim create_entity + ConversationStore.record upsert_entity + "
            "AppEvents.publish send_message + InboundStore.complete update_entity (merge) = 4",
    "stop": "the 4 of a text + OptOutStore.get get_entity (404) + history upsert_entity "
            "(replace: keyed by the inbound id) + state upsert_entity + optout.changed "
            "send_message + IdempotencyStore.claim create_entity + MessageStore.create_batch "
            "submit_transaction (1 entity) + JobQueue.enqueue send_message + "
            "IdempotencyStore.complete update_entity (merge) = 12",
}


def _iso_z(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


class EventGrid:
    """Delivers SMSReceived events to `POST /api/inbound` as Event Grid does: one event per
    array, the function key as `?code=`, Event Grid's delivery headers, a keep-alive pool of
    `connections`. Every answer is tallied (outside any assertion, so a run is never cut short)
    and checked afterwards by `check_answers`."""

    def __init__(self, base_url: str, connections: int) -> None:
        self.client = httpx.Client(
            base_url=base_url, timeout=60, params={"code": FUNCTION_KEY},
            headers={"content-type": "application/json", "aeg-event-type": "Notification",
                     "aeg-subscription-name": "BENCH", "aeg-delivery-count": "0",
                     "aeg-metadata-version": "1", "aeg-data-version": "1.0"},
            limits=httpx.Limits(max_connections=connections,
                                max_keepalive_connections=connections))
        self._template: dict[str, Any] = json.loads(EVENT_TEMPLATE.read_text("utf-8"))[0]
        self._lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.wrong: list[str] = []

    def event(self, their: str, ours: str, text: str) -> bytes:
        """One event shaped exactly like the docs sample: numbers without '+', a fresh id,
        received now."""
        now = datetime.now(UTC)
        event_id = f"Incoming_{now:%Y%m%d%H%M%S}{uuid.uuid4()}"
        event = copy.deepcopy(self._template)
        event["id"] = event_id
        event["subject"] = f"/phonenumber/{ours.lstrip('+')}"
        event["eventTime"] = _iso_z(now.replace(microsecond=0))
        event["data"].update({"messageId": event_id, "from": their.lstrip("+"),
                              "to": ours.lstrip("+"), "message": text,
                              "receivedTimestamp": _iso_z(now)})
        return json.dumps([event]).encode()

    def post(self, body: bytes) -> None:
        """POST one delivery and tally the answer (200 with one event received is right)."""
        resp = self.client.post("/inbound", content=body)
        try:
            right = resp.status_code == 200 and resp.json() == {"received": 1, "invalid": 0}
        except ValueError:  # not JSON: tallied as wrong like any other unexpected answer
            right = False
        with self._lock:
            self.statuses[resp.status_code] += 1
            if not right and len(self.wrong) < 5:
                self.wrong.append(f"{resp.status_code}: {resp.text[:300]}")

    def check_answers(self) -> None:
        """Raise unless every delivery so far was answered 200 with one event received."""
        if self.wrong or set(self.statuses) - {200}:
            raise RuntimeError(f"inbound: not every delivery was processed: answers "
                               f"{dict(self.statuses)}, e.g. {self.wrong}")

    def close(self) -> None:
        """Close the pool."""
        self.client.close()


def _queue_count(services: Services, name: str) -> int:
    props = services.storage.queue(name).get_queue_properties()
    return int(props.approximate_message_count or 0)


def _verify_inbound(api: Api, services: Services, grid: EventGrid, stopped: list[str],
                    texted: list[str], events_added: int, jobs_added: int, expected: int,
                    ) -> dict[str, Any]:
    """After the run (not timed): every delivery answered 200; a sample of the STOP senders
    is opted out and a sample of the text senders is not (`POST /api/optouts/check` through
    the host); `sms-events` got one event per text and two per STOP, `sms-outbound` one reply
    job per STOP."""
    grid.check_answers()
    if grid.statuses.total() != expected:
        raise RuntimeError(f"inbound: {grid.statuses.total()} deliveries answered, "
                           f"{expected} posted")
    sample = random.Random(5).sample
    stop_sample = sample(stopped, min(VERIFY_SAMPLE, len(stopped)))
    text_sample = sample(texted, min(VERIFY_SAMPLE, len(texted)))
    resp = api.client.post("/optouts/check", json={
        "from": SENDER, "recipients": [{"to": n} for n in stop_sample + text_sample]})
    if resp.status_code != 200:
        raise RuntimeError(f"POST /api/optouts/check answered {resp.status_code}: "
                           f"{resp.text[:300]}")
    opted = {v["to"]: v.get("isOptedOut") for v in resp.json()["value"]}
    not_out = [n for n in stop_sample if opted.get(n) is not True]
    out = [n for n in text_sample if opted.get(n) is not False]
    if not_out or out:
        raise RuntimeError(f"inbound: STOP senders not opted out: {not_out[:5]}; "
                           f"text senders opted out: {out[:5]}")
    want_events, want_jobs = len(texted) + 2 * len(stopped), len(stopped)
    if (events_added, jobs_added) != (want_events, want_jobs):
        raise RuntimeError(f"inbound: expected {want_events} app events and {want_jobs} reply "
                           f"jobs, the queues grew by {events_added} and {jobs_added}")
    return {"deliveries": dict(grid.statuses), "expected_deliveries": expected,
            "optout_sample_checked": len(stop_sample), "text_sample_checked": len(text_sample),
            "app_events_added": events_added, "reply_jobs_added": jobs_added}


def _inbound_mix(grid: EventGrid, floor_one: Callable[[str], None], text: str,
                 numbers: NumberPool, count: int, warmup: int, concurrency: int, cpu: CpuMeter,
                 rounds: int, name: str, pauses: PauseWatch | None
                 ) -> tuple[Run, Run, list[str], dict[str, Any]]:
    """One mix: warm-up, then `rounds` alternating floor and webhook rounds. Returns our run,
    the floor's, every sender number posted, and the per-round rates and Azurite pauses."""
    senders: list[str] = []
    mark = pauses.mark() if pauses is not None else 0

    def bodies(size: int) -> list[bytes]:
        batch = numbers.take(size)
        senders.extend(batch)
        return [grid.event(n, SENDER, text) for n in batch]

    log(f"inbound {name}: warm-up ({warmup} floor, {warmup} webhook)")
    run_concurrently(floor_one, numbers.take(warmup), concurrency, cpu)
    run_concurrently(grid.post, bodies(warmup), concurrency, cpu)
    floor_runs: list[Run] = []
    ours_runs: list[Run] = []
    for i in range(rounds):
        size = count // rounds + (1 if i < count % rounds else 0)
        log(f"inbound {name}: round {i + 1} of {rounds}, {size} floor then {size} webhook "
            f"at concurrency {concurrency}")
        floor_runs.append(run_concurrently(floor_one, numbers.take(size), concurrency, cpu))
        ours_runs.append(run_concurrently(grid.post, bodies(size), concurrency, cpu))
    rates = {"ours_rates": [round(r.rate, 1) for r in ours_runs],
             "floor_rates": [round(r.rate, 1) for r in floor_runs],
             "azurite_pauses_s": pauses.since(mark) if pauses is not None else []}
    return Run.combine(ours_runs), Run.combine(floor_runs), senders, rates


def inbound_events(stack: Stack, host: Host, api: Api, numbers: NumberPool, count: int,
                   warmup: int, concurrency: int, cpu: CpuMeter,
                   pauses: PauseWatch | None = None, rounds: int = 4) -> list[Figure]:
    """Figure 5: SMSReceived deliveries through `POST /api/inbound`, (a) ordinary texts and
    (b) STOPs from distinct numbers, each against the storage requests it needs; verified
    afterwards (outside the timing). `host` must run without its queue triggers and without
    SMS_APP_WEBHOOK_URL; `api` (the same host) is used for the opt-out check."""
    services = _services(stack)
    engine = services.keywords
    stop = engine.match(INBOUND_STOP)
    if engine.match(INBOUND_TEXT) is not None or stop is None or stop.kind != "opt_out":
        raise RuntimeError("inbound: the keyword engine no longer reads the mixes as intended")
    floor = InboundFloor(stack.storage, SENDER, stop.reply)
    grid = EventGrid(host.base_url, concurrency)
    try:
        events_before = _queue_count(services, EVENTS_QUEUE)
        jobs_before = _queue_count(services, OUTBOUND_QUEUE)
        text_ours, text_floor, texted, text_rates = _inbound_mix(
            grid, floor.text_one, INBOUND_TEXT, numbers, count, warmup, concurrency, cpu,
            rounds, "(a) text", pauses)
        stop_ours, stop_floor, stopped, stop_rates = _inbound_mix(
            grid, floor.stop_one, INBOUND_STOP, numbers, count, warmup, concurrency, cpu,
            rounds, "(b) STOP", pauses)
        log("inbound: verifying opt-outs, answers and queued events")
        verified = _verify_inbound(
            api, services, grid, stopped, texted,
            _queue_count(services, EVENTS_QUEUE) - events_before,
            _queue_count(services, OUTBOUND_QUEUE) - jobs_before, 2 * (count + warmup))
    finally:
        grid.close()
    common = {"concurrency": concurrency, "warmup": warmup, "rounds": rounds,
              "verified": verified}
    via = f"via POST /api/inbound (C={concurrency})"
    return [
        Figure("5a", "inbound_text", f"inbound texts {via}", "event", text_ours, text_floor,
               detail={**common, **text_rates, "floor_ops": INBOUND_FLOOR_OPS["text"],
                       "ours_ops": INBOUND_OUR_OPS["text"]}),
        Figure("5b", "inbound_stop", f"inbound STOPs {via}", "event", stop_ours, stop_floor,
               detail={**common, **stop_rates, "floor_ops": INBOUND_FLOOR_OPS["stop"],
                       "ours_ops": INBOUND_OUR_OPS["stop"]}),
    ]
