"""Figure 7: a campaign of 10,000 recipients, (a) prepared and (b) fanned out, each against its
floor in the same run.

7a. `POST /api/campaigns` with N inline recipients (personalised `vars`) until its 201, against
    the storage work of a prepare: the opt-out range queries, N snapshot rows written with
    entity-group transactions of 100 on a pool of 16, one campaign insert.
7b. `POST /api/campaigns/{id}/send` of a prepared campaign until every fan-out chunk marker of
    the run exists, the chunks fanned out by a host whose only queue consumer is
    `campaign_fanout`, against the storage work of a fan-out done in-process.

See bench/README.md, figure 7.
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import UpdateMode

from bench.floors import (
    ENTITY_GROUP_LIMIT,
    GLOBAL_PARTITION,
    OPTOUTS_TABLE,
    _batch_id,
    _Clients,
    _job,
    message_entity,
)
from bench.measure import CpuMeter, NumberPool, Run, median_run, time_one
from bench.scenarios import QUEUE_OPTIONS, Api, Figure, _services, log
from bench.stack import SENDER, Host, PauseWatch, Stack
from sms_core.adapters.storage import CAMPAIGNS_QUEUE, OUTBOUND_QUEUE
from sms_core.bootstrap import Services
from sms_core.models.records import SNAPSHOT_BLOCK
from sms_core.use_cases.campaign_runs import CHUNK_ROWS

# Rendered per recipient: 1 GSM-7 segment, about as long as the other figures' BODY.
TEMPLATE = "Hi {{name}}, your appointment is confirmed for tomorrow. Reply STOP to opt out."
FIRST_NAMES = ("Ann", "Bo", "Carla", "Dev", "Emil", "Fatima", "Goran", "Hana", "Ivo", "Jun")
WARMUP_RECIPIENTS = 1000  # one chunk: the first prepare and fan-out of each side, not timed
# Every queue and timer trigger but campaign_fanout is switched off on the campaign host: the
# chunks' dispatch jobs stay on sms-outbound, and no timer touches the runs meanwhile.
CAMPAIGN_HOST_DISABLED = ("dispatch_sms", "delivery_report", "app_webhook", "campaign_scheduler",
                          "expire_messages", "reconcile_reports", "sweep_outbox")
FANOUT_DEADLINE_S = 180.0
POLL_S = 0.02
WRITE_POOL = 16  # sms_core.concurrency's shared pool, which every bulk write of ours runs on
FLOOR_CAMPAIGNS_TABLE = "BenchFloorCampaigns"
FLOOR_CAMPAIGN_RECIPIENTS_TABLE = "BenchFloorCampaignRecipients"
FLOOR_FANOUT_QUEUE = "bench-floor-fanout"
FLOOR_MESSAGES_TABLE = "BenchFloorMessages"  # bench.floors' (the Messages-shaped floor table)
_OPTOUT_RANGE = "PartitionKey eq @pk and RowKey ge @lo and RowKey le @hi and OptedOut eq true"
_SNAPSHOT_RANGE = ("PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi "
                   "and Verdict eq 'valid'")

PREPARE_FLOOR_OPS = ("2 opt-out range queries (sender and global) + N/100 entity-group "
                     "transactions of 100 snapshot rows, in partitions of 10,000 (<campaign>."
                     "<block>, 8-digit keys; pool of 16) + 1 campaign insert")
FANOUT_FLOOR_OPS = ("per 1,000-row chunk (up to 16 chunks at once): 1 snapshot range query "
                    "within its block's partition + 2 opt-out range queries + 10 entity-group "
                    "transactions of 100 messages into the block's batch and 10 queue sends "
                    "(on a shared pool of 16) + 1 chunk-marker upsert")
PREPARE_OUR_OPS = ("request parsing and validation (pydantic), per recipient: to_e164 "
                   "(phonenumbers), template render, segment count (cached per text); "
                   "OptOutStore.opted_out_among (2 range queries); CampaignStore.create: N/100 "
                   "transactions of 100 upserts (run_all, 16 threads) + the campaign insert; "
                   "campaign_view: a runs range query; the 201 JSON")
FANOUT_OUR_OPS = ("the send request: campaign point read, schedule upsert, ETag save, fire "
                  "(point read, run insert + range query, 1 chunk job per 1,000 rows on "
                  "sms-campaigns, ETag save, schedule delete), campaign_view (point read, runs "
                  "query, status_counts query of the Messages table); then the host polls "
                  "sms-campaigns (idle: up to maxPollingInterval 2 s) and per chunk: campaign "
                  "point read, run range query, snapshot range query, 2 opt-out range queries, "
                  "10 transactions of 100 (MessageStore.create_batch), run range query again, "
                  "10 dispatch jobs on sms-outbound, marker upsert, the queue delete")


def snapshot_key(campaign_id: str, index: int) -> tuple[str, str]:
    """(PartitionKey, RowKey) of snapshot row `index`, as `campaign_store.snapshot_key` lays
    out a campaign of blocks: `<campaign id>.<block, 5 digits>`, 8-digit RowKeys."""
    return f"{campaign_id}.{index // SNAPSHOT_BLOCK:05d}", f"{index:08d}"


def block_batch(batch: str, block: int) -> str:
    """The Messages partition of a run's block (`RunRecord.block_batch`)."""
    return batch if block == 0 else f"{batch}x{block:05d}"


def render(name: str) -> str:
    """What the template gives for `name` (the floor writes the text without rendering)."""
    return TEMPLATE.replace("{{name}}", name)


def _name(i: int) -> str:
    return f"{FIRST_NAMES[i % len(FIRST_NAMES)]} {i}"


def _prepare_body(recipients: Sequence[str], label: str) -> bytes:
    return json.dumps({
        "name": f"bench campaign {label}", "from": SENDER, "template": TEMPLATE,
        "audience": {"recipients": [{"to": to, "vars": {"name": _name(i)}}
                                    for i, to in enumerate(recipients)]}}).encode()


class CampaignFloor:
    """What preparing and fanning out a campaign need from storage, and nothing else.

    `prepare`: the opt-out range queries (sender and global partition), one snapshot row per
    recipient (To, Verdict, Body, Segments, Encoding: the shape of a CampaignRecipients row)
    with entity-group transactions of 100 on a pool of 16, one Campaigns-shaped insert. The
    numbers arrive valid and the texts rendered: parsing and rendering are ours to pay for.

    `fan_out`: per chunk of 1,000 rows, up to `chunk_workers` chunks at once: a range query of
    the chunk's snapshot rows, the opt-out range queries, one Messages-shaped entity per row in
    transactions of 100 and one dispatch job per 100 on a queue (both on a shared pool of 16),
    the chunk's marker upsert.
    """

    def __init__(self, storage: str, sender: str, chunk_workers: int) -> None:
        clients = _Clients(storage)
        for name in (FLOOR_CAMPAIGNS_TABLE, FLOOR_CAMPAIGN_RECIPIENTS_TABLE):
            with contextlib.suppress(ResourceExistsError):
                clients.tables.create_table(name)
        with contextlib.suppress(ResourceExistsError):
            clients.queues.create_queue(FLOOR_FANOUT_QUEUE)
        self._sender = sender
        self._optouts = clients.table(OPTOUTS_TABLE)
        self._campaigns = clients.table(FLOOR_CAMPAIGNS_TABLE)
        self._snapshot = clients.table(FLOOR_CAMPAIGN_RECIPIENTS_TABLE)
        self._messages = clients.table(FLOOR_MESSAGES_TABLE)
        self._queue = clients.queue(FLOOR_FANOUT_QUEUE)
        self._pool = ThreadPoolExecutor(max_workers=WRITE_POOL, thread_name_prefix="floor-pool")
        self._chunk_pool = ThreadPoolExecutor(max_workers=chunk_workers,
                                              thread_name_prefix="floor-chunk")

    def _opted_out(self, numbers: Sequence[str]) -> None:
        for partition in (self._sender, GLOBAL_PARTITION):
            list(self._optouts.query_entities(
                _OPTOUT_RANGE, select=["RowKey"],
                parameters={"pk": partition, "lo": min(numbers), "hi": max(numbers)}))

    def _transactions(self, entities: list[dict[str, Any]]) -> None:
        # Entities arrive in key order: a group of 100 never spans two partitions (10,000 is a
        # multiple of 100).
        groups = [entities[i:i + ENTITY_GROUP_LIMIT]
                  for i in range(0, len(entities), ENTITY_GROUP_LIMIT)]
        list(self._pool.map(
            lambda group: self._snapshot.submit_transaction([("create", e) for e in group]),
            groups))

    def prepare(self, campaign_id: str, recipients: Sequence[tuple[str, str]]) -> None:
        """Snapshot (number, rendered text) rows of a new campaign, then the campaign."""
        now = datetime.now(UTC)
        self._opted_out([to for to, _ in recipients])
        self._transactions([
            {"PartitionKey": pk, "RowKey": rk, "To": to, "Verdict": "valid",
             "Body": body, "Segments": 1, "Encoding": "GSM-7"}
            for i, (to, body) in enumerate(recipients)
            for pk, rk in [snapshot_key(campaign_id, i)]])
        total = len(recipients)
        preview = {"recipients": {"total": total, "valid": total, "invalid": 0,
                                  "duplicates": 0, "optedOut": 0, "deferred": 0},
                   "invalidRows": [], "segments": {"min": 1, "max": 1, "total": total},
                   "encoding": "GSM-7",
                   "samples": [{"to": to, "message": body, "segments": 1, "encoding": "GSM-7"}
                               for to, body in recipients[:3]]}
        self._campaigns.create_entity({
            "PartitionKey": "campaign", "RowKey": campaign_id, "Name": "bench floor",
            "From": self._sender, "Template": TEMPLATE, "Status": "prepared",
            "CreatedAt": now, "UpdatedAt": now, "Total": total, "Valid": total,
            "TokenHash": secrets.token_hex(32), "DeliveryReport": True, "Runs": 0,
            "PreviewParts": 1, "Preview0": json.dumps(preview, separators=(",", ":"))})

    def _fan_out_chunk(self, campaign_id: str, key: str, batch: str, chunk: int) -> int:
        lo = chunk * CHUNK_ROWS  # a chunk lies within one block (1,000 divides 10,000)
        pk, first = snapshot_key(campaign_id, lo)
        rows = list(self._snapshot.query_entities(_SNAPSHOT_RANGE, parameters={
            "pk": pk, "lo": first, "hi": snapshot_key(campaign_id, lo + CHUNK_ROWS)[1]}))
        if rows:
            self._opted_out([str(r["To"]) for r in rows])
        now = datetime.now(UTC)
        target = block_batch(batch, lo // SNAPSHOT_BLOCK)
        entities = [message_entity(target, int(r["RowKey"]) % SNAPSHOT_BLOCK, self._sender,
                                   str(r["To"]), str(r["Body"]), now) for r in rows]
        groups = [entities[i:i + ENTITY_GROUP_LIMIT]
                  for i in range(0, len(entities), ENTITY_GROUP_LIMIT)]
        list(self._pool.map(
            lambda group: self._messages.submit_transaction([("create", e) for e in group]),
            groups))
        list(self._pool.map(self._queue.send_message,
                            [_job(target, [int(e["RowKey"]) for e in group])
                             for group in groups]))
        self._campaigns.upsert_entity({
            "PartitionKey": campaign_id, "RowKey": f"run.{key}.chunk.{chunk:05d}",
            "Kind": "chunk", "Run": key, "Chunk": chunk, "Messages": len(entities),
            "Pending": len(entities)}, mode=UpdateMode.MERGE)
        return len(entities)

    def fan_out(self, campaign_id: str, total: int) -> None:
        """Fan out a campaign prepared by `prepare` with `total` rows: one message batch per
        snapshot block, as a run's (`RunRecord.block_batch`)."""
        key = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        batch = _batch_id(datetime.now(UTC))
        chunks = max(1, math.ceil(total / CHUNK_ROWS))
        written = sum(self._chunk_pool.map(
            lambda n: self._fan_out_chunk(campaign_id, key, batch, n), range(chunks)))
        if written != total:
            raise RuntimeError(f"campaign floor: fanned out {written} of {total} rows")

    def clear_jobs(self) -> None:
        """Empty the floor's dispatch-job queue (nothing reads it). Not timed."""
        self._queue.clear_messages()

    def close(self) -> None:
        """Stop the pools."""
        self._chunk_pool.shutdown(wait=True)
        self._pool.shutdown(wait=True)


def _prepare(api: Api, body: bytes, expected: int) -> dict[str, Any]:
    resp = api.client.post("/campaigns", content=body)
    if resp.status_code != 201:
        raise RuntimeError(f"POST /api/campaigns answered {resp.status_code}: {resp.text[:500]}")
    prepared: dict[str, Any] = resp.json()
    counts = prepared["preview"]["recipients"]
    if counts.get("valid") != expected or counts.get("total") != expected:
        raise RuntimeError(f"campaign prepare: expected {expected} valid recipients, the "
                           f"preview counts {counts}")
    return prepared


def _queue_length(queue: Any) -> int:
    return int(queue.get_queue_properties().approximate_message_count or 0)


class _Campaigns:
    """One side-by-side measurement of figure 7 on a host whose only consumer is
    `campaign_fanout`."""

    def __init__(self, host: Host, services: Services, api: Api, floor: CampaignFloor,
                 cpu: CpuMeter) -> None:
        self.host = host
        self.services = services
        self.api = api
        self.floor = floor
        self.cpu = cpu
        self.outbound = services.storage.queue(OUTBOUND_QUEUE)
        self.fanout_jobs = services.storage.queue(CAMPAIGNS_QUEUE)

    # -- 7a -----------------------------------------------------------------------------------

    def floor_prepare(self, recipients: Sequence[str]) -> tuple[Run, str]:
        """The floor's prepare of `recipients` (texts rendered before the clock starts)."""
        rows = [(to, render(_name(i))) for i, to in enumerate(recipients)]
        campaign_id = "c" + _batch_id(datetime.now(UTC))
        run = time_one(lambda: self.floor.prepare(campaign_id, rows), self.cpu,
                       units=len(recipients))
        return run, campaign_id

    def prepare(self, recipients: Sequence[str], label: str) -> tuple[Run, dict[str, Any]]:
        """`POST /api/campaigns` with `recipients` (the body built before the clock starts)."""
        body = _prepare_body(recipients, label)
        holder: list[dict[str, Any]] = []
        run = time_one(lambda: holder.append(_prepare(self.api, body, len(recipients))),
                       self.cpu, units=len(recipients))
        return run, holder[0]

    # -- 7b -----------------------------------------------------------------------------------

    def floor_fan_out(self, campaign_id: str, total: int) -> Run:
        """The floor's fan-out of a campaign it prepared; its jobs are cleared afterwards."""
        run = time_one(lambda: self.floor.fan_out(campaign_id, total), self.cpu, units=total)
        self.floor.clear_jobs()
        return run

    def fan_out(self, prepared: dict[str, Any], total: int) -> tuple[Run, dict[str, float]]:
        """Confirm the send and wait until every chunk marker of the run exists (polled every
        POLL_S); then verify every message is queued and one dispatch job per 100 waits on
        sms-outbound, and clear them (nothing consumes them)."""
        campaign_id = str(prepared["id"])
        body = json.dumps({"confirmationToken": prepared["confirmationToken"]}).encode()
        store = self.services.campaigns
        end = time.monotonic() + FANOUT_DEADLINE_S
        before = self.cpu.snapshot()
        started = time.perf_counter()
        resp = self.api.client.post(f"/campaigns/{campaign_id}/send", content=body)
        answered = time.perf_counter()
        if resp.status_code != 202:
            raise RuntimeError(f"POST /api/campaigns/{campaign_id}/send answered "
                               f"{resp.status_code}: {resp.text[:500]}")
        key = str(resp.json()["runs"][0]["id"])
        picked_up: float | None = None
        while True:
            # The chunk jobs turn invisible when the host receives them.
            if picked_up is None and not list(self.fanout_jobs.peek_messages(max_messages=1)):
                picked_up = time.perf_counter()
            run = store.run(campaign_id, key)
            now = time.perf_counter()
            if run is not None and len(run.done_chunks) >= run.chunks:
                break
            problem = self.host.child.problem()
            if problem is not None:
                raise RuntimeError(f"campaign fan-out: {problem}")
            if time.monotonic() > end:
                done = len(run.done_chunks) if run else 0
                raise RuntimeError(f"campaign fan-out: {done} chunk(s) of {campaign_id} done "
                                   f"after {FANOUT_DEADLINE_S:.0f} s\n"
                                   f"{self.host.child.log_tail()}")
            time.sleep(POLL_S)
        elapsed = now - started
        measured = Run(1, elapsed, (elapsed,), total, CpuMeter.used(before, self.cpu.snapshot()))
        statuses: dict[str, int] = {}
        for batch in run.batches:  # one per snapshot block of 10,000
            for status, n in self.services.messages.status_counts(batch).items():
                statuses[status] = statuses.get(status, 0) + n
        jobs = _queue_length(self.outbound)
        if statuses != {"queued": total} or jobs != math.ceil(total / 100):
            raise RuntimeError(f"campaign fan-out: run {run.batch} holds {statuses} and left "
                               f"{jobs} dispatch job(s); expected {total} queued and "
                               f"{math.ceil(total / 100)} jobs")
        self.outbound.clear_messages()
        return measured, {"send_request_s": answered - started,
                          "picked_up_s": (picked_up or now) - started,
                          "chunks": run.chunks}


class _PausesBySide:
    """Azurite's pauses (PauseWatch: a ping over 0.5 s) summed per timed run of each side, so
    the JSON shows whether they fell on ours or on the floor. A "pause" is also what a ping
    waits behind a queue of slow requests, not only a freeze of Azurite."""

    def __init__(self, pauses: PauseWatch | None) -> None:
        self._pauses = pauses
        self._sums: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def side(self, name: str) -> Iterator[None]:
        """Record the pauses during the block under `name`."""
        mark = self._pauses.mark() if self._pauses is not None else 0
        try:
            yield
        finally:
            seen = self._pauses.since(mark) if self._pauses is not None else []
            self._sums.setdefault(name, []).append(round(sum(seen), 2))

    def totals(self, name: str) -> list[float]:
        """Seconds of pauses per run recorded under `name`."""
        return self._sums.get(name, [])


def campaigns(stack: Stack, numbers: NumberPool, recipients: int, repeats: int,
              pauses: PauseWatch | None = None) -> tuple[list[Figure], int | None]:
    """Figure 7: (a) preparing an N-recipient campaign, (b) fanning it out, `repeats` times each
    (medians), each against its floor, alternating floor and ours. Runs last: it empties
    sms-outbound first (the earlier figures' jobs, already verified) and after each fan-out.

    Returns the two figures and the campaign host's peak RSS (KiB).
    """
    services = _services(stack)
    log("campaigns: starting the function host (campaign_fanout the only consumer)")
    host = stack.start_host("func-host-campaigns", disabled=CAMPAIGN_HOST_DISABLED)
    api = Api(host.base_url, 1)
    api.client.timeout = httpx.Timeout(FANOUT_DEADLINE_S)
    floor = CampaignFloor(stack.storage, SENDER, QUEUE_OPTIONS.batch_size)
    bench = _Campaigns(host, services, api, floor, stack.cpu_meter(host))
    paused = _PausesBySide(pauses)
    try:
        # Both sides' queue sends then meet the same queue store (Azurite keeps all queues'
        # messages in one collection).
        bench.outbound.clear_messages()
        floor.clear_jobs()
        log(f"campaigns: warm-up, prepare and fan-out of {WARMUP_RECIPIENTS:,} recipients "
            "(floor, then ours)")
        warm = numbers.take(WARMUP_RECIPIENTS)
        _, floor_id = bench.floor_prepare(warm)
        bench.floor_fan_out(floor_id, WARMUP_RECIPIENTS)
        _, prepared = bench.prepare(warm, "warm-up")
        bench.fan_out(prepared, WARMUP_RECIPIENTS)

        mark = pauses.mark() if pauses is not None else 0
        floor_prepares: list[Run] = []
        our_prepares: list[Run] = []
        floor_ids: list[str] = []
        campaigns_prepared: list[dict[str, Any]] = []
        for i in range(repeats):
            log(f"campaigns: prepare {i + 1} of {repeats}, {recipients:,} recipients (floor, "
                "then POST /api/campaigns)")
            # The floor's rows carry the same numbers and texts as ours (in its own tables).
            batch = numbers.take(recipients)
            with paused.side("floor_prepare"):
                run, floor_id = bench.floor_prepare(batch)
            floor_prepares.append(run)
            floor_ids.append(floor_id)
            with paused.side("ours_prepare"):
                run, prepared = bench.prepare(batch, str(i + 1))
            our_prepares.append(run)
            campaigns_prepared.append(prepared)
        prepare_pauses = pauses.since(mark) if pauses is not None else []

        mark = pauses.mark() if pauses is not None else 0
        floor_fanouts: list[Run] = []
        our_fanouts: list[Run] = []
        timings: list[dict[str, float]] = []
        for i in range(repeats):
            log(f"campaigns: fan-out {i + 1} of {repeats}, {recipients:,} recipients (floor, "
                "then send + campaign_fanout)")
            with paused.side("floor_fanout"):
                floor_fanouts.append(bench.floor_fan_out(floor_ids[i], recipients))
            with paused.side("ours_fanout"):
                run, timing = bench.fan_out(campaigns_prepared[i], recipients)
            our_fanouts.append(run)
            timings.append(timing)
        fanout_pauses = pauses.since(mark) if pauses is not None else []
        peak = host.child.peak_rss_kib()
        host.child.stop()
    finally:
        api.close()
        floor.close()

    def seconds(runs: Sequence[Run]) -> list[float]:
        return [round(r.elapsed_s, 3) for r in runs]

    common = {"recipients": recipients, "repeats": repeats,
              "warmup_recipients": WARMUP_RECIPIENTS, "host_disabled": CAMPAIGN_HOST_DISABLED}
    prepare_figure = Figure(
        "7a", "campaign_prepare", f"campaign prepare, {recipients:,} recipients (median of "
        f"{repeats})", "recipient", median_run(our_prepares), median_run(floor_prepares),
        target=1.5,
        detail={**common, "ours_s": seconds(our_prepares), "floor_s": seconds(floor_prepares),
                "azurite_pauses_s": prepare_pauses, "floor_ops": PREPARE_FLOOR_OPS,
                "azurite_paused_s": {"ours": paused.totals("ours_prepare"),
                                     "floor": paused.totals("floor_prepare")},
                "ours_ops": PREPARE_OUR_OPS})
    fanout_figure = Figure(
        "7b", "campaign_fanout", f"campaign fan-out, {recipients:,} recipients (median of "
        f"{repeats})", "recipient", median_run(our_fanouts), median_run(floor_fanouts),
        target=1.5,
        detail={**common, "ours_s": seconds(our_fanouts), "floor_s": seconds(floor_fanouts),
                "send_request_s": [round(t["send_request_s"], 3) for t in timings],
                "picked_up_s": [round(t["picked_up_s"], 3) for t in timings],
                "ours_after_pickup_s": [round(r.elapsed_s - t["picked_up_s"], 3)
                                        for r, t in zip(our_fanouts, timings, strict=True)],
                "chunks": timings[0]["chunks"] if timings else None,
                "time_row": "time, send to last chunk", "azurite_pauses_s": fanout_pauses,
                "azurite_paused_s": {"ours": paused.totals("ours_fanout"),
                                     "floor": paused.totals("floor_fanout")},
                "floor_ops": FANOUT_FLOOR_OPS, "ours_ops": FANOUT_OUR_OPS})
    return [prepare_figure, fanout_figure], peak
