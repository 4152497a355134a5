"""The measured figures, each against its floor in the same run.

1. single sends through `POST /api/messages` at a fixed client concurrency;
2. dispatch of queued single-recipient messages by the host's `dispatch_sms` queue trigger;
3. one `POST /api/messages` with 1,000 recipients, repeated, median taken;
5. inbound SMSReceived events through `POST /api/inbound`: (a) ordinary texts, (b) STOPs;
6. delivery reports applied by the host's `delivery_report` queue trigger (figure 2's messages).

(4, peak memory, is read in `bench.__main__`.)
"""

from __future__ import annotations

import base64
import copy
import json
import math
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
from azure.storage.queue import QueueClient

from bench.floors import (
    WRITE_POOL_SIZE,
    AcceptFloor,
    DeliveryReportFloor,
    DispatchFloor,
    InboundFloor,
)
from bench.measure import (
    AcceptedWatch,
    CpuMeter,
    DrainWatch,
    NumberPool,
    Run,
    median_run,
    run_concurrently,
    time_one,
)
from bench.stack import (
    FUNCTION_KEY,
    ROOT,
    SENDER,
    SENDER_RATE_PER_MINUTE,
    Host,
    PauseWatch,
    Stack,
    function_names,
)
from localdev.busy_pacer import BusyBulkLane
from localdev.func_host import HostConfig
from sms_core.adapters.storage import (
    AWAITING_REPORTS_TABLE,
    DELIVERY_REPORTS_QUEUE,
    EVENTS_QUEUE,
    MESSAGES_TABLE,
    OUTBOUND_QUEUE,
    UNMATCHED_REPORTS_TABLE,
)
from sms_core.bootstrap import Services
from sms_core.models.messages import SendRequest, report_route
from sms_core.models.records import OUTBOX_CHUNK
from sms_core.rules.analytics import utc_day
from sms_core.settings import load_settings
from sms_core.use_cases.sending import accept_send

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
                 warmup: int, concurrency: int, cpu: CpuMeter, emulator_url: str,
                 rounds: int = 4) -> Figure:
    """`count` one-recipient sends through the API vs the storage operations and the ACS call
    they need, in `rounds` alternating floor and API rounds so a change in machine load affects
    both. Afterwards (not timed) the emulator must have accepted one message per send of
    either side: ours were all sent from the request (inline), as the floor's are."""
    def ours(body: bytes) -> None:
        _check_queued(api.send(body), 1)

    watch = AcceptedWatch(emulator_url)
    try:
        accepted_before, floor_before = watch.accepted(), floor.sent
        log(f"single sends: warm-up ({warmup} floor, {warmup} API)")
        run_concurrently(floor.accept_one, numbers.take(warmup), concurrency, cpu)
        run_concurrently(ours, [_request_body(n) for n in numbers.take(warmup)], concurrency,
                         cpu)
        floor_runs: list[Run] = []
        ours_runs: list[Run] = []
        for i in range(rounds):
            size = count // rounds + (1 if i < count % rounds else 0)
            log(f"single sends: round {i + 1} of {rounds}, {size} floor then {size} API "
                f"at concurrency {concurrency}")
            floor_runs.append(run_concurrently(floor.accept_one, numbers.take(size),
                                               concurrency, cpu))
            bodies = [_request_body(n) for n in numbers.take(size)]
            ours_runs.append(run_concurrently(ours, bodies, concurrency, cpu))
        ours_sent = watch.accepted() - accepted_before - (floor.sent - floor_before)
    finally:
        watch.close()
    if ours_sent != warmup + count:
        raise RuntimeError(f"single sends: the emulator accepted {ours_sent} of our "
                           f"{warmup + count} sends: not every POST sent its message inline")
    return Figure("1", "single_send_http", f"single sends via HTTP (C={concurrency})", "msg",
                  Run.combine(ours_runs), Run.combine(floor_runs), target=1.25,
                  detail={"concurrency": concurrency, "warmup": warmup, "rounds": rounds,
                          "ours_rates": [round(r.rate, 1) for r in ours_runs],
                          "floor_rates": [round(r.rate, 1) for r in floor_runs],
                          "sent_inline": ours_sent,
                          "floor_ops": SINGLE_FLOOR_OPS, "ours_ops": SINGLE_OUR_OPS})


# Per single send: the floor's requests, and ours as read in sms_core (sending.py, dispatch.py,
# status_changes.py and the adapters) and counted on the wire with localdev.storage_proxy.
SINGLE_FLOOR_OPS = ("2 opt-out point reads + 1 pacing conditional write (If-Match, ETag kept) "
                    "+ 1 insert (the message with its repeatability claim, marked Outbox: its "
                    "own outbox entry) + 1 ACS send (SDK) + 1 entity-group transaction (the "
                    "conversation row, its listing and person rows, in the sender's "
                    "partition) + 1 replace If-Match (status sent, history entry on the row, "
                    "outbox mark off) + 1 analytics transaction (ledger insert + counter "
                    "replace If-Match, counter row per thread) + 1 queue send (sms.status) "
                    "= 8 + ACS (sent "
                    "promptly: no AwaitingReports row)")
SINGLE_OUR_OPS = ("OptOutStore.opted_out_among 2 get_entity + SenderPacer.reserve_within "
                  "update_entity (If-Match) + MessageStore.create_batch create_entity (the "
                  "message, marked Outbox) + AcsSmsGateway.send + ConversationStore.record "
                  "submit_transaction (conversation, listing and person rows; shared by "
                  "concurrent senders' writers) + MessageStore.apply update_entity (replace "
                  "If-Match: history on the row, mark off) + AnalyticsStore.record "
                  "submit_transaction (ledger + counter, kept row) + publish_many send_message "
                  "= 8 + ACS (AwaitingReportStore.add writes nothing: sent promptly) (+ 1 "
                  "get_entity per counter row not kept in the process: its first use, another "
                  "thread holding it, or a lost race, which also costs another transaction)")


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

    chunks, jobs = math.ceil(recipients / OUTBOX_CHUNK), math.ceil(recipients / 100)
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
                "floor_ops": f"2 opt-out range queries + {chunks} entity-group transactions "
                             f"(up to {OUTBOX_CHUNK} messages + their outbox row; pool of "
                             f"{WRITE_POOL_SIZE}) + {jobs} queue sends (pool of "
                             f"{WRITE_POOL_SIZE}) + {math.ceil(chunks / 100)} transaction(s) "
                             f"deleting the {chunks} outbox rows"})


# -- 2. dispatch --------------------------------------------------------------------------------


def _services(stack: Stack) -> Services:
    services = Services(load_settings(**stack.app_settings()))
    services.ensure_resources()
    return services


def _pre_accept(services: Services, recipients: list[str], tag: str) -> None:
    """Accept one single-recipient send per number with sms_core itself (no host consuming),
    every one queued on `sms-outbound` (no inline send: see `BusyBulkLane`)."""
    services.pacer = BusyBulkLane(services.pacer)  # type: ignore[assignment]
    requests = [SendRequest.model_validate({"to": to, "message": BODY, "tag": tag})
                for to in recipients]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda r: accept_send(services, r), requests))


def _statuses(services: Services, tag: str) -> Counter[str]:
    rows = services.storage.table(MESSAGES_TABLE).query_entities(
        "Tag eq @tag and Kind eq 'message'", parameters={"tag": tag}, select=["Status"])
    return Counter(str(r["Status"]) for r in rows)


def _failure_of(future: Future[None], what: str = "the dispatch floor"
                ) -> Callable[[], str | None]:
    def problem() -> str | None:
        if future.done() and future.exception() is not None:
            return f"{what} failed: {future.exception()!r}"
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
        detail={"warmup": warmup, "in_flight": workers, "statuses": dict(statuses), "tag": tag,
                "floor_ops": f"queue receive ({QUEUE_OPTIONS.batch_size} a call) + delete, "
                             "2 opt-out point reads, 1 ACS send (SDK), 1 entity merge",
                "extra_in_ours": "the job's message load query, a pacing conditional write, "
                                 "the claim write before the ACS call (a resend carries the "
                                 "same repeatability ids), a conditional replace instead of "
                                 "the merge (the history entry rides on it), the conversation "
                                 "rows' transaction and the analytics fact's "
                                 "transaction (both shared by concurrent jobs that meet: group "
                                 "commit), the sms.status event, job and entity parsing"})
    return figure, peak


# -- 5. inbound events --------------------------------------------------------------------------

INBOUND_TEXT = "See you at 5"
INBOUND_STOP = "STOP"
# The verbatim docs sample that tests/integration/test_inbound.py builds its events from.
EVENT_TEMPLATE = (ROOT / "tests" / "fixtures" / "eventgrid"
                  / "eventgrid-schema.sms-received.docs-2025.json")
VERIFY_SAMPLE = 50
# The storage requests per event: the floor's, and ours as read in sms_core (inbound.py,
# inbound_store.py, conversations.py, analytics.py, app_events.py, optout_store/store.py,
# sending.py with idempotency.py, dispatch.py, message_store.py, status_changes.py) and counted
# on the wire with localdev.storage_proxy, with SMS_APP_WEBHOOK_URL unset.
INBOUND_FLOOR_OPS = {
    "text": "1 insert (claim) + 1 transaction (conversation row, listing and person rows) "
            "+ 1 queue send (sms.received) + 1 merge (claim done) = 4",
    "stop": "the 4 of a text + 1 opt-out point read (404) + 1 insert (history row) + 1 upsert "
            "(state) + 1 queue send (optout.changed) + 1 insert (idempotency row) + the reply "
            "sent inline: 1 pacing conditional write + 1 insert (the message, marked as its "
            "own outbox entry) + 1 ACS send (SDK) + 1 conversation rows' transaction + 1 "
            "replace If-Match (sent, history entry on the row, mark off) + 1 analytics "
            "transaction + 1 queue send (sms.status); + 1 merge (idempotency complete) "
            "= 16 + ACS",
}
INBOUND_OUR_OPS = {
    "text": "InboundStore.claim create_entity + ConversationStore.record "
            "submit_transaction (conversation, listing and person rows) + count_inbound: "
            "ConversationStore.last_outbound query_entities + AnalyticsStore.record "
            "submit_transaction (ledger + counter) + AppEventQueue.publish send_message + "
            "InboundStore.complete update_entity (merge) = 6 (+ 1 get_entity per counter row "
            "not kept)",
    "stop": "the 6 of a text + OptOutStore.get get_entity (404) + history upsert_entity "
            "(replace: keyed by the inbound id) + state upsert_entity + optout.changed "
            "send_message + IdempotencyStore.claim create_entity + the reply sent inline "
            "(SenderPacer.reserve_within update_entity + MessageStore.create_batch "
            "create_entity (the message, marked Outbox) + AcsSmsGateway.send + "
            "ConversationStore.record submit_transaction + "
            "MessageStore.apply update_entity (replace If-Match) + AnalyticsStore.record "
            "submit_transaction + publish_many send_message) + IdempotencyStore.complete "
            "update_entity (merge) = 18 + ACS (+ 1 get_entity per counter row not kept)",
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
                    replies_sent: int = 0) -> dict[str, Any]:
    """After the run (not timed): every delivery answered 200; a sample of the STOP senders
    is opted out and a sample of the text senders is not (`POST /api/optouts/check` through
    the host); each STOP's confirmation reply left, either sent from the request
    (`replies_sent`: the emulator accepted it, the floor's own sends not counted; it adds an
    `sms.status` event) or as a job on `sms-outbound`; `sms-events` got one event per text,
    two per STOP and one per reply sent."""
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
    want_events = len(texted) + 2 * len(stopped) + replies_sent
    if (events_added, jobs_added + replies_sent) != (want_events, len(stopped)):
        raise RuntimeError(f"inbound: expected {want_events} app events and {len(stopped)} "
                           f"replies (queued or sent), the queues grew by {events_added} and "
                           f"{jobs_added} and the emulator accepted {replies_sent}")
    return {"deliveries": dict(grid.statuses), "expected_deliveries": expected,
            "optout_sample_checked": len(stop_sample), "text_sample_checked": len(text_sample),
            "app_events_added": events_added, "reply_jobs_added": jobs_added,
            "replies_sent_inline": replies_sent}


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
    floor = InboundFloor(stack.storage, SENDER, stop.reply, stack.emulator_url, stack.acs_key,
                         SENDER_RATE_PER_MINUTE)
    grid = EventGrid(host.base_url, concurrency)
    accepted = AcceptedWatch(stack.emulator_url)
    try:
        events_before = _queue_count(services, EVENTS_QUEUE)
        jobs_before = _queue_count(services, OUTBOUND_QUEUE)
        sent_before = accepted.accepted()
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
            _queue_count(services, OUTBOUND_QUEUE) - jobs_before, 2 * (count + warmup),
            accepted.accepted() - sent_before - floor.sent)
    finally:
        grid.close()
        accepted.close()
        floor.close()
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


# -- 6. delivery reports ------------------------------------------------------------------------

# The verbatim docs sample every report is built from (numbers, ids, status and times replaced).
REPORT_TEMPLATE = (ROOT / "tests" / "fixtures" / "eventgrid"
                   / "eventgrid-schema.sms-delivery-report-received.docs-2025.json")
DELIVERED = ("Delivered", "No error.")
FAILED = ("Failed", "4006: The Destination/To number isn't reachable.")  # as the emulator says
FAILED_SHARE = 0.10
REPORTS_DEADLINE_S = 180.0
# Requests per report: the floor's, and ours as read in delivery_report/blueprint.py and sms_core
# (delivery_reports.py, message_store.py, awaiting_reports.py, status_changes.py,
# analytics_store.py, app_events.py) and counted on the wire with localdev.storage_proxy, for a
# Delivered or a 4006 report of a `sent` message whose tag is ours, with SMS_APP_WEBHOOK_URL
# unset. Both add a sixteenth of a queue receive.
REPORT_FLOOR_OPS = ("1 partition range query finding and loading the message (batch and index "
                    "range from the Tag, To eq the report's to) + 1 replace of the message "
                    "(If-Match, the history entry added to its row) + 1 queue send (sms.status) "
                    "+ 1 queue delete = 4")
REPORT_OUR_OPS = ("MessageStore.find_recipient query_entities + MessageStore.apply update_entity "
                  "(replace If-Match, history on the row) + announce: AnalyticsStore.record "
                  "submit_transaction (ledger create + counter replace If-Match; the counter "
                  "row kept in memory) + publish_many send_message + the host's delete_message "
                  "= 5 (no AwaitingReportStore.remove: sent promptly, the message has no row) "
                  "(+ 1 get_entity per counter row not kept: its first use in the process, or "
                  "another worker holding it; + 1 get_entity and 1 submit_transaction per lost "
                  "race)")


@dataclass(frozen=True)
class _SentMessage:
    """One of figure 2's messages as its delivery report needs it."""

    id: str
    provider_id: str
    to: str
    acs_tag: str  # the tag our dispatch gave ACS for it, which its report echoes
    sent_at: datetime


def _acs_tags(emulator_url: str, sent: list[tuple[str, str, str]]) -> dict[str, str]:
    """The tag of each (message id, provider id, to)'s send call, by message id, as the
    emulator recorded it in the handset's inbox (what ACS got). Raises when a message is not in
    its handset's inbox, has no tag, or its tag does not route to it. Not timed."""
    def one(client: httpx.Client, item: tuple[str, str, str]) -> tuple[str, str]:
        message_id, provider_id, to = item
        resp = client.get(f"/emulator/handsets/{to}/inbox")
        resp.raise_for_status()
        found = [m for m in resp.json()["messages"] if m.get("messageId") == provider_id]
        tag = found[0].get("tag") if found else None
        route = report_route(tag)
        batch, _, index = message_id.rpartition("-")
        if not tag or route is None or route.batch != batch \
                or not route.first <= int(index) <= route.last:
            raise RuntimeError(f"delivery reports: the emulator's inbox of {to} holds no send "
                               f"of {message_id} ({provider_id}) with a tag routing to it: "
                               f"{found or resp.json()['messages']}")
        return message_id, tag

    with httpx.Client(base_url=emulator_url, timeout=10,
                      limits=httpx.Limits(max_connections=8)) as client, \
            ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(lambda item: one(client, item), sent))


def _sent_messages(services: Services, tag: str, emulator_url: str) -> list[_SentMessage]:
    """Every message tagged `tag`, which must all be `sent` with a provider id, in id order,
    with the tag of its ACS send call (from the emulator)."""
    rows = services.storage.table(MESSAGES_TABLE).query_entities(
        "Tag eq @tag and Kind eq 'message'", parameters={"tag": tag},
        select=["PartitionKey", "RowKey", "Status", "ProviderMessageId", "To", "SentAt"])
    found: list[tuple[str, str, str, datetime]] = []
    for row in rows:
        if row.get("Status") != "sent" or not row.get("ProviderMessageId"):
            raise RuntimeError(f"delivery reports: {row['PartitionKey']}-{row['RowKey']} is "
                               f"{row.get('Status')} without a provider id")
        found.append((f"{row['PartitionKey']}-{row['RowKey']}", str(row["ProviderMessageId"]),
                      str(row["To"]), row["SentAt"]))
    tags = _acs_tags(emulator_url, [(m, p, to) for m, p, to, _ in found])
    return sorted((_SentMessage(m, p, to, tags[m], at) for m, p, to, at in found),
                  key=lambda m: m.id)


def _outcomes(count: int) -> list[tuple[str, str]]:
    """(deliveryStatus, deliveryStatusDetails) per report: exactly FAILED_SHARE fail, spread at
    random (the same spread every run)."""
    failed = set(random.Random(6).sample(range(count), round(count * FAILED_SHARE)))
    return [FAILED if i in failed else DELIVERED for i in range(count)]


def _final(outcome: tuple[str, str]) -> tuple[str, str | None]:
    """The (status, error) a message must end with after a report of `outcome`."""
    return ("delivered", None) if outcome == DELIVERED else ("failed", outcome[1])


def _report_text(template: dict[str, Any], provider_id: str, to: str, tag: str | None,
                 outcome: tuple[str, str], sent_at: datetime) -> str:
    """The queue message Event Grid's Storage-queue destination writes for one report: base64
    text of ONE event object shaped like the docs sample (`from` and the subject without `+`,
    `to` with it; the event id is the ACS message id, as in the sample; `Tag` the tag of the
    send call, which ACS echoes)."""
    now = datetime.now(UTC)
    delivered = outcome == DELIVERED
    event = copy.deepcopy(template)
    event["id"] = provider_id
    event["subject"] = f"/phonenumber/{SENDER.lstrip('+')}"
    event["eventTime"] = _iso_z(now.replace(microsecond=0))
    event["data"].update({
        "messageId": provider_id, "from": SENDER.lstrip("+"), "to": to,
        "deliveryStatus": outcome[0], "deliveryStatusDetails": outcome[1],
        "receivedTimestamp": _iso_z(now),
        "deliveryAttempts": [{"timestamp": _iso_z(sent_at.astimezone(UTC)),
                              "segmentsSucceeded": 1 if delivered else 0,
                              "segmentsFailed": 0 if delivered else 1}]})
    if tag is None:
        event["data"].pop("Tag", None)
    else:
        event["data"]["Tag"] = tag
    return base64.b64encode(json.dumps(event).encode("utf-8")).decode("ascii")


def _enqueue(queue: QueueClient, texts: list[str]) -> None:
    """Send the texts as they are (already base64), 8 at a time. Not timed."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(queue.send_message, texts))


def _first_to_last(trace: list[tuple[float, int]], total: int) -> float | None:
    """Reports per second from the poll that first saw one applied to the one that saw all."""
    first = next((t for t, n in trace if n >= 1), None)
    last = next((t for t, n in trace if n >= total), None)
    return round(total / (last - first), 1) if first is not None and last and last > first \
        else None


def _verify_reports(services: Services, tag: str, sent: list[_SentMessage],
                    outcomes: list[tuple[str, str]], events_added: int,
                    floor_statuses: dict[str, tuple[str, str | None]],
                    floor_expected: dict[str, tuple[str, str | None]]) -> dict[str, Any]:
    """After the run (not timed): every reported message has the status and error its report
    gave and the rest are still `sent`; the analytics totals of the sender and tag count exactly
    those outcomes; one `sms.status` event per report; no report poisoned or unmatched; the
    messages, all sent promptly, have no AwaitingReports row; every floor message has its
    report's status too."""
    rows = services.storage.table(MESSAGES_TABLE).query_entities(
        "Tag eq @tag and Kind eq 'message'", parameters={"tag": tag},
        select=["PartitionKey", "RowKey", "Status", "Error"])
    found = {f"{r['PartitionKey']}-{r['RowKey']}": (str(r["Status"]), r.get("Error"))
             for r in rows}
    expected = {m.id: _final(o) for m, o in zip(sent, outcomes, strict=False)}
    expected.update({m.id: ("sent", None) for m in sent[len(outcomes):]})
    wrong = [(k, v, found.get(k)) for k, v in expected.items() if found.get(k) != v]
    if wrong:
        raise RuntimeError(f"delivery reports: {len(wrong)} message(s) not as reported, e.g. "
                           f"(id, expected, found) {wrong[:3]}")
    floor_wrong = [(k, v, floor_statuses.get(k)) for k, v in floor_expected.items()
                   if floor_statuses.get(k) != v]
    if floor_wrong:
        raise RuntimeError(f"delivery reports: {len(floor_wrong)} floor message(s) not as "
                           f"reported, e.g. {floor_wrong[:3]}")
    delivered = sum(1 for o in outcomes if o == DELIVERED)
    failed = len(outcomes) - delivered
    days = sorted({utc_day(m.sent_at) for m in sent})
    totals = services.analytics.query(days[0], days[-1], sender=SENDER, tag=tag).totals
    counted = {k: totals[k] for k in ("sent", "delivered", "failed", "expired")}
    if counted != {"sent": len(sent), "delivered": delivered, "failed": failed, "expired": 0}:
        raise RuntimeError(f"delivery reports: analytics for {SENDER} / {tag} count {counted}; "
                           f"expected sent {len(sent)}, delivered {delivered}, failed {failed}")
    if events_added != len(outcomes):
        raise RuntimeError(f"delivery reports: sms-events grew by {events_added}, expected one "
                           f"sms.status event per report ({len(outcomes)})")
    left = {q: _queue_count(services, q) for q in (DELIVERY_REPORTS_QUEUE,
                                                   f"{DELIVERY_REPORTS_QUEUE}-poison")}
    unmatched = list(services.storage.table(UNMATCHED_REPORTS_TABLE).list_entities(
        select=["PartitionKey"]))
    if any(left.values()) or unmatched:
        raise RuntimeError(f"delivery reports: left on the queues {left}, "
                           f"{len(unmatched)} kept as unmatched")
    awaiting = {str(r["RowKey"]) for r in services.storage.table(
        AWAITING_REPORTS_TABLE).list_entities(select=["RowKey"])}
    held = awaiting & {m.id for m in sent}
    if held:
        raise RuntimeError(f"delivery reports: AwaitingReports holds {len(held)} row(s) of "
                           "messages sent promptly (the expiry timer finds those by their "
                           "batch's time)")
    return {"messages_checked": len(expected), "floor_messages_checked": len(floor_expected),
            "analytics_totals": counted, "status_events_added": events_added}


def delivery_reports(stack: Stack, numbers: NumberPool, tag: str, count: int, warmup: int
                     ) -> tuple[Figure, int | None]:
    """Figure 6: SMSDeliveryReportReceived events on `sms-delivery-reports` applied by a fresh
    host running only `delivery_report`, to figure 2's `sent` messages (tagged `tag`), against
    the storage requests a report needs. Both are timed by the queue's length, from the
    `warmup`-th to the `warmup + count`-th report deleted (applied), and verified afterwards.

    Returns the figure and the host's peak RSS (KiB).
    """
    total = warmup + count
    services = _services(stack)
    sent = _sent_messages(services, tag, stack.emulator_url)
    if len(sent) < total:
        raise RuntimeError(f"delivery reports: {total} reports need as many sent messages; "
                           f"figure 2 left {len(sent)}")
    outcomes = _outcomes(total)
    template: dict[str, Any] = json.loads(REPORT_TEMPLATE.read_text("utf-8"))[0]
    workers = QUEUE_OPTIONS.batch_size + QUEUE_OPTIONS.new_batch_threshold

    floor = DeliveryReportFloor(stack.storage, SENDER, BODY,
                                batch_size=QUEUE_OPTIONS.batch_size,
                                new_batch_threshold=QUEUE_OPTIONS.new_batch_threshold)
    floor_tag = f"bench-floor-{secrets.token_hex(4)}"
    stamp = datetime.now(UTC)
    floor_ids = [f"Outgoing_{stamp:%Y%m%d%H%M%S}{uuid.uuid4()}" for _ in range(total)]
    floor_to = numbers.take(total)
    floor_trace: list[tuple[float, int]] = []
    try:
        log(f"delivery reports: floor, storing {total} sent messages and their reports")
        floor_tags = floor.prepare(list(zip(floor_to, floor_ids, strict=True)), floor_tag)
        _enqueue(floor.producer, [_report_text(template, pid, to, acs_tag, o, stamp)
                                  for pid, to, acs_tag, o in zip(floor_ids, floor_to,
                                                                 floor_tags, outcomes,
                                                                 strict=True)])
        log(f"delivery reports: floor, {total} reports ({warmup} warm-up) on {workers} workers")
        watch = DrainWatch(floor.producer)
        with ThreadPoolExecutor(max_workers=1) as runner:
            drained = runner.submit(floor.drain, total, REPORTS_DEADLINE_S)
            floor_run = watch.time_marks(warmup, total, REPORTS_DEADLINE_S,
                                         _failure_of(drained, "the delivery-report floor"),
                                         stack.cpu_meter(), floor_trace)
            drained.result()
        floor_statuses = floor.statuses(floor_tag)
        # Azurite keeps every queue's messages in one collection that its queue operations
        # search: drop the floor's sms.status events so our run finds as many as the floor did.
        floor.clear_events()
    finally:
        floor.close()
    floor_expected = {pid: _final(o) for pid, o in zip(floor_ids, outcomes, strict=True)}

    log(f"delivery reports: writing {total} reports to {DELIVERY_REPORTS_QUEUE}")
    queue = QueueClient.from_connection_string(stack.storage, DELIVERY_REPORTS_QUEUE)
    trace: list[tuple[float, int]] = []
    try:
        if DrainWatch(queue).initial:
            raise RuntimeError(f"delivery reports: {DELIVERY_REPORTS_QUEUE} is not empty")
        events_before = _queue_count(services, EVENTS_QUEUE)
        _enqueue(queue, [_report_text(template, m.provider_id, m.to, m.acs_tag, o, m.sent_at)
                         for m, o in zip(sent, outcomes, strict=False)])
        watch = DrainWatch(queue)
        log(f"delivery reports: function host (delivery_report only), {total} reports "
            f"({warmup} warm-up)")
        host = stack.start_host("func-host-reports", wait=False, disabled=[
            name for name in function_names(stack.app_settings()) if name != "delivery_report"])
        try:
            ours_run = watch.time_marks(warmup, total, REPORTS_DEADLINE_S, host.child.problem,
                                        stack.cpu_meter(host), trace)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{host.child.log_tail()}") from None
        peak = host.child.peak_rss_kib()
        host.child.stop()
        # A failed invocation is retried after visibilityTimeout (10 s): the run still verifies,
        # but its time includes the wait. The host logs each failure.
        retried = host.child.log_tail(chars=10**8).count("delivery_report failed on message")
    finally:
        queue.close()
    log("delivery reports: verifying statuses, analytics and queues")
    verified = _verify_reports(services, tag, sent, outcomes,
                               _queue_count(services, EVENTS_QUEUE) - events_before,
                               floor_statuses, floor_expected)
    figure = Figure(
        "6", "delivery_reports", f"delivery reports via queue trigger ({workers} in flight)",
        "report", ours_run, floor_run,
        detail={"warmup": warmup, "in_flight": workers,
                "failed_share": FAILED_SHARE, "verified": verified,
                "failed_invocations": retried,
                "first_to_last_rate_per_s": _first_to_last(trace, total),
                "floor_first_to_last_rate_per_s": _first_to_last(floor_trace, total),
                "floor_ops": REPORT_FLOOR_OPS, "ours_ops": REPORT_OUR_OPS})
    return figure, peak
