"""Figure 9: a campaign of millions: an audience file of N recipients uploaded in parts,
imported, prepared in the background and fanned out, each stage timed against its floor.

On a stack of its own (a fresh Azurite with Blobs, the ACS emulator, a host whose only queue
consumer is `campaign_fanout`, as figure 7's), in this order:

1. the floors, on a sample of S recipients (`--millions-floor`, default N/10, at least 20,000),
   the bare storage work of each stage done from the bench process with the same SDKs;
2. ours at N, timed per stage: 9a upload (4 MiB parts from 4 threads), 9b import (POST
   /api/audiences until `ready`), 9c prepare (POST /api/campaigns until `prepared`), 9d fan-out
   (the send until every chunk of the run is done; nothing dispatches);
3. a count pass of the same four stages at a second, smaller size M (N/5, at least 20,000) on a
   new host whose storage (Blobs, Tables, Queues) goes through a counting
   `localdev.storage_proxy`: storage requests per recipient per stage, and that host's peak RSS
   next to the first's, so "the host's peak independent of N" is shown by two numbers.

Every ~0.5 s a sampler reads VmRSS of every process (the hosts and their children, Azurite, the
emulator, the proxy, the bench) from /proc; the peak of each is reported per stage.

See bench/README.md, figure 9.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from azure.core.exceptions import (
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobBlock, BlobServiceClient

from bench.campaigns import (
    CAMPAIGN_HOST_DISABLED,
    FLOOR_CAMPAIGN_RECIPIENTS_TABLE,
    TEMPLATE,
    WRITE_POOL,
    CampaignFloor,
    render,
    snapshot_key,
)
from bench.floors import ENTITY_GROUP_LIMIT, FLOOR_MESSAGES_TABLE, _batch_id, _Clients
from bench.measure import CpuMeter, Run
from bench.scenarios import QUEUE_OPTIONS, Api, Figure, _services, log
from bench.stack import SENDER, Host, PauseWatch, Proxy, Stack
from localdev.storage_proxy import CountRow, total_requests
from sms_core.adapters.storage import OUTBOUND_QUEUE
from sms_core.bootstrap import Services
from sms_core.models.campaigns import MAX_UPLOAD_PART_BYTES
from sms_core.rules.phone import to_e164
from sms_core.use_cases.campaign_preparation import BUCKET_CLAIMS

FIRST_NAMES = ("Ann", "Bo", "Carla", "Dev", "Emil", "Fatima", "Goran", "Hana", "Ivo", "Jun")
PART_BYTES = MAX_UPLOAD_PART_BYTES  # 4 MiB, what POST /api/audiences/uploads answers
UPLOAD_THREADS = 4
MEMBER_BLOCK = 10_000  # members per partition (sms_core.adapters.audience_template_store)
RSS_EVERY_S = 0.5
POLL_S = 0.25
STAGE_DEADLINE_S = 1800.0
IDLE_WINDOW_S = 5.0
SETTLE_S = 4.0
MIN_RECIPIENTS = 20_000
RSS_TARGET_MIB = 300.0
FLOOR_AUDIENCE_TABLE = "BenchFloorAudienceMembers"
FLOOR_UPLOADS_CONTAINER = "bench-floor-uploads"
STAGES = ("upload", "import", "prepare", "fanout")
TITLES = {"upload": "upload, 4 MiB parts from 4 threads",
          "import": "import, POST /api/audiences until ready",
          "prepare": "prepare, POST /api/campaigns until prepared",
          "fanout": "fan-out, send until every chunk done"}
FLOOR_OPS = {
    "upload": "the same CSV bytes staged as 4 MiB blob blocks from 4 threads + 1 commit of "
              "the block list",
    "import": "the member rows (To, Attributes JSON) inserted with entity-group transactions "
              "of 100, 10,000 per partition (<audience>.<block>, 8-digit keys), one block at a "
              "time on a pool of 16",
    "prepare": "per chunk of 10,000 members (up to 16 at once, the host's batchSize): 1 "
               "query of the block's members + its snapshot rows (To, Verdict, Body, Segments, "
               "Encoding) inserted in transactions of 100 + one claim per row inserted into "
               "its crc32 bucket (N/20,000 buckets) in transactions of 100 (shared pool of "
               "16); then each bucket's claims read back with 1 query (16 at once)",
    "fanout": "figure 7's fan-out floor on the snapshot the prepare floor wrote: per 1,000-row "
              "chunk (16 at once) 1 snapshot range query + 2 opt-out range queries + 10 "
              "transactions of 100 messages into the block's batch + 10 queue sends + 1 "
              "marker upsert",
}


# -- the file -----------------------------------------------------------------------------------


def _area_codes(count: int) -> list[str]:
    """`count` NANP area codes whose +1 NPA 555 XXXX numbers `to_e164` accepts."""
    out = []
    for npa in range(201, 1000):
        code = str(npa)
        if code[1:] == "11" or code[1] == "9":
            continue
        try:
            if to_e164(f"+1{code}5550001") and to_e164(f"+1{code}5559999"):
                out.append(code)
        except Exception:  # rejected: try the next one
            continue
        if len(out) == count:
            return out
    raise RuntimeError(f"only {len(out)} area codes accept +1 NPA 555 XXXX numbers")


class Recipients:
    """Distinct fictional numbers +1 NPA 555 XXXX (lines 0001-9999), area code after area
    code, as `bench.measure.NumberPool` hands them out but with as many area codes as N needs;
    `offset` skips the numbers of an earlier file, so no number repeats within the figure."""

    def __init__(self, total: int) -> None:
        self._codes = _area_codes(math.ceil(total / 9999) + 1)

    def number(self, i: int) -> str:
        """The i-th number."""
        return f"+1{self._codes[i // 9999]}555{i % 9999 + 1:04d}"


def _name(i: int) -> str:
    return f"{FIRST_NAMES[i % len(FIRST_NAMES)]} {i}"


def csv_parts(numbers: Recipients, first: int, count: int,
              part_bytes: int = PART_BYTES) -> Iterator[bytes]:
    """The CSV (`phone,name` header, then `count` rows from number `first` on) as parts of
    exactly `part_bytes` (the last one shorter), cut anywhere: generated as it is read, never
    whole in memory."""
    buffer = bytearray(b"phone,name\n")
    for i in range(first, first + count):
        buffer += f"{numbers.number(i)},{_name(i - first)}\n".encode()
        if len(buffer) >= part_bytes:
            yield bytes(buffer[:part_bytes])
            del buffer[:part_bytes]
    if buffer:
        yield bytes(buffer)


def _upload_parts(parts: Iterator[bytes], put: Callable[[int, bytes], None]) -> tuple[int, int]:
    """Hand the parts to `put(n, data)` from UPLOAD_THREADS threads, at most that many parts in
    memory; returns (parts, bytes)."""
    lock = threading.Lock()
    source = enumerate(parts)
    sizes: list[int] = []

    def worker() -> None:
        while True:
            with lock:
                item = next(source, None)
            if item is None:
                return
            put(item[0], item[1])
            with lock:
                sizes.append(len(item[1]))

    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS, thread_name_prefix="upload") as pool:
        for f in [pool.submit(worker) for _ in range(UPLOAD_THREADS)]:
            f.result()
    return len(sizes), sum(sizes)


# -- memory ---------------------------------------------------------------------------------------


def _rss_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in status.splitlines()
                 if line.startswith("VmRSS:")), None)


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            kids = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for kid in kids:
            out.append(int(kid))
            out.extend(_descendants(int(kid)))
    return out


class RssSampler:
    """VmRSS of named processes and their descendants every RSS_EVERY_S, kept as the peak per
    process per stage (`stage()` names the current one)."""

    def __init__(self) -> None:
        self._roots: dict[str, int] = {}
        self._parents: set[str] = set()  # roots whose descendants are sampled too
        self._lock = threading.Lock()
        self._stage = "setup"
        self.peaks: dict[str, dict[str, int]] = {}  # stage -> process -> KiB
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def watch(self, name: str, pid: int, *, children: bool = False) -> None:
        """Sample `pid` (with `children`, its descendants too, as `name/<comm>`) from now
        on."""
        with self._lock:
            self._roots[name] = pid
            if children:
                self._parents.add(name)

    def forget(self, name: str) -> None:
        """Stop sampling `name`."""
        with self._lock:
            self._roots.pop(name, None)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Peaks recorded under `name` while the block runs (sampled once at its start)."""
        with self._lock:
            previous, self._stage = self._stage, name
        self.sample()
        try:
            yield
        finally:
            self.sample()
            with self._lock:
                self._stage = previous

    def sample(self) -> None:
        """One sample of every watched process."""
        with self._lock:
            roots, stage, parents = dict(self._roots), self._stage, set(self._parents)
        seen: dict[str, int] = {}
        for name, pid in roots.items():
            rss = _rss_kib(pid)
            if rss is None:
                continue
            seen[name] = rss
            for kid in (_descendants(pid) if name in parents else []):
                kid_rss = _rss_kib(kid)
                if kid_rss is not None:
                    try:
                        comm = Path(f"/proc/{kid}/comm").read_text().strip()
                    except OSError:
                        comm = str(kid)
                    seen[f"{name}/{comm}"] = kid_rss
        with self._lock:
            peaks = self.peaks.setdefault(stage, {})
            for name, rss in seen.items():
                peaks[name] = max(peaks.get(name, 0), rss)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(RSS_EVERY_S):
            self.sample()

    def peak(self, name: str, stages: Sequence[str] | None = None) -> int | None:
        """The peak of `name` over `stages` (all when None), KiB."""
        with self._lock:
            values = [p[name] for s, p in self.peaks.items()
                      if (stages is None or s in stages) and name in p]
        return max(values) if values else None


# -- the floors -----------------------------------------------------------------------------------


class MillionsFloor:
    """The bare storage work of each stage (see FLOOR_OPS), from the bench process."""

    def __init__(self, stack: Stack) -> None:
        clients = _Clients(stack.storage)
        for table in (FLOOR_AUDIENCE_TABLE, FLOOR_MESSAGES_TABLE):
            with contextlib.suppress(ResourceExistsError):
                clients.tables.create_table(table)
        self._blobs = BlobServiceClient.from_connection_string(stack.storage)
        with contextlib.suppress(ResourceExistsError):
            self._blobs.create_container(FLOOR_UPLOADS_CONTAINER)
        self._members = clients.table(FLOOR_AUDIENCE_TABLE)
        self._fanout = CampaignFloor(stack.storage, SENDER, QUEUE_OPTIONS.batch_size)
        self._snapshot = clients.table(FLOOR_CAMPAIGN_RECIPIENTS_TABLE)
        self._pool = ThreadPoolExecutor(max_workers=WRITE_POOL, thread_name_prefix="m-pool")
        self._jobs = ThreadPoolExecutor(max_workers=QUEUE_OPTIONS.batch_size,
                                        thread_name_prefix="m-job")

    def _insert(self, table: Any, entities: Sequence[dict[str, Any]]) -> None:
        """Entities of one partition, in transactions of 100 on the shared pool."""
        groups = [entities[i:i + ENTITY_GROUP_LIMIT]
                  for i in range(0, len(entities), ENTITY_GROUP_LIMIT)]

        def submit(group: Sequence[dict[str, Any]]) -> None:
            # As `table_batches.write_new_rows`: azure-core does not retry a dropped POST.
            for attempt in range(1, 5):
                try:
                    table.submit_transaction([("create", e) for e in group])
                    return
                except (ServiceRequestError, ServiceResponseError):
                    if attempt == 4:
                        raise
                    time.sleep(0.2 * attempt)

        list(self._pool.map(submit, groups))

    def upload(self, parts: Iterator[bytes]) -> None:
        """The file as blob blocks from 4 threads, then the block list committed."""
        blob = self._blobs.get_blob_client(FLOOR_UPLOADS_CONTAINER, "f" + _batch_id(
            datetime.now(UTC)))
        ids: dict[int, str] = {}

        def put(n: int, data: bytes) -> None:
            ids[n] = f"part-{n:06d}"
            blob.stage_block(ids[n], data, length=len(data))

        _upload_parts(parts, put)
        blob.commit_block_list([BlobBlock(block_id=ids[n]) for n in sorted(ids)])

    def import_members(self, audience: str, numbers: Recipients, first: int, count: int) -> None:
        """The member rows, a block of 10,000 at a time (as one import job writes them)."""
        for lo in range(0, count, MEMBER_BLOCK):
            pk = f"{audience}.{lo // MEMBER_BLOCK:05d}"
            self._insert(self._members, [
                {"PartitionKey": pk, "RowKey": f"{i:08d}", "To": numbers.number(first + i),
                 "Attributes": json.dumps({"name": _name(i)})}
                for i in range(lo, min(count, lo + MEMBER_BLOCK))])

    def prepare(self, audience: str, campaign: str, count: int) -> None:
        """Members read by block, snapshot rows and claims written, claims read back."""
        buckets = max(1, -(-count // BUCKET_CLAIMS))

        def chunk(n: int) -> int:
            rows = list(self._members.query_entities(
                "PartitionKey eq @pk", parameters={"pk": f"{audience}.{n:05d}"}))
            snapshot: list[dict[str, Any]] = []
            claims: dict[int, list[dict[str, Any]]] = {}
            for e in rows:
                i = int(e["RowKey"])
                pk, rk = snapshot_key(campaign, i)
                body = render(json.loads(e["Attributes"])["name"])
                snapshot.append({"PartitionKey": pk, "RowKey": rk, "To": e["To"],
                                 "Verdict": "valid", "Body": body, "Segments": 1,
                                 "Encoding": "GSM-7"})
                b = zlib.crc32(str(e["To"]).encode()) % buckets
                claims.setdefault(b, []).append({
                    "PartitionKey": f"{campaign}.n{b:05d}", "RowKey": f"{e['To']}|{i:08d}",
                    "Segments": 1, "Encoding": "GSM-7", "Ucs2": "", "Place": i % MEMBER_BLOCK})
            self._insert(self._snapshot, snapshot)
            for group in claims.values():
                self._insert(self._snapshot, group)
            return len(rows)

        # One job a member block: the default SMS_CAMPAIGN_PREPARE_CHUNK is one block.
        read = sum(self._jobs.map(chunk, range(-(-count // MEMBER_BLOCK))))
        claimed = sum(self._jobs.map(lambda b: len(list(self._snapshot.query_entities(
            "PartitionKey eq @pk", parameters={"pk": f"{campaign}.n{b:05d}"}))), range(buckets)))
        if read != count or claimed != count:
            raise RuntimeError(f"millions floor: read {read} members and {claimed} claims of "
                               f"{count}")

    def fan_out(self, campaign: str, count: int) -> None:
        """Figure 7's fan-out floor on the snapshot `prepare` wrote; its jobs cleared after."""
        self._fanout.fan_out(campaign, count)

    def clear_jobs(self) -> None:
        """Empty the floor's job queue (not timed)."""
        self._fanout.clear_jobs()

    def close(self) -> None:
        """Stop the pools."""
        self._fanout.close()
        self._jobs.shutdown(wait=True)
        self._pool.shutdown(wait=True)


# -- ours -----------------------------------------------------------------------------------------


@dataclass
class _Pass:
    """One run of the four stages of ours: a Run per stage and what it saw."""

    recipients: int
    runs: dict[str, Run] = field(default_factory=dict)
    counts: dict[str, list[CountRow]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    pauses: dict[str, list[float]] = field(default_factory=dict)  # Azurite's, per stage


def _deadline(what: str, started: float, host: Host) -> None:
    problem = host.child.problem()
    if problem is not None:
        raise RuntimeError(f"millions ({what}): {problem}")
    if time.monotonic() - started > STAGE_DEADLINE_S:
        raise RuntimeError(f"millions ({what}): not done after {STAGE_DEADLINE_S:.0f} s\n"
                           f"{host.child.log_tail()}")


class _Ours:
    """The four stages through a host's API; progress polled from storage directly (never
    through a proxy, so the bench's polls are not counted as ours)."""

    def __init__(self, host: Host, services: Services, cpu: CpuMeter, rss: RssSampler,
                 proxy: Proxy | None, pauses: PauseWatch) -> None:
        self.host, self.services, self.cpu, self.rss, self.proxy = host, services, cpu, rss, \
            proxy
        self.pauses = pauses
        self.api = Api(host.base_url, UPLOAD_THREADS)
        self.api.client.timeout = httpx.Timeout(300)
        self.api.client.headers.pop("content-type", None)

    def _stage(self, p: _Pass, name: str, body: Callable[[], None]) -> None:
        if self.proxy is not None:
            self.proxy.reset()
        mark = self.pauses.mark()
        with self.rss.stage(f"{name}@{p.recipients}"):
            before = self.cpu.snapshot()
            started = time.perf_counter()
            body()
            elapsed = time.perf_counter() - started
            used = CpuMeter.used(before, self.cpu.snapshot())
        if self.proxy is not None:
            p.counts[name] = self.proxy.snapshot(reset=True)
        p.runs[name] = Run(p.recipients, elapsed, cpu_s=used)
        p.pauses[name] = self.pauses.since(mark)
        log(f"millions: {name} of {p.recipients:,}: {elapsed:.1f} s, "
            f"{p.recipients / elapsed:,.0f} recipients/s")

    def run(self, numbers: Recipients, first: int, count: int, label: str) -> _Pass:
        """Upload, import, prepare and fan out `count` recipients (numbers from `first`)."""
        p = _Pass(count)
        state: dict[str, Any] = {}

        def upload() -> None:
            resp = self.api.client.post("/audiences/uploads")
            if resp.status_code != 201:
                raise RuntimeError(f"POST /api/audiences/uploads: {resp.status_code} "
                                   f"{resp.text[:300]}")
            upload_id = resp.json()["id"]

            def put(n: int, data: bytes) -> None:
                r = self.api.client.put(f"/audiences/uploads/{upload_id}/parts/{n}",
                                        content=data,
                                        headers={"content-type": "application/octet-stream"})
                if r.status_code != 200:
                    raise RuntimeError(f"PUT part {n}: {r.status_code} {r.text[:300]}")

            state["upload"] = upload_id
            state["parts"], state["bytes"] = _upload_parts(csv_parts(numbers, first, count),
                                                           put)

        def import_() -> None:
            resp = self.api.client.post("/audiences", json={
                "name": f"bench millions {label}", "uploadId": state["upload"],
                "parts": state["parts"]})
            if resp.status_code != 202:
                raise RuntimeError(f"POST /api/audiences: {resp.status_code} {resp.text[:300]}")
            audience_id = resp.json()["id"]
            started = time.monotonic()
            while (info := self.services.audiences.get(audience_id)).status == "importing":
                _deadline("import", started, self.host)
                time.sleep(POLL_S)
            if info.status != "ready" or info.size != count:
                raise RuntimeError(f"millions: audience {audience_id} is {info.status} with "
                                   f"{info.size} of {count} members: {info.error}")
            state["audience"] = audience_id

        def prepare() -> None:
            resp = self.api.client.post("/campaigns", json={
                "name": f"bench millions {label}", "from": SENDER, "template": TEMPLATE,
                "audience": {"audienceId": state["audience"]}})
            if resp.status_code != 202 or resp.json().get("status") != "preparing":
                raise RuntimeError(f"POST /api/campaigns: {resp.status_code} {resp.text[:300]}")
            body = resp.json()
            campaign_id = body["id"]
            started = time.monotonic()
            while (c := self.services.campaigns.get(campaign_id)).status == "preparing":
                _deadline("prepare", started, self.host)
                time.sleep(POLL_S)
            counts = (c.preview or {}).get("recipients", {})
            if c.status != "prepared" or counts.get("valid") != count:
                raise RuntimeError(f"millions: campaign {campaign_id} is {c.status}, "
                                   f"{counts}")
            state["campaign"], state["token"] = campaign_id, body["confirmationToken"]

        def fan_out() -> None:
            campaign_id = state["campaign"]
            resp = self.api.client.post(f"/campaigns/{campaign_id}/send",
                                        json={"confirmationToken": state["token"]})
            if resp.status_code != 202:
                raise RuntimeError(f"POST /api/campaigns/{campaign_id}/send: "
                                   f"{resp.status_code} {resp.text[:300]}")
            key = str(resp.json()["runs"][0]["id"])
            started = time.monotonic()
            while True:
                run = self.services.campaigns.run(campaign_id, key)
                if run is not None and len(run.done_chunks) >= run.chunks:
                    break
                _deadline("fan-out", started, self.host)
                time.sleep(POLL_S)
            state["run"] = run

        self._stage(p, "upload", upload)
        self._stage(p, "import", import_)
        self._stage(p, "prepare", prepare)
        self._stage(p, "fanout", fan_out)
        run = state["run"]
        queued = 0
        for batch in run.batches:
            queued += self.services.messages.run_counts(batch).get("queued", 0)
        outbound = self.services.storage.queue(OUTBOUND_QUEUE)
        jobs = int(outbound.get_queue_properties().approximate_message_count or 0)
        if queued != count:
            raise RuntimeError(f"millions: the run's batches count {queued} queued of {count}")
        outbound.clear_messages()
        p.info = {"parts": state["parts"], "bytes": state["bytes"], "chunks": run.chunks,
                  "batches": len(run.batches), "dispatch_jobs": jobs, "queued": queued,
                  "audience": state["audience"], "campaign": state["campaign"]}
        return p

    def close(self) -> None:
        """Close the client."""
        self.api.close()


# -- counting -------------------------------------------------------------------------------------


def _per_recipient(rows: list[CountRow], recipients: int, idle_per_s: float,
                   elapsed_s: float) -> dict[str, Any]:
    total = total_requests(rows)
    by: dict[str, int] = {}
    for r in rows:
        key = f"{r.key.service} {r.key.resource or '-'} {r.key.method} {r.key.kind}"
        by[key] = by.get(key, 0) + r.requests
    return {"requests": total, "per_recipient": round(total / recipients, 4),
            "net_per_recipient": round(max(0.0, total - idle_per_s * elapsed_s) / recipients,
                                       4),
            "by_request": {k: v for k, v in sorted(by.items(), key=lambda kv: -kv[1])}}


# -- the figure -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MillionsOptions:
    """Figure 9's settings (`python -m bench --millions*`)."""

    recipients: int = 1_000_000
    floor_recipients: int | None = None  # default max(20,000, N/10)
    count_recipients: int | None = None  # default max(20,000, N/5)


def _mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.0f}"


def millions(options: MillionsOptions) -> tuple[list[Figure], dict[str, int | None]]:
    """Figure 9 on a stack of its own; returns its four rows and the peak RSS (KiB)."""
    n = options.recipients
    s = min(n, options.floor_recipients or max(MIN_RECIPIENTS, n // 10))
    m = min(n, options.count_recipients or max(MIN_RECIPIENTS, n // 5))
    numbers = Recipients(n + m + s)
    rss = RssSampler()
    rss.watch("bench", os.getpid())
    log(f"millions: starting its own Azurite and emulator (N {n:,}, floor sample {s:,}, count "
        f"pass {m:,})")
    memory: dict[str, int | None] = {}
    with Stack() as stack:
        assert stack.pauses is not None and stack.azurite is not None
        pauses = stack.pauses
        mark = pauses.mark()
        rss.watch("azurite", stack.azurite.process.pid, children=True)
        if stack.emulator is not None:
            rss.watch("emulator", stack.emulator.process.pid)
        rss.start()
        services = _services(stack)
        floor = MillionsFloor(stack)
        floor_runs: dict[str, Run] = {}
        floor_pauses: dict[str, list[float]] = {}
        cpu = stack.cpu_meter()
        try:
            # -- the floors, on S recipients (numbers after ours and the count pass's).
            first = n + m
            tag = _batch_id(datetime.now(UTC))
            steps: list[tuple[str, Callable[[], None]]] = [
                ("upload", lambda: floor.upload(csv_parts(numbers, first, s))),
                ("import", lambda: floor.import_members("fa" + tag, numbers, first, s)),
                ("prepare", lambda: floor.prepare("fa" + tag, "fc" + tag, s)),
                ("fanout", lambda: floor.fan_out("fc" + tag, s))]
            for name, step in steps:
                log(f"millions: floor {name}, {s:,} recipients")
                floor_mark = pauses.mark()
                with rss.stage(f"floor {name}"):
                    before = cpu.snapshot()
                    started = time.perf_counter()
                    step()
                    elapsed = time.perf_counter() - started
                    floor_runs[name] = Run(s, elapsed, cpu_s=CpuMeter.used(before,
                                                                           cpu.snapshot()))
                floor_pauses[name] = pauses.since(floor_mark)
                log(f"millions: floor {name}: {elapsed:.1f} s, {s / elapsed:,.0f}/s")
            floor.clear_jobs()
        finally:
            floor.close()

        # -- ours at N, timed.
        log("millions: starting the function host (campaign_fanout the only consumer)")
        host = stack.start_host("func-host-millions", disabled=CAMPAIGN_HOST_DISABLED)
        rss.watch("host", host.child.process.pid, children=True)
        services.storage.queue(OUTBOUND_QUEUE).clear_messages()
        ours = _Ours(host, services, stack.cpu_meter(host), rss, None, pauses)
        try:
            timed = ours.run(numbers, 0, n, "timed")
        finally:
            ours.close()
        rss.sample()
        host_peak_n = host.child.peak_rss_kib()
        host.child.stop()
        rss.forget("host")

        # -- the count pass at M, through the proxy.
        proxy = stack.start_proxy("storage-proxy-millions", blobs=True)
        rss.watch("proxy", proxy.child.process.pid)
        host = stack.start_host("func-host-millions-count", disabled=CAMPAIGN_HOST_DISABLED,
                                storage=proxy.connection_string)
        rss.watch("host (count pass)", host.child.process.pid, children=True)
        ours = _Ours(host, services, stack.cpu_meter(host, proxy), rss, proxy, pauses)
        try:
            time.sleep(SETTLE_S)
            proxy.reset()
            time.sleep(IDLE_WINDOW_S)
            idle = total_requests(proxy.snapshot(reset=True)) / IDLE_WINDOW_S
            log(f"millions: count pass, {m:,} recipients through the storage proxy "
                f"(idle {idle:.1f} req/s)")
            counted = ours.run(numbers, n, m, "counted")
        finally:
            ours.close()
        rss.sample()
        host_peak_m = host.child.peak_rss_kib()
        host.child.stop()
        rss.stop()
        memory["function host (figure 9, N)"] = host_peak_n
        memory["function host (figure 9, count pass)"] = host_peak_m
        memory["storage proxy (figure 9)"] = proxy.child.peak_rss_kib()
        memory["ACS emulator (figure 9)"] = stack.emulator.peak_rss_kib() \
            if stack.emulator else None
        memory["Azurite (figure 9)"] = rss.peak("azurite")
        memory["bench process (figure 9)"] = rss.peak("bench")
        all_pauses = pauses.since(mark)

    requests = {name: _per_recipient(counted.counts[name], m, idle,
                                     counted.runs[name].elapsed_s) for name in STAGES}
    names = sorted({p for stage in rss.peaks.values() for p in stage})
    rss_table = {stage: {k: v for k, v in peaks.items()} for stage, peaks in rss.peaks.items()}
    host_stages_n = [f"{st}@{n}" for st in STAGES]
    host_stages_m = [f"{st}@{m}" for st in STAGES]
    host_sampled_n = rss.peak("host", host_stages_n)
    host_sampled_m = rss.peak("host (count pass)", host_stages_m)
    total_s = sum(r.elapsed_s for r in timed.runs.values())
    figures: list[Figure] = []
    for i, name in enumerate(STAGES):
        ours_run, floor_run = timed.runs[name], floor_runs[name]
        per = requests[name]
        stage_rss = rss.peaks.get(f"{name}@{n}", {})
        rows = [(f"   requests per recipient (count pass, {m:,})",
                 f"{per['net_per_recipient']:.4f} ({per['per_recipient']:.4f} - idle)", "", "",
                 ""),
                (f"   peak RSS MiB during the stage, host @{n:,} / @{m:,}",
                 f"{_mib(stage_rss.get('host'))} / "
                 f"{_mib(rss.peaks.get(f'{name}@{m}', {}).get('host (count pass)'))}",
                 f"azurite {_mib(stage_rss.get('azurite'))}", "",
                 f"host < {RSS_TARGET_MIB:.0f}")]
        detail: dict[str, Any] = {
            "recipients": n, "floor_recipients": s, "count_recipients": m,
            "floor_sample": f"floor measured on {s:,} recipients, compared as a rate",
            "floor_ops": FLOOR_OPS[name], "ours_s": round(ours_run.elapsed_s, 3),
            "floor_s": round(floor_run.elapsed_s, 3),
            "requests": requests[name], "count_pass_s": round(counted.runs[name].elapsed_s, 3),
            "count_pass_rate_per_s": round(counted.runs[name].rate, 1),
            "peak_rss_kib": {"ours": stage_rss, "ours_count_pass":
                             rss.peaks.get(f"{name}@{m}", {}),
                             "floor": rss.peaks.get(f"floor {name}", {})},
            # The table's note: Azurite's pauses during this stage's timed runs (ours at N and
            # its floor); the count pass's are in the JSON.
            "azurite_pauses_s": [*timed.pauses[name], *floor_pauses[name]],
            "azurite_pauses_by_side_s": {"ours": timed.pauses[name],
                                         "floor": floor_pauses[name],
                                         "count_pass": counted.pauses[name]},
            "_rows": rows}
        if i == 0:
            detail.update({
                "verified": {"timed": timed.info, "count_pass": counted.info},
                "azurite_pauses_whole_figure_s": all_pauses,
                "host_peak_rss_kib": {"N": host_peak_n, "count_pass": host_peak_m,
                                      "sampled_N": host_sampled_n,
                                      "sampled_count_pass": host_sampled_m},
                "rss_by_stage_kib": rss_table, "idle_requests_per_s": round(idle, 2),
                "total_s": round(total_s, 1),
                "_lines": _lines(n, m, s, timed, counted, floor_runs, requests, rss, names,
                                 host_peak_n, host_peak_m, idle)})
        figures.append(Figure(f"9{'abcd'[i]}", f"millions_{name}",
                              f"{TITLES[name]}, {n:,} recipients", "recipient", ours_run,
                              floor_run, detail=detail))
    return figures, memory


def _lines(n: int, m: int, s: int, timed: _Pass, counted: _Pass, floors: dict[str, Run],
           requests: dict[str, dict[str, Any]], rss: RssSampler, names: list[str],
           host_n: int | None, host_m: int | None, idle: float) -> list[str]:
    total = sum(r.elapsed_s for r in timed.runs.values())
    out = ["", f"figure 9, a campaign of {n:,} recipients ({timed.info['parts']} parts, "
               f"{timed.info['bytes'] / 2**20:.1f} MiB, {timed.info['chunks']} fan-out chunks, "
               f"{timed.info['batches']} message batches); floors on {s:,} recipients, "
               f"compared as rates; requests counted in a pass of {m:,} through "
               "localdev.storage_proxy (the timed pass without it):"]
    for name in STAGES:
        r, f = timed.runs[name], floors[name]
        out.append(f"  {name:8s} ours {r.elapsed_s:7.1f} s = {r.rate:8,.0f}/s   floor "
                   f"{f.rate:8,.0f}/s   ratio {f.rate / r.rate if r.rate else 0:5.2f}x   "
                   f"requests/recipient {requests[name]['net_per_recipient']:.4f}   "
                   f"count pass {counted.runs[name].rate:,.0f}/s")
    out.append(f"  all stages {total:.1f} s; at these rates 1,000,000 recipients take about "
               f"{total * 1_000_000 / n / 60:.0f} min (linear; Azurite's whole-table scans "
               "grow with the tables)")
    out.append(f"  host peak RSS (VmHWM): {_mib(host_n)} MiB at {n:,}, {_mib(host_m)} MiB at "
               f"{m:,} (target < {RSS_TARGET_MIB:.0f} MiB and independent of N); idle "
               f"background {idle:.1f} req/s subtracted")
    stages = [*(f"floor {x}" for x in STAGES), *(f"{x}@{n}" for x in STAGES),
              *(f"{x}@{m}" for x in STAGES)]
    out.append("  peak RSS MiB by stage: " + "; ".join(
        f"{st}: " + ", ".join(f"{p} {_mib(v)}" for p, v in sorted(rss.peaks.get(st, {}).items()))
        for st in stages if st in rss.peaks))
    for name in STAGES:
        top = list(requests[name]["by_request"].items())[:6]
        out.append(f"  {name} requests per recipient: " + ", ".join(
            f"{k} {v / m:.4f}" for k, v in top))
    return out
