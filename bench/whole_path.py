"""Figure 8: the whole send path against the ACS SDK called directly, on the same emulator.

On a stack of its own (Azurite, and the emulator writing delivery reports to that Azurite as
`make run` starts it), three measurements, each of ours next to the SDK's:

- **8, throughput**: N single-recipient `POST /api/messages` from C threads, timed from the
  first POST until every message is at its handset and its delivery report applied (`delivered`);
  the SDK direct: the same N `SmsClient.send` calls from C threads, timed until every message is
  at its handset. Ratio = direct rate / our rate.
- **8b, latency**: sequential sends with idle gaps, each to a fresh number, from just before
  the call to the handset's `receivedAt` (the emulator and the bench share the clock).
- **8c, storage requests per delivered message**, counted on the wire by a
  `localdev.storage_proxy` child in a separate pass of the same sends (the timing passes run
  without the proxy), next to `MINIMUM_PER_MESSAGE`, what the invariants need.

See bench/README.md (figure 8) for what is timed and counted, and why.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from azure.communication.sms import SmsClient
from azure.core.credentials import AzureKeyCredential

from bench.measure import CpuMeter, NumberPool, Run, percentile
from bench.scenarios import BODY, Figure, log
from bench.stack import FUNCTION_KEY, SENDER, Host, Proxy, Stack, peak_rss_kib
from localdev.storage_proxy import CountRow, total_requests
from sms_core.adapters.storage import DELIVERY_REPORTS_QUEUE, MESSAGES_TABLE
from sms_core.bootstrap import Services
from sms_core.settings import load_settings

THROUGHPUT_TARGET = 3.0  # direct rate / our rate
P50_TARGET_MS = 25.0
P99_TARGET_MS = 100.0
REQUESTS_TARGET = 10.0  # storage requests per delivered message, the report included
DEADLINE_S = 180.0
POLL_S = 0.02  # the emulator's counters, and the report queue's length at the end
STATUS_CHECK_EVERY_S = 0.2  # the query of the messages not yet delivered, at most this often
INBOX_POLL_S = 0.01
SHORT_GAP_S = 0.05
LONG_GAP_S = (2.0, 4.0)  # before every LONG_GAP_EVERY-th send: long enough for pollers to idle
LONG_GAP_EVERY = 5
LATENCY_SEED = 8  # the same gaps on both sides, every run
# After a warm-up the host's queue pollers back off (0.1 s doubling to maxPollingInterval, 2 s)
# before the quiet window counts the idle background.
SETTLE_S = 4.0
ANSWERED = frozenset({"queued", "sent", "delivered"})  # a POST's status for a valid recipient
API_SAMPLE = 20


@dataclass(frozen=True)
class Need:
    """One storage request (or a share of one) the invariants need per delivered message."""

    stage: str  # accept | dispatch | report
    what: str
    requests: float


# What the invariants need per delivered single-recipient message, the delivery report included
# (the reasoning is in bench/README.md, figure 8c).
MINIMUM_PER_MESSAGE: tuple[Need, ...] = (
    Need("accept", "insert of the durable message row (which also carries the repeatability "
                   "claim and its outbox mark)", 1),
    Need("accept", "opt-out point read, the sender's scope", 1),
    Need("accept", "opt-out point read, the `global` scope", 1),
    Need("dispatch", "pacing conditional write (the sender's slot, shared by every instance)", 1),
    Need("dispatch", "conditional replace recording `sent` with the ACS id", 1),
    Need("report", "queue receive (16 reports a call)", 1 / 16),
    Need("report", "queue delete", 1),
    Need("report", "range query finding the message by the route in the report's tag", 1),
    Need("report", "conditional replace applying the status", 1),
)
MINIMUM_REQUESTS = sum(n.requests for n in MINIMUM_PER_MESSAGE)


@dataclass(frozen=True)
class PathOptions:
    """Figure 8's settings (`python -m bench --path-*`)."""

    messages: int = 600
    concurrency: int = 8
    warmup: int = 50
    latency_sends: int = 40
    quiet_s: float = 5.0
    dlr_delay_s: float = 1.0


# -- clients ------------------------------------------------------------------------------------


class _Emulator:
    """The emulator's control API: its accepted counter and the handsets' inboxes."""

    def __init__(self, url: str) -> None:
        self._http = httpx.Client(base_url=url, timeout=10)

    def accepted(self) -> int:
        """Recipients accepted so far (`GET /emulator/stats`)."""
        resp = self._http.get("/emulator/stats")
        resp.raise_for_status()
        return int(resp.json()["accepted"])

    def received_at(self, number: str) -> float | None:
        """When the handset got its one message (epoch seconds); None before it did."""
        resp = self._http.get(f"/emulator/handsets/{number}/inbox")
        resp.raise_for_status()
        messages = resp.json()["messages"]
        if not messages:
            return None
        if len(messages) != 1:
            raise RuntimeError(f"whole path: {number} received {len(messages)} messages, not 1")
        return datetime.fromisoformat(messages[0]["receivedAt"]).timestamp()

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()


class _OurApi:
    """`POST /api/messages` and `GET /api/messages/{id}` with the function key as `?code=`."""

    def __init__(self, base_url: str, connections: int) -> None:
        self.client = httpx.Client(
            base_url=base_url, timeout=60, params={"code": FUNCTION_KEY},
            headers={"content-type": "application/json"},
            limits=httpx.Limits(max_connections=connections,
                                max_keepalive_connections=connections))

    def send(self, to: str) -> str:
        """Send BODY to one number; the message id. Raises unless 202 with the message taken."""
        resp = self.client.post("/messages", content=json.dumps({"to": to, "message": BODY}))
        if resp.status_code != 202:
            raise RuntimeError(f"POST /api/messages answered {resp.status_code}: "
                               f"{resp.text[:500]}")
        [entry] = resp.json()["messages"]
        if entry["status"] not in ANSWERED:
            raise RuntimeError(f"POST /api/messages: {to} is {entry['status']}: {entry}")
        return str(entry["id"])

    def message(self, message_id: str) -> dict[str, Any]:
        """`GET /api/messages/{id}`."""
        resp = self.client.get(f"/messages/{message_id}")
        if resp.status_code != 200:
            raise RuntimeError(f"GET /api/messages/{message_id} answered {resp.status_code}")
        body: dict[str, Any] = resp.json()
        return body

    def close(self) -> None:
        """Close the pool."""
        self.client.close()


class _Direct:
    """The ACS SDK called directly: one `SmsClient` shared by the threads, as a caller would."""

    def __init__(self, endpoint: str, key: str) -> None:
        # Typed as Any: the SDK's type comments on send() confuse mypy.
        self._sms: Any = SmsClient(endpoint, AzureKeyCredential(key))

    def send(self, to: str) -> None:
        """One single-recipient send with a delivery report; raises unless accepted."""
        [result] = self._sms.send(from_=SENDER, to=[to], message=BODY,
                                  enable_delivery_report=True)
        if not result.successful:
            raise RuntimeError(f"the emulator refused {to}: {result.error_message}")

    def close(self) -> None:
        """Close the client's connections."""
        self._sms._sms_service_client.close()


class _Delivered:
    """Tells when messages are `delivered`: the report queue's length (cheap, polled often)
    and, only once it is empty, one query of the messages not yet delivered. Reads Azurite
    directly, never through the proxy, so none of it is counted as ours."""

    def __init__(self, services: Services) -> None:
        self.queue = services.storage.queue(DELIVERY_REPORTS_QUEUE)
        self._messages = services.storage.table(MESSAGES_TABLE)

    def queue_length(self) -> int:
        """Reports on `sms-delivery-reports` (invisible ones included)."""
        return int(self.queue.get_queue_properties().approximate_message_count or 0)

    def statuses(self, ids: set[str], *, undelivered_only: bool = True) -> dict[str, str]:
        """id -> status of the messages among `ids` (only those not `delivered`, by default)."""
        query = "Kind eq 'message'" + (" and Status ne 'delivered'" if undelivered_only else "")
        rows = self._messages.query_entities(query, select=["PartitionKey", "RowKey", "Status"])
        found = {f"{r['PartitionKey']}-{r['RowKey']}": str(r["Status"]) for r in rows}
        return {i: found[i] for i in ids if i in found}


# -- timing -------------------------------------------------------------------------------------


def _direct_throughput(direct: _Direct, emulator: _Emulator, numbers: NumberPool, count: int,
                       concurrency: int, cpu: CpuMeter) -> Run:
    """`count` SDK sends from `concurrency` threads; each call returns once the emulator put the
    message in the handset's inbox, so the run ends when the last call returns."""
    recipients = numbers.take(count)
    base = emulator.accepted()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="direct") as pool:
        before = cpu.snapshot()
        started = time.perf_counter()
        list(pool.map(direct.send, recipients))
        elapsed = time.perf_counter() - started
        used = CpuMeter.used(before, cpu.snapshot())
    if emulator.accepted() - base != count:
        raise RuntimeError(f"whole path: the emulator accepted {emulator.accepted() - base} of "
                           f"{count} direct sends")
    return Run(count, elapsed, cpu_s=used)


def _await_delivered(watch: _Delivered, emulator: _Emulator, base: int, count: int,
                     sends: Future[list[str]], dlr_delay_s: float,
                     alive: Callable[[], str | None]) -> tuple[float, float, int]:
    """Wait until `count` more recipients are at their handsets and every message `sends`
    returns is `delivered`. Returns (perf_counter when all were at their handsets, when all were
    seen delivered, the status queries made).

    The status query runs only when the report queue is empty, no earlier than `dlr_delay_s`
    after the last handset got its message (no report can be applied before), and at most every
    STATUS_CHECK_EVERY_S.
    """
    end = time.monotonic() + DEADLINE_S
    at_handsets: float | None = None
    next_check = 0.0
    checks = 0
    left: dict[str, str] = {}
    while True:
        problem = alive()
        if problem is not None:
            raise RuntimeError(problem)
        if sends.done() and sends.exception() is not None:
            raise RuntimeError(f"whole path: a send failed: {sends.exception()!r}")
        now = time.perf_counter()
        if at_handsets is None:
            if emulator.accepted() - base >= count:
                at_handsets = time.perf_counter()
        elif (sends.done() and now >= at_handsets + dlr_delay_s and now >= next_check
              and watch.queue_length() == 0):
            left = watch.statuses(set(sends.result()))
            checks += 1
            checked = time.perf_counter()
            if not left:
                return at_handsets, checked, checks
            next_check = checked + STATUS_CHECK_EVERY_S
        if time.monotonic() > end:
            got = emulator.accepted() - base
            raise RuntimeError(f"whole path: timed out after {DEADLINE_S:.0f} s: {got} of "
                               f"{count} at their handsets, {len(left)} not delivered yet, "
                               f"e.g. {list(left.items())[:3]}")
        time.sleep(POLL_S)


@dataclass
class _Pass:
    """One timed run of our path: the Run (first POST -> all delivered) and what it saw."""

    run: Run
    ids: list[str]
    to_handsets_s: float
    post_latencies_s: list[float]
    status_queries: int

    def as_json(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        posts = self.post_latencies_s
        return {**self.run.as_json(), "to_handsets_s": round(self.to_handsets_s, 3),
                "to_handsets_rate_per_s": round(self.run.count / self.to_handsets_s, 1)
                if self.to_handsets_s > 0 else None,
                "post_p50_ms": round(percentile(posts, 50) * 1000, 2),
                "post_p95_ms": round(percentile(posts, 95) * 1000, 2),
                "status_queries": self.status_queries}


def _ours_throughput(api: _OurApi, emulator: _Emulator, watch: _Delivered,
                     numbers: NumberPool, count: int, concurrency: int, cpu: CpuMeter,
                     dlr_delay_s: float, alive: Callable[[], str | None]) -> _Pass:
    """`count` POSTs from `concurrency` threads (a closed loop), timed from the first POST until
    all are at their handsets and `delivered`."""
    recipients = numbers.take(count)
    posts = [0.0] * count

    def post(index: int) -> str:
        started = time.perf_counter()
        message_id = api.send(recipients[index])
        posts[index] = time.perf_counter() - started
        return message_id

    base = emulator.accepted()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ours") as pool, \
            ThreadPoolExecutor(max_workers=1) as runner:
        before = cpu.snapshot()
        started = time.perf_counter()
        sends = runner.submit(lambda: list(pool.map(post, range(count))))
        at_handsets, delivered, checks = _await_delivered(watch, emulator, base, count, sends,
                                                          dlr_delay_s, alive)
        used = CpuMeter.used(before, cpu.snapshot())
        ids = sends.result()
    if emulator.accepted() - base != count:
        raise RuntimeError(f"whole path: the emulator accepted {emulator.accepted() - base} "
                           f"sends for {count} messages (a message sent twice?)")
    return _Pass(Run(count, delivered - started, cpu_s=used), ids, at_handsets - started, posts,
                 checks)


def _latencies(send: Callable[[str], None], emulator: _Emulator, numbers: NumberPool,
               count: int) -> tuple[list[float], list[float]]:
    """`count` sends one at a time, each to a fresh number: a SHORT_GAP_S pause before each, a
    LONG_GAP_S one before every LONG_GAP_EVERY-th. Returns the seconds from just before each
    call to its handset's `receivedAt`, and each call's own time."""
    rng = random.Random(LATENCY_SEED)
    to_handset: list[float] = []
    calls: list[float] = []
    base = emulator.accepted()
    for i in range(count):
        time.sleep(rng.uniform(*LONG_GAP_S) if i % LONG_GAP_EVERY == LONG_GAP_EVERY - 1
                   else SHORT_GAP_S)
        [to] = numbers.take(1)
        sent_at = time.time()
        started = time.perf_counter()
        send(to)
        calls.append(time.perf_counter() - started)
        end = time.monotonic() + 60
        while (received := emulator.received_at(to)) is None:
            if time.monotonic() > end:
                raise RuntimeError(f"whole path: {to} got nothing within 60 s")
            time.sleep(INBOX_POLL_S)
        to_handset.append(received - sent_at)
    if emulator.accepted() - base != count:
        raise RuntimeError(f"whole path: the emulator accepted {emulator.accepted() - base} "
                           f"sends for {count} sequential messages")
    return to_handset, calls


def _latency_json(samples: Sequence[float], calls: Sequence[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in samples]
    return {"count": len(ms), "p50_ms": round(percentile(ms, 50), 2),
            "p95_ms": round(percentile(ms, 95), 2), "p99_ms": round(percentile(ms, 99), 2),
            "max_ms": round(max(ms), 2) if ms else None,
            "call_p50_ms": round(percentile(calls, 50) * 1000, 2),
            "samples_ms": [round(x, 1) for x in ms]}


def _wait_all_delivered(watch: _Delivered, ids: list[str], what: str) -> dict[str, int]:
    """After a pass (not timed): every message is `delivered`; the statuses counted."""
    wanted = set(ids)
    end = time.monotonic() + 90
    while (left := watch.statuses(wanted)) and time.monotonic() < end:
        time.sleep(0.25)
    if left:
        raise RuntimeError(f"whole path ({what}): {len(left)} of {len(ids)} messages not "
                           f"delivered, e.g. {list(left.items())[:3]}")
    found = watch.statuses(wanted, undelivered_only=False)
    if len(found) != len(wanted):
        raise RuntimeError(f"whole path ({what}): {len(wanted) - len(found)} messages not found")
    counted: dict[str, int] = {}
    for status in found.values():
        counted[status] = counted.get(status, 0) + 1
    return counted


def _check_api(api: _OurApi, ids: list[str]) -> int:
    """A sample of the messages read through `GET /api/messages/{id}`: delivered, with the ACS
    id, and a history that ends `delivered`."""
    sample = random.Random(88).sample(ids, min(API_SAMPLE, len(ids)))
    for message_id in sample:
        body = api.message(message_id)
        history = [e.get("status") for e in body.get("history", [])]
        if body["status"] != "delivered" or not body.get("providerMessageId") \
                or not history or history[-1] != "delivered":
            raise RuntimeError(f"whole path: GET /api/messages/{message_id}: {body}")
    return len(sample)


def _failed_invocations(host: Host) -> int:
    return host.child.log_tail(chars=10**8).count(" failed on message")


# -- counting -----------------------------------------------------------------------------------


def _resource(row: CountRow) -> str:
    return f"{row.key.service} {row.key.resource or '(service)'}"


def storage_summary(rows: list[CountRow], background: list[CountRow], quiet_s: float,
                    elapsed_s: float, delivered: int) -> dict[str, Any]:
    """Requests per delivered message from the count pass's tallies, with the idle background
    (counted over `quiet_s` before the run) subtracted pro rata over the run's `elapsed_s`."""
    total = total_requests(rows)
    idle = total_requests(background)
    idle_rate = idle / quiet_s if quiet_s > 0 else 0.0
    net = (total - idle_rate * elapsed_s) / delivered
    by_resource: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = by_resource.setdefault(_resource(row), {"requests": 0, "by_kind": {},
                                                        "not_2xx": {}})
        entry["requests"] += row.requests
        kind = f"{row.key.method} {row.key.kind}"
        entry["by_kind"][kind] = entry["by_kind"].get(kind, 0) + row.requests
        if row.batch_ops:
            entry["batch_ops"] = entry.get("batch_ops", 0) + row.batch_ops
        for status, n in [*row.statuses.items(), *row.inner_statuses.items()]:
            if not 200 <= status < 300:
                key = f"{kind} {status}"
                entry["not_2xx"][key] = entry["not_2xx"].get(key, 0) + n
    for entry in by_resource.values():
        entry["per_message"] = round(entry["requests"] / delivered, 3)
    idle_by: dict[str, int] = {}
    for row in background:
        key = f"{_resource(row)} {row.key.method} {row.key.kind}"
        idle_by[key] = idle_by.get(key, 0) + row.requests
    batches = sum(r.requests for r in rows if r.key.kind == "batch")
    return {
        "delivered": delivered, "requests": total, "elapsed_s": round(elapsed_s, 3),
        "per_message": round(total / delivered, 3), "net_per_message": round(net, 3),
        "transactions_per_message": round(batches / delivered, 3),
        "by_resource": dict(sorted(by_resource.items(), key=lambda kv: -kv[1]["requests"])),
        "idle_background": {"window_s": quiet_s, "requests": idle,
                            "per_s": round(idle_rate, 2),
                            "per_message_over_run": round(idle_rate * elapsed_s / delivered, 3),
                            "by_request": idle_by},
        "minimum_per_message": round(MINIMUM_REQUESTS, 3),
        "minimum": [{"stage": n.stage, "what": n.what, "requests": round(n.requests, 4)}
                    for n in MINIMUM_PER_MESSAGE],
        "target": REQUESTS_TARGET, "met": net <= REQUESTS_TARGET,
        "rows": [r.as_json() for r in rows],
    }


def _storage_lines(summary: dict[str, Any], count_pass: dict[str, Any]) -> list[str]:
    """The breakdown printed under the table."""
    n = summary["delivered"]
    idle = summary["idle_background"]
    lines = [
        "",
        f"figure 8c, storage requests per delivered message (count pass: {n} messages, the "
        f"host's storage through localdev.storage_proxy, {summary['elapsed_s']:.1f} s):",
        f"  total {summary['per_message']:.2f} per message ({summary['requests']:,} requests, "
        f"{summary['transactions_per_message']:.2f} of them transactions); idle background "
        f"{idle['per_s']:.1f} req/s = {idle['per_message_over_run']:.2f} per message over the "
        f"run; net {summary['net_per_message']:.2f} (target <= {REQUESTS_TARGET:.0f}, minimum "
        f"{MINIMUM_REQUESTS:.2f})",
    ]
    width = max((len(k) for k in summary["by_resource"]), default=0)
    for name, entry in summary["by_resource"].items():
        kinds = ", ".join(f"{k} {v / n:.2f}" for k, v in
                          sorted(entry["by_kind"].items(), key=lambda kv: -kv[1]))
        extra = ""
        if entry.get("batch_ops"):
            extra += f"; {entry['batch_ops'] / n:.2f} ops in transactions"
        if entry["not_2xx"]:
            extra += "; not 2xx: " + ", ".join(f"{k} x{v}" for k, v in entry["not_2xx"].items())
        lines.append(f"  {name.ljust(width)}  {entry['per_message']:6.2f}  {kinds}{extra}")
    idle_list = ", ".join(f"{k} {v}" for k, v in sorted(idle["by_request"].items(),
                                                         key=lambda kv: -kv[1]))
    lines.append(f"  idle background ({idle['window_s']:.0f} s quiet window before the run, "
                 f"{idle['requests']} requests): {idle_list or 'none'}")
    stages: dict[str, float] = {}
    for need in MINIMUM_PER_MESSAGE:
        stages[need.stage] = stages.get(need.stage, 0.0) + need.requests
    lines.append("  minimum the invariants need (bench/whole_path.py MINIMUM_PER_MESSAGE): "
                 + " + ".join(f"{k} {v:.2f}" for k, v in stages.items())
                 + f" = {MINIMUM_REQUESTS:.2f}")
    cpu = count_pass["cpu_ms_per_item"]
    lines.append(f"  count pass rate {count_pass['rate_per_s']:.1f} msg/s "
                 f"({count_pass['rate_vs_timing_pass']:.2f} of the timing pass's); CPU ms per "
                 f"msg: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if v >= 0.005))
    return lines


# -- the figure ---------------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "  ok" if met else "  MISSED"


def _our_pass(stack: Stack, name: str, options: PathOptions, numbers: NumberPool,
              emulator: _Emulator, watch: _Delivered, proxy: Proxy | None
              ) -> tuple[Host, _OurApi, list[str]]:
    """Start a host (all functions; its storage through `proxy` when given) and warm it up:
    `options.warmup` sends, all delivered. Returns the host, a client and the warm-up ids."""
    host = stack.start_host(name, storage=proxy.connection_string if proxy else None)
    api = _OurApi(host.base_url, options.concurrency)
    log(f"whole path: {name}: warm-up, {options.warmup} sends until delivered")
    warm = _ours_throughput(api, emulator, watch, numbers, options.warmup, options.concurrency,
                            stack.cpu_meter(host), options.dlr_delay_s, host.child.problem)
    return host, api, warm.ids


def whole_path(options: PathOptions) -> tuple[Figure, dict[str, int | None]]:
    """Figure 8 on a stack of its own; returns the figure and its processes' peak RSS (KiB)."""
    numbers = NumberPool()  # its own emulator and Azurite: the main run's numbers do not matter
    n, c = options.messages, options.concurrency
    memory: dict[str, int | None] = {}
    log("whole path: starting its own Azurite and an ACS emulator with delivery reports on")
    with Stack(delivery_reports=True, dlr_delay_s=options.dlr_delay_s) as stack:
        assert stack.pauses is not None
        mark = stack.pauses.mark()
        services = Services(load_settings(**stack.app_settings()))
        services.ensure_resources()
        watch = _Delivered(services)
        emulator = _Emulator(stack.emulator_url)
        direct = _Direct(stack.emulator_url, stack.acs_key)
        try:
            # -- the SDK direct, first: no host runs yet, so its reports are cleared unread.
            log(f"whole path: SDK direct, warm-up {options.warmup}, then {n} sends from {c} "
                f"threads")
            _direct_throughput(direct, emulator, numbers, options.warmup, c, stack.cpu_meter())
            direct_run = _direct_throughput(direct, emulator, numbers, n, c, stack.cpu_meter())
            log(f"whole path: SDK direct, {options.latency_sends} sequential sends")
            direct_latency, direct_calls = _latencies(direct.send, emulator, numbers,
                                                      options.latency_sends)
            direct_sends = options.warmup + n + options.latency_sends
            end = time.monotonic() + 60
            while (queued := watch.queue_length()) < direct_sends:
                if time.monotonic() > end:
                    raise RuntimeError(f"whole path: the emulator wrote {queued} of "
                                       f"{direct_sends} delivery reports of the direct sends")
                time.sleep(0.1)
            watch.queue.clear_messages()

            # -- ours, timed (storage direct, no proxy).
            host, api, warm_ids = _our_pass(stack, "func-host-path", options, numbers,
                                            emulator, watch, None)
            try:
                log(f"whole path: ours, {n} sends from {c} threads until delivered")
                ours = _ours_throughput(api, emulator, watch, numbers, n, c,
                                        stack.cpu_meter(host), options.dlr_delay_s,
                                        host.child.problem)
                log(f"whole path: ours, {options.latency_sends} sequential sends")
                latency_ids: list[str] = []
                ours_latency, ours_calls = _latencies(
                    lambda to: latency_ids.append(api.send(to)), emulator, numbers,
                    options.latency_sends)
                timed_ids = warm_ids + ours.ids + latency_ids
                timed_statuses = _wait_all_delivered(watch, timed_ids, "timing pass")
                api_checked = _check_api(api, ours.ids)
            finally:
                api.close()
            memory["function host (whole-path figure)"] = host.child.peak_rss_kib()
            host.child.stop()
            timing_failed = _failed_invocations(host)

            # -- ours again, counted on the wire.
            proxy = stack.start_proxy()
            host, api, warm_ids = _our_pass(stack, "func-host-path-count", options, numbers,
                                            emulator, watch, proxy)
            try:
                time.sleep(SETTLE_S)
                log(f"whole path: counting the idle background for {options.quiet_s:.0f} s")
                proxy.reset()
                time.sleep(options.quiet_s)
                background = proxy.snapshot(reset=True)
                log(f"whole path: ours through the storage proxy, {n} sends, counted")
                counted = _ours_throughput(api, emulator, watch, numbers, n, c,
                                           stack.cpu_meter(host, proxy), options.dlr_delay_s,
                                           host.child.problem)
                rows = proxy.snapshot(reset=True)
                count_statuses = _wait_all_delivered(watch, warm_ids + counted.ids,
                                                     "count pass")
            finally:
                api.close()
            host.child.stop()
            count_failed = _failed_invocations(host)
            memory["storage proxy"] = proxy.child.peak_rss_kib()
            memory["ACS emulator (whole-path figure)"] = stack.emulator.peak_rss_kib() \
                if stack.emulator else None
            memory["Azurite (whole-path figure)"] = (peak_rss_kib(stack.azurite.process.pid)
                                                     if stack.azurite else None)
            pauses = stack.pauses.since(mark)
        finally:
            direct.close()
            emulator.close()

    storage = storage_summary(rows, background, options.quiet_s, counted.run.elapsed_s, n)
    count_pass = {**counted.as_json(),
                  "rate_vs_timing_pass": round(counted.run.rate / ours.run.rate, 3)
                  if ours.run.rate else None,
                  "statuses": count_statuses, "failed_invocations": count_failed}
    ours_ms = [s * 1000 for s in ours_latency]
    direct_ms = [s * 1000 for s in direct_latency]
    latency_met = (percentile(ours_ms, 50) <= P50_TARGET_MS
                   and percentile(ours_ms, 99) <= P99_TARGET_MS)

    def pcts(ms: list[float]) -> str:
        return (f"p50 {percentile(ms, 50):.1f} / p95 {percentile(ms, 95):.1f} / "
                f"p99 {percentile(ms, 99):.1f} ms")

    rows_out = [
        (f"   8b. latency, call -> handset ({options.latency_sends} one at a time)",
         pcts(ours_ms), pcts(direct_ms), "",
         f"p50 <= {P50_TARGET_MS:.0f}, p99 <= {P99_TARGET_MS:.0f} ms{_verdict(latency_met)}"),
        ("   8c. storage requests per delivered msg",
         f"{storage['net_per_message']:.2f} ({storage['per_message']:.2f} - idle)",
         f"min {MINIMUM_REQUESTS:.2f}", "",
         f"<= {REQUESTS_TARGET:.0f}{_verdict(bool(storage['met']))}"),
    ]
    figure = Figure(
        "8", "whole_path", f"whole send path, to report applied, vs SDK direct (C={c})", "msg",
        ours.run, direct_run, target=THROUGHPUT_TARGET,
        detail={
            "messages": n, "concurrency": c, "warmup": options.warmup,
            "dlr_delay_s": options.dlr_delay_s,
            "timing": "timing passes without the proxy; requests counted in a separate pass of "
                      "the same sends with the host's storage through localdev.storage_proxy",
            "ours_pass": ours.as_json(), "direct_pass": direct_run.as_json(),
            "latency": {"ours": _latency_json(ours_latency, ours_calls),
                        "direct": _latency_json(direct_latency, direct_calls),
                        "targets_ms": {"p50": P50_TARGET_MS, "p99": P99_TARGET_MS},
                        "met": latency_met,
                        "gaps": f"{SHORT_GAP_S * 1000:.0f} ms, {LONG_GAP_S[0]:.0f}-"
                                f"{LONG_GAP_S[1]:.0f} s before every {LONG_GAP_EVERY}th send"},
            "storage": storage, "count_pass": count_pass,
            "verified": {"timing_pass_statuses": timed_statuses, "api_checked": api_checked},
            "failed_invocations": timing_failed + count_failed,
            "failed_invocations_timing_pass": timing_failed,
            "azurite_pauses_s": pauses,
            "_rows": rows_out, "_lines": _storage_lines(storage, count_pass),
        })
    return figure, memory
