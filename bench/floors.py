"""Floors: the bare operations a figure's work needs, done directly with the same SDKs.

A floor is what a minimal implementation could not avoid: the same requests to the same Azurite
(and emulator), through clients built the way `sms_core.adapters.storage` and the function host
build theirs, at the same concurrency, with no HTTP front end, no validation and no bookkeeping. A
figure's ratio is floor rate / our rate: 1.0x means our code adds nothing measurable.

The floors write to their own tables and queues (`BenchFloor*`, `bench-floor-*`) so nothing of
ours consumes or counts their rows; the send floors read opt-outs from the real `OptOuts` table
(they never write it), the inbound floor reads and writes its own `BenchFloorOptOuts`. The floors
that send (figures 1, 2 and 5b) call the same emulator through `azure.communication.sms.SmsClient`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import requests
from azure.communication.sms import SmsClient
from azure.core import MatchConditions
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import (
    EdmType,
    EntityProperty,
    TableClient,
    TableServiceClient,
    UpdateMode,
)
from azure.storage.queue import (
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from sms_core.concurrency import POOL_SIZE as SMS_CORE_POOL_SIZE
from sms_core.models.messages import report_tag
from sms_core.models.records import OUTBOX_CHUNK
from sms_core.rules.analytics import COUNTERS

OPTOUTS_TABLE = "OptOuts"  # the real one (sms_core.adapters.storage.OPTOUTS_TABLE)
GLOBAL_PARTITION = "global"
FLOOR_MESSAGES_TABLE = "BenchFloorMessages"
FLOOR_INBOUND_TABLE = "BenchFloorInbound"
FLOOR_CONVERSATIONS_TABLE = "BenchFloorConversations"
FLOOR_OPTOUTS_TABLE = "BenchFloorOptOuts"
FLOOR_OPTOUT_HISTORY_TABLE = "BenchFloorOptOutHistory"
FLOOR_IDEMPOTENCY_TABLE = "BenchFloorIdempotency"
FLOOR_PACING_TABLE = "BenchFloorPacing"
FLOOR_ANALYTICS_TABLE = "BenchFloorAnalytics"
FLOOR_TABLES = (OPTOUTS_TABLE, FLOOR_MESSAGES_TABLE, FLOOR_INBOUND_TABLE,
                FLOOR_CONVERSATIONS_TABLE, FLOOR_OPTOUTS_TABLE, FLOOR_OPTOUT_HISTORY_TABLE,
                FLOOR_IDEMPOTENCY_TABLE, FLOOR_PACING_TABLE, FLOOR_ANALYTICS_TABLE)
FLOOR_ACCEPT_QUEUE = "bench-floor-outbound"
FLOOR_DISPATCH_QUEUE = "bench-floor-dispatch"
FLOOR_EVENTS_QUEUE = "bench-floor-events"
FLOOR_REPORTS_QUEUE = "bench-floor-reports"
FLOOR_QUEUES = (FLOOR_ACCEPT_QUEUE, FLOOR_DISPATCH_QUEUE, FLOOR_EVENTS_QUEUE,
                FLOOR_REPORTS_QUEUE)
ENTITY_GROUP_LIMIT = 100
POOL_SIZE = 8  # the floors' untimed preparation
# Figure 3's writes and queue sends run on a pool of sms_core.concurrency's size, as ours do
# (MessageStore.create_batch and JobQueue.enqueue_many share that pool).
WRITE_POOL_SIZE = SMS_CORE_POOL_SIZE
_RANGE_FILTER = "PartitionKey eq @pk and RowKey ge @lo and RowKey le @hi and OptedOut eq true"


def _batch_id(now: datetime) -> str:
    return now.strftime("%Y%m%d%H%M%S") + secrets.token_hex(6)


def message_entity(batch: str, index: int, sender: str, to: str, body: str,
                   now: datetime) -> dict[str, Any]:
    """A Messages-table entity of the same shape (properties and types) as a queued message."""
    return {"PartitionKey": batch, "RowKey": f"{index:05d}", "Kind": "message", "From": sender,
            "To": to, "Body": body, "Status": "queued", "InitialStatus": "queued",
            "Segments": 1, "Encoding": "GSM-7", "CreatedAt": now, "UpdatedAt": now,
            "DeliveryReport": True, "Attempts": 0, "Seq": 0}


def _job(batch: str, indices: list[int], **extra: Any) -> str:
    return json.dumps({"v": 1, "batch": batch, "indices": indices, **extra},
                      separators=(",", ":"))


class _Clients:
    """Table and queue clients built like sms_core.adapters.storage.StorageClients builds them: one
    service client per kind, table clients sharing its transport, base64 queue messages."""

    def __init__(self, storage: str) -> None:
        self.tables = TableServiceClient.from_connection_string(storage)
        self.queues = QueueServiceClient.from_connection_string(storage)
        for name in FLOOR_TABLES:
            with contextlib.suppress(ResourceExistsError):
                self.tables.create_table(name)
        for queue in FLOOR_QUEUES:
            with contextlib.suppress(ResourceExistsError):
                self.queues.create_queue(queue)

    def table(self, name: str) -> TableClient:
        return self.tables.get_table_client(name)

    def queue(self, name: str) -> QueueClient:
        return self.queues.get_queue_client(name, message_encode_policy=TextBase64EncodePolicy(),
                                            message_decode_policy=TextBase64DecodePolicy())


def _point_reads(optouts: TableClient, sender: str, to: str) -> None:
    """The opt-out check of one recipient: a point read in the sender's and the global partition
    (404 when the pair never changed, which is the common case)."""
    for partition in (sender, GLOBAL_PARTITION):
        with contextlib.suppress(ResourceNotFoundError):
            optouts.get_entity(partition, to, select=["OptedOut"])


class _Pacing:
    """A sender's pacing row (SenderPacing-shaped: one entity per sender, a `Tat`), moved with
    one conditional write per send: writes to one row build on each other's ETag, so a process
    serialises them and keeps the last ETag (as `sms_core.adapters.sender_pacer` does); only
    the first write, or one that lost a race (412), reads the row first."""

    def __init__(self, table: TableClient, interval_s: float) -> None:
        self._table = table
        self._interval = interval_s
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, str]] = {}  # sender -> (Tat, ETag)

    def reserve(self, sender: str, *, priority: bool = False) -> float:
        """Take one slot (priority: now); the epoch second it may be sent."""
        with self._lock:
            for _ in range(50):
                now = time.time()
                try:
                    known = self._known.get(sender) or self._read(sender)
                    if known is None:  # a sender's first message
                        tat = now + self._interval
                        meta = self._table.create_entity(
                            {"PartitionKey": sender, "RowKey": "pace", "Tat": tat})
                        self._known[sender] = (tat, str(meta["etag"]))
                        return now
                    tat, etag = known
                    start = now if priority else max(tat, now)
                    new_tat = max(tat, now) + self._interval
                    meta = self._table.update_entity(
                        {"PartitionKey": sender, "RowKey": "pace", "Tat": new_tat},
                        mode=UpdateMode.REPLACE, etag=etag,
                        match_condition=MatchConditions.IfNotModified)
                except (ResourceModifiedError, ResourceExistsError):
                    self._known.pop(sender, None)  # another writer moved it: read again
                    continue
                self._known[sender] = (new_tat, str(meta["etag"]))
                return start
        raise RuntimeError(f"pacing floor: the row of {sender} kept changing")

    def _read(self, sender: str) -> tuple[float, str] | None:
        try:
            entity = self._table.get_entity(sender, "pace")
        except ResourceNotFoundError:
            return None
        return float(entity["Tat"]), str(entity.metadata["etag"])


class _Counters:
    """Analytics-shaped counting: per fact one entity-group transaction of its ledger-row insert
    and its counter row replaced under If-Match. Each thread has a counter row of its own and
    keeps its sums and ETag, so no write reads first and none conflicts (the first write of a
    thread inserts its row)."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._local = threading.local()

    def record(self, day: str, sender: str, fact_id: str, counts: dict[str, int]) -> None:
        """Count one fact."""
        local = self._local
        if getattr(local, "row", None) is None or local.day != day:
            local.row, local.day = f"c|{sender}|-|floor-{secrets.token_hex(4)}", day
            local.values, local.etag = dict.fromkeys(COUNTERS, 0), None
        values = dict(local.values)
        for name, value in counts.items():
            values[name] += value
        counter: dict[str, Any] = {"PartitionKey": day, "RowKey": local.row, "Sender": sender}
        counter.update({name: EntityProperty(values[name], EdmType.INT64) for name in COUNTERS})
        ops: list[Any] = [("create", {"PartitionKey": day, "RowKey": f"l|{fact_id}"})]
        if local.etag is None:
            ops.append(("create", counter))
        else:
            ops.append(("update", counter, {"mode": UpdateMode.REPLACE, "etag": local.etag,
                                            "match_condition": MatchConditions.IfNotModified}))
        results = self._table.submit_transaction(ops)
        local.values, local.etag = values, results[-1]["etag"]


def outbox_entity(batch: str, indices: Sequence[int], chunk: int, now: datetime
                  ) -> dict[str, Any]:
    """An outbox row of the same shape as ours (`~outbox.<chunk>`, listing the pending ones)."""
    return {"PartitionKey": batch, "RowKey": f"~outbox.{chunk:05d}", "Kind": "outbox",
            "Indices": json.dumps(list(indices)), "CreatedAt": now}


def _record_conversation(table: Any, ours: str, their: str, message_id: str, text: str,
                         direction: str, at: datetime, **extra: str) -> None:
    """One message's conversation row, listing row and person row in the sender's partition:
    one entity-group transaction, no read (as `ConversationStore`)."""
    inverted = f"{10**17 - int(at.timestamp() * 1_000_000):018d}"
    pk = f"~index|{ours}"
    replace = {"mode": UpdateMode.REPLACE}
    table.submit_transaction([
        ("upsert", {"PartitionKey": pk,
                    "RowKey": f"c|{their}|{_stamp(at)}|{direction[:3]}|{message_id}",
                    "Direction": direction, "MessageId": message_id, "Text": text, "At": at,
                    **extra}, replace),
        ("upsert", {"PartitionKey": pk, "RowKey": f"t|{inverted}|{their}", "Their": their,
                    "LastMessage": text, "LastDirection": direction, "LastAt": at,
                    "LastMessageId": message_id}, replace),
        ("upsert", {"PartitionKey": pk, "RowKey": f"p|{their}|{inverted}"}, replace)])


class _InlineSend:
    """What sending one stored-as-accepted message from the accepting request needs, in the
    order our `accept_send` -> `send_claimed` does it: the pacing write; one insert of the
    message (with its repeatability claim, and marked as its own outbox entry); the ACS
    call (through `SmsClient`, with the tag naming batch and index, delivery report on; sent
    promptly, it needs no AwaitingReports row); the conversation rows' transaction (the
    message's row, its listing and person rows, as `ConversationStore`); the message
    replaced under If-Match (the ETag from the insert) with its history entry on the row
    and the outbox mark off; then the analytics fact (a transaction) and the `sms.status`
    event (a queue send). 6 storage requests and 1 ACS call. `sent` counts the messages
    the emulator took."""

    def __init__(self, clients: _Clients, acs_endpoint: str, acs_key: str,
                 rate_per_minute: int) -> None:
        self._messages = clients.table(FLOOR_MESSAGES_TABLE)
        self._pacing = _Pacing(clients.table(FLOOR_PACING_TABLE), 60.0 / rate_per_minute)
        self._conversations = clients.table(FLOOR_CONVERSATIONS_TABLE)
        self._counters = _Counters(clients.table(FLOOR_ANALYTICS_TABLE))
        self._events = clients.queue(FLOOR_EVENTS_QUEUE)
        # Typed as Any: the SDK's type comments on send() confuse mypy.
        self._sms: Any = SmsClient(acs_endpoint, AzureKeyCredential(acs_key))
        self._lock = threading.Lock()
        self.sent = 0

    def send(self, sender: str, to: str, body: str, *, tag: str | None = None,
             priority: bool = False, batch: str | None = None) -> None:
        """Store, send and record one message to `to` in `batch` (default: a fresh one)."""
        self._pacing.reserve(sender, priority=priority)
        now = datetime.now(UTC)
        batch = batch or _batch_id(now)
        message_id = f"{batch}-00000"
        message = message_entity(batch, 0, sender, to, body, now)
        if tag is not None:
            message["Tag"] = tag
        message.update({"RepeatabilityId": str(uuid.uuid5(uuid.NAMESPACE_URL, message_id)),
                        "FirstSent": now.strftime("%a, %d %b %Y %H:%M:%S GMT"),
                        "FirstSentAt": now, "Outbox": True})
        etag = self._messages.create_entity(message)["etag"]
        [result] = self._sms.send(sender, to, body, enable_delivery_report=True,
                                  tag=report_tag(batch, [0], tag))
        if not result.successful:
            raise RuntimeError(f"the emulator refused {to}: {result.error_message}")
        with self._lock:
            self.sent += 1
        sent_at = datetime.now(UTC)
        _record_conversation(self._conversations, sender, to, message_id, body, "outbound", now,
                             **({"Tag": tag} if tag is not None else {}))
        message.update({"Status": "sent", "Seq": 1, "ProviderMessageId": result.message_id,
                        "SentAt": sent_at, "UpdatedAt": sent_at, "Outbox": False,
                        "History": json.dumps([{"n": 1, "s": "sent", "at": sent_at.isoformat(),
                                                "d": "accepted by ACS"}],
                                              separators=(",", ":"))})
        self._messages.update_entity(message, mode=UpdateMode.REPLACE, etag=etag,
                                     match_condition=MatchConditions.IfNotModified)
        fact_id = f"status-{message_id}-sent"
        self._counters.record(sent_at.date().isoformat(), sender, fact_id,
                              {"sent": 1, "segments": 1})
        self._events.send_message(_event_text("sms.status", fact_id, sent_at, {
            "id": message_id, "status": "sent", "from": sender, "to": to, "tag": tag,
            "providerMessageId": result.message_id, "error": None,
            "at": sent_at.isoformat()}))

    def close(self) -> None:
        """Close the ACS client's connections."""
        self._sms._sms_service_client.close()


class AcceptFloor:
    """What accepting a send needs from storage (and, for a single send, sending it inline),
    and nothing else."""

    def __init__(self, storage: str, sender: str, body: str, acs_endpoint: str, acs_key: str,
                 rate_per_minute: int) -> None:
        clients = _Clients(storage)
        self._sender = sender
        self._body = body
        self._optouts = clients.table(OPTOUTS_TABLE)
        self._messages = clients.table(FLOOR_MESSAGES_TABLE)
        self._queue = clients.queue(FLOOR_ACCEPT_QUEUE)
        self._inline = _InlineSend(clients, acs_endpoint, acs_key, rate_per_minute)
        self._pool = ThreadPoolExecutor(max_workers=WRITE_POOL_SIZE,
                                        thread_name_prefix="floor-pool")

    @property
    def sent(self) -> int:
        """Messages the emulator accepted from `accept_one`."""
        return self._inline.sent

    def accept_one(self, to: str) -> None:
        """One recipient, sent inline: 2 opt-out point reads, then `_InlineSend.send` (a pacing
        write, the message's insert, the conversation rows' transaction, the `sent` replace,
        an analytics transaction, a queue send: 6 requests, 2 of them transactions, and 1 ACS
        call)."""
        _point_reads(self._optouts, self._sender, to)
        self._inline.send(self._sender, to, self._body)

    def accept_many(self, recipients: Sequence[str]) -> None:
        """Many recipients, queued: 2 opt-out range queries, transactions of 99 messages and
        their outbox row, one job per 100 messages, then one transaction deleting the outbox
        rows; the writes and sends on a pool of sms_core's size, as ours."""
        now = datetime.now(UTC)
        batch = _batch_id(now)
        for partition in (self._sender, GLOBAL_PARTITION):
            list(self._optouts.query_entities(
                _RANGE_FILTER, select=["RowKey"],
                parameters={"pk": partition, "lo": min(recipients), "hi": max(recipients)}))
        entities = [message_entity(batch, i, self._sender, to, self._body, now)
                    for i, to in enumerate(recipients)]
        chunks = [(c, entities[i:i + OUTBOX_CHUNK])
                  for c, i in enumerate(range(0, len(entities), OUTBOX_CHUNK))]
        list(self._pool.map(
            lambda chunk: self._messages.submit_transaction(
                [("create", e) for e in chunk[1]]
                + [("create", outbox_entity(batch, [int(e["RowKey"]) for e in chunk[1]],
                                            chunk[0], now))]),
            chunks))
        jobs = [_job(batch, list(range(i, min(i + ENTITY_GROUP_LIMIT, len(recipients)))))
                for i in range(0, len(recipients), ENTITY_GROUP_LIMIT)]
        list(self._pool.map(self._queue.send_message, jobs))
        for start in range(0, len(chunks), ENTITY_GROUP_LIMIT):
            self._messages.submit_transaction(
                [("delete", {"PartitionKey": batch, "RowKey": f"~outbox.{c:05d}"})
                 for c, _ in chunks[start:start + ENTITY_GROUP_LIMIT]])

    def close(self) -> None:
        """Stop the pool, close the ACS client."""
        self._pool.shutdown(wait=True)
        self._inline.close()


def _stamp(at: datetime) -> str:
    return at.strftime("%Y%m%dT%H%M%S.%fZ")


def _event_text(event_type: str, event_id: str, at: datetime, data: dict[str, Any]) -> str:
    """An app event as `sms-events` carries it (the envelope of sms_core.adapters.app_events)."""
    return json.dumps({"id": event_id, "type": event_type,
                       "time": at.isoformat().replace("+00:00", "Z"), "data": data},
                      separators=(",", ":"))


class InboundFloor:
    """What processing one inbound SMS needs from storage, and nothing else.

    An ordinary text (`text_one`): the claim insert (InboundMessages-like), the conversation
    rows' transaction (Conversations-like: the message's row, its listing and person rows),
    the `sms.received` event on a queue, the merge that marks the claim done: 4 requests. A
    STOP (`stop_one`) adds the opt-out (a point read of the state, a history insert, a state
    upsert), the `optout.changed` event, and the confirmation reply sent from the request as
    ours is: an idempotency insert, the 6 requests and the ACS call of `_InlineSend.send`
    (paced with priority, no opt-out reads: the confirmation is exempt), the idempotency merge: 16
    requests and 1 ACS call. Run in the order our path runs them. `sent`
    counts the replies the emulator took.
    """

    def __init__(self, storage: str, ours: str, reply: str, acs_endpoint: str, acs_key: str,
                 rate_per_minute: int) -> None:
        clients = _Clients(storage)
        self._ours = ours
        self._reply = reply
        self._inbound = clients.table(FLOOR_INBOUND_TABLE)
        self._conversations = clients.table(FLOOR_CONVERSATIONS_TABLE)
        self._optouts = clients.table(FLOOR_OPTOUTS_TABLE)
        self._history = clients.table(FLOOR_OPTOUT_HISTORY_TABLE)
        self._idempotency = clients.table(FLOOR_IDEMPOTENCY_TABLE)
        self._events = clients.queue(FLOOR_EVENTS_QUEUE)
        self._inline = _InlineSend(clients, acs_endpoint, acs_key, rate_per_minute)

    @property
    def sent(self) -> int:
        """Confirmation replies the emulator accepted from `stop_one`."""
        return self._inline.sent

    def text_one(self, their: str, text: str = "See you at 5") -> None:
        """One ordinary inbound text: 4 storage requests."""
        self._process(their, text, keyword=None)

    def stop_one(self, their: str, text: str = "STOP") -> None:
        """One inbound STOP from a number that never opted out: 16 storage requests and the
        reply's ACS call."""
        self._process(their, text, keyword="STOP")

    def _process(self, their: str, text: str, keyword: str | None) -> None:
        now = datetime.now(UTC)
        inbound_id = f"Incoming_{now:%Y%m%d%H%M%S}{uuid.uuid4()}"
        self._inbound.create_entity({"PartitionKey": inbound_id, "RowKey": "", "Done": False,
                                     "SeenAt": now, "From": their, "To": self._ours,
                                     "Text": text, "ReceivedAt": now})
        _record_conversation(self._conversations, self._ours, their, inbound_id, text,
                             "inbound", now, **({"Keyword": keyword} if keyword else {}))
        if keyword:
            self._opt_out_and_reply(their, text, keyword, inbound_id, now)
        self._events.send_message(_event_text("sms.received", f"received-{inbound_id}", now, {
            "id": inbound_id, "from": their, "to": self._ours, "message": text,
            "keyword": keyword, "keywordKind": "opt_out" if keyword else None,
            "receivedAt": now.isoformat()}))
        self._inbound.update_entity({"PartitionKey": inbound_id, "RowKey": "", "Done": True},
                                    mode=UpdateMode.MERGE)

    def _opt_out_and_reply(self, their: str, text: str, keyword: str, inbound_id: str,
                           now: datetime) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self._optouts.get_entity(self._ours, their)
        self._history.create_entity({
            "PartitionKey": f"{self._ours}|{their}",
            "RowKey": f"{_stamp(now)}-{secrets.token_hex(6)}", "Action": "opt-out", "At": now,
            "Source": "keyword", "Changed": True, "Keyword": keyword, "Text": text,
            "InboundMessageId": inbound_id})
        self._optouts.upsert_entity({"PartitionKey": self._ours, "RowKey": their,
                                     "OptedOut": True, "UpdatedAt": now, "Source": "keyword",
                                     "Keyword": keyword}, mode=UpdateMode.REPLACE)
        self._events.send_message(_event_text("optout.changed", f"optout-{inbound_id}", now, {
            "from": self._ours, "to": their, "optedOut": True, "scope": "sender",
            "source": "keyword", "keyword": keyword, "inboundMessageId": inbound_id,
            "at": now.isoformat()}))
        key = hashlib.sha256(f"reply-{inbound_id}".encode()).hexdigest()
        batch = _batch_id(now)
        self._idempotency.create_entity({"PartitionKey": key, "RowKey": "",
                                         "Fingerprint": hashlib.sha256(text.encode()).hexdigest(),
                                         "Batch": batch, "Completed": False, "CreatedAt": now})
        self._inline.send(self._ours, their, self._reply, tag="auto-reply", priority=True,
                          batch=batch)
        self._idempotency.update_entity({"PartitionKey": key, "RowKey": "", "Completed": True},
                                        mode=UpdateMode.MERGE)

    def close(self) -> None:
        """Close the ACS client's connections."""
        self._inline.close()


class _Progress:
    """Counters shared by a floor's fetch loop and its workers."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.running = 0
        self.done = 0
        self.errors: list[BaseException] = []


def _consumer_session(batch_size: int, new_batch_threshold: int) -> requests.Session:
    """A requests session like the function host's queue clients share: one pooled connection
    per worker (batchSize + newBatchThreshold), plus two."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=4, pool_maxsize=batch_size + new_batch_threshold + 2)
    session.mount("http://", adapter)
    return session


def _consumer(storage: str, queue: str, session: requests.Session) -> QueueClient:
    """A queue consumer built like the host's, on `session`, decoding base64 text."""
    return QueueClient.from_connection_string(
        storage, queue, message_decode_policy=TextBase64DecodePolicy(),
        transport=RequestsTransport(session=session, session_owner=False))


def _drain(consumer: QueueClient, handle: Callable[[Any], None], total: int, batch_size: int,
           new_batch_threshold: int, deadline_s: float, what: str) -> None:
    """Consume `total` messages the way the function host's queue trigger does: receive up to
    `batch_size` at a time, fetch again once at most `new_batch_threshold` run, on
    `batch_size + new_batch_threshold` worker threads; `handle` deletes each message itself.
    The first failure is raised."""
    progress = _Progress()
    end = time.monotonic() + deadline_s

    def work(msg: Any) -> None:
        try:
            handle(msg)
        except BaseException as exc:
            with progress.cond:
                progress.errors.append(exc)
        finally:
            with progress.cond:
                progress.running -= 1
                progress.done += 1
                progress.cond.notify_all()

    workers = batch_size + new_batch_threshold
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="floor-worker") as pool:
        while True:
            with progress.cond:
                while progress.running > new_batch_threshold and not progress.errors:
                    progress.cond.wait(0.5)
                if progress.errors:
                    raise progress.errors[0]
                if progress.done >= total:
                    return
            if time.monotonic() > end:
                raise RuntimeError(f"{what}: {progress.done} of {total} done after "
                                   f"{deadline_s:.0f} s")
            page = consumer.receive_messages(messages_per_page=batch_size,
                                             visibility_timeout=600).by_page()
            messages = list(next(page, []))
            if not messages:
                time.sleep(0.01)  # the rest is in flight
                continue
            with progress.cond:
                progress.running += len(messages)
            for msg in messages:
                pool.submit(work, msg)


class DispatchFloor:
    """What sending one queued message needs: a queue consumer shaped like the function host's
    (batches of `batch_size`, a new fetch once at most `new_batch_threshold` run), and per
    message 2 opt-out point reads, one ACS send through the real SDK,
    one entity update and the queue delete."""

    def __init__(self, storage: str, acs_endpoint: str, acs_key: str, sender: str, body: str,
                 *, batch_size: int = 16, new_batch_threshold: int = 8) -> None:
        clients = _Clients(storage)
        self._storage = storage
        self._sender = sender
        self._body = body
        self._batch_size = batch_size
        self._threshold = new_batch_threshold
        self._optouts = clients.table(OPTOUTS_TABLE)
        self._messages = clients.table(FLOOR_MESSAGES_TABLE)
        self._producer = clients.queue(FLOOR_DISPATCH_QUEUE)
        # The host's queue clients share a requests session with one connection per worker.
        self._session = _consumer_session(batch_size, new_batch_threshold)
        self._consumer = _consumer(storage, FLOOR_DISPATCH_QUEUE, self._session)
        # Typed as Any: the SDK's type comments on send() confuse mypy.
        self._sms: Any = SmsClient(acs_endpoint, AzureKeyCredential(acs_key))

    def prepare(self, recipients: Sequence[str]) -> None:
        """Store one queued message per recipient (each its own batch, as single sends are) and
        put one job per message on the floor queue. Not timed."""
        now = datetime.now(UTC)
        batches = [_batch_id(now) for _ in recipients]

        def store(item: tuple[str, str]) -> None:
            batch, to = item
            self._messages.create_entity(message_entity(batch, 0, self._sender, to,
                                                        self._body, now))
            self._producer.send_message(_job(batch, [0], to=to))

        with ThreadPoolExecutor(max_workers=POOL_SIZE) as pool:
            list(pool.map(store, zip(batches, recipients, strict=True)))

    def _send_one(self, msg: Any) -> None:
        job = json.loads(msg.content)
        batch, to = str(job["batch"]), str(job["to"])
        _point_reads(self._optouts, self._sender, to)
        [result] = self._sms.send(self._sender, to, self._body, enable_delivery_report=True)
        if not result.successful:
            raise RuntimeError(f"the emulator refused {to}: {result.error_message}")
        now = datetime.now(UTC)
        self._messages.update_entity({"PartitionKey": batch, "RowKey": "00000",
                                      "Status": "sent", "ProviderMessageId": result.message_id,
                                      "SentAt": now, "UpdatedAt": now}, mode=UpdateMode.MERGE)
        self._consumer.delete_message(msg)

    def drain(self, total: int, deadline_s: float = 180.0) -> None:
        """Consume and send `total` messages from the floor queue, then return."""
        _drain(self._consumer, self._send_one, total, self._batch_size, self._threshold,
               deadline_s, "dispatch floor")

    def close(self) -> None:
        """Close the consumer's session."""
        self._session.close()


class DeliveryReportFloor:
    """What applying one delivery report needs from storage, and nothing else.

    A consumer shaped like the function host's queue trigger (receive `batch_size` at a time,
    fetch again at `new_batch_threshold` running, that many workers), and per report: one
    partition range query that finds and loads the message (the batch and index range from the
    report's `Tag`, filtered on its `to`), the message replaced under If-Match (its ETag from
    the query) with the history entry added to its row, the `sms.status`
    event on a queue, the queue delete: 4 requests plus a sixteenth of a receive.
    """

    def __init__(self, storage: str, sender: str, body: str, *, batch_size: int = 16,
                 new_batch_threshold: int = 8) -> None:
        clients = _Clients(storage)
        self._sender = sender
        self._body = body
        self._batch_size = batch_size
        self._threshold = new_batch_threshold
        self._messages = clients.table(FLOOR_MESSAGES_TABLE)
        self._events = clients.queue(FLOOR_EVENTS_QUEUE)
        # Event Grid's queue texts are written as they are (already base64), like ours.
        self.producer = QueueClient.from_connection_string(storage, FLOOR_REPORTS_QUEUE)
        self._session = _consumer_session(batch_size, new_batch_threshold)
        self._consumer = _consumer(storage, FLOOR_REPORTS_QUEUE, self._session)

    def prepare(self, messages: Sequence[tuple[str, str]], tag: str) -> list[str]:
        """Store one `sent` message per (recipient, provider id), each its own batch and shaped
        like a message our dispatcher sent; returns, in the same order, the ACS tag each was
        sent with (`sms_core.models.messages.report_tag`), which its report echoes. Not
        timed."""
        now = datetime.now(UTC)
        first_sent = now.strftime("%a, %d %b %Y %H:%M:%S GMT")

        def store(item: tuple[str, str]) -> str:
            to, provider_id = item
            batch = _batch_id(now)
            entity = message_entity(batch, 0, self._sender, to, self._body, now)
            entity.update({"Status": "sent", "Seq": 2, "Tag": tag, "SentAt": now,
                           "ProviderMessageId": provider_id,
                           "RepeatabilityId": str(uuid.uuid4()), "FirstSent": first_sent,
                           "FirstSentAt": now})
            self._messages.create_entity(entity)
            return report_tag(batch, [0], tag)

        with ThreadPoolExecutor(max_workers=POOL_SIZE) as pool:
            return list(pool.map(store, messages))

    def statuses(self, tag: str) -> dict[str, tuple[str, str | None]]:
        """(status, error) of every floor message tagged `tag`, by provider id. Not timed."""
        rows = self._messages.query_entities(
            "Tag eq @tag and Kind eq 'message'", parameters={"tag": tag},
            select=["ProviderMessageId", "Status", "Error"])
        return {str(r["ProviderMessageId"]): (str(r["Status"]), r.get("Error")) for r in rows}

    def _apply_one(self, msg: Any) -> None:
        event = json.loads(msg.content)
        data = event["data"]
        provider_id = str(data["messageId"])
        acs_status, details = str(data["deliveryStatus"]), data.get("deliveryStatusDetails")
        # The route our send call put in the tag: sms1|<batch>|<first>-<last>|<app tag>.
        _, batch, span, *_ = str(data["Tag"]).split("|", 3)
        first, _, last = span.partition("-")
        [current] = list(self._messages.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey le @hi and Kind eq 'message' "
            "and To eq @to",
            parameters={"pk": batch, "lo": f"{int(first):05d}", "hi": f"{int(last):05d}",
                        "to": str(data["to"])}))
        row = str(current["RowKey"])
        message_id = f"{batch}-{row}"
        now = datetime.now(UTC)
        status = acs_status.lower()
        seq = int(current["Seq"]) + 1
        updated = {**current, "Status": status, "Seq": seq, "UpdatedAt": now}
        if status != "delivered":
            updated["Error"] = details or acs_status
        report = {"deliveryStatus": acs_status, "deliveryStatusDetails": details,
                  "deliveryAttempts": data.get("deliveryAttempts"),
                  "receivedTimestamp": data.get("receivedTimestamp"), "eventId": event["id"]}
        entry = json.dumps({"n": seq, "s": status, "at": now.isoformat(),
                            "d": f"delivery report: {acs_status} ({details})", "x": report},
                           separators=(",", ":"))
        previous = current.get("History")
        updated["History"] = f"{previous[:-1]},{entry}]" if previous else f"[{entry}]"
        self._messages.update_entity(updated, mode=UpdateMode.REPLACE,
                                     etag=current.metadata["etag"],
                                     match_condition=MatchConditions.IfNotModified)
        self._events.send_message(_event_text("sms.status", f"status-{message_id}-{status}", now, {
            "id": message_id, "status": status, "from": current["From"], "to": current["To"],
            "tag": current.get("Tag"), "providerMessageId": provider_id,
            "error": updated.get("Error"), "at": now.isoformat()}))
        self._consumer.delete_message(msg)

    def clear_events(self) -> None:
        """Empty the floor's events queue (nothing reads it). Not timed."""
        self._events.clear_messages()

    def drain(self, total: int, deadline_s: float = 180.0) -> None:
        """Apply `total` reports from the floor queue, then return."""
        _drain(self._consumer, self._apply_one, total, self._batch_size, self._threshold,
               deadline_s, "delivery-report floor")

    def close(self) -> None:
        """Close the consumer's session and the producer."""
        self._session.close()
        self.producer.close()
