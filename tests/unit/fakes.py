"""In-memory fakes of every port in `sms_core.use_cases.ports`, for unit tests of the use cases.

Each fake keeps the contract its real adapter documents (`sms_core.adapters`, `optout_store`),
without I/O, and records what a test wants to look at. They are thread-safe, because use cases
fan calls out with `sms_core.concurrency.run_all`. What a fake stores is a copy: a use case that
mutates a record it read changes nothing until it writes it back, as with Table storage.

`FakeDeps` holds one of each (and real `Settings`) and is accepted wherever a `*Deps` Protocol
is expected; the block at the end of this module lets mypy check that.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel

from optout_store import GLOBAL_SENDER, OptOutHistoryRecord, OptOutStateRecord, Source
from sms_core.adapters.event_grid import delivery_reports
from sms_core.errors import (
    Conflict,
    FieldError,
    NotFound,
    ProviderError,
    RequestInvalid,
    StorageUnavailable,
)
from sms_core.models.app_events import WebhookDelivery, event_envelope
from sms_core.models.campaigns import FanoutJob
from sms_core.models.messages import (
    MAX_RECIPIENTS_PER_CALL,
    PENDING_STATUSES,
    DispatchJob,
    MessageEvent,
    MessageStatus,
    OutboundSms,
    SendOutcome,
)
from sms_core.models.queries import FIRST_SLICE_SECONDS, BatchCursor, MessageFilter
from sms_core.models.records import (
    BATCH_TIME_FORMAT,
    OUTBOX_CHUNK,
    AudienceRecord,
    AwaitingRecord,
    CampaignRecord,
    Change,
    ConversationRecord,
    ConversationSummaryRecord,
    Decide,
    IdempotencyClaim,
    MemberRecord,
    MessageRecord,
    OutboxRecord,
    RecipientRecord,
    RunRecord,
    TemplateRecord,
    UnmatchedReportRecord,
    bucket_hour,
    hour_bucket,
    message_id,
    new_batch_id,
    run_key,
    split_message_id,
    token_hash,
)
from sms_core.rules.analytics import COUNTERS, AnalyticsReport, Fact, check_range, rates
from sms_core.rules.keywords import KeywordEngine
from sms_core.settings import Settings, load_settings
from sms_core.use_cases.ports import Job

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

SENDER = "+18005550100"  # SMS_DEFAULT_FROM of `FakeDeps.build()`


def _copy(value: T) -> T:
    return copy.deepcopy(value)


def _now() -> datetime:
    return datetime.now(UTC)


def _sortable(at: datetime) -> str:
    """A moment as the adapters write it into keys (sortable, UTC, microseconds)."""
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


_RECORD_FIELDS = frozenset(f.name for f in fields(MessageRecord))


def _copy_record(record: MessageRecord) -> MessageRecord:
    """A copy of a record (its only mutable field is a list; a deep copy would be slow)."""
    new = copy.copy(record)
    new.report_ids = list(record.report_ids)
    return new


# -- messages ---------------------------------------------------------------------------------


class FakeMessages:
    """`Messages`: records per (batch, index), each with its history events."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._rows: dict[tuple[str, int], MessageRecord] = {}
        self._events: dict[tuple[str, int], list[MessageEvent]] = {}
        self._etags = itertools.count(1)
        self.outbox_rows: dict[tuple[str, int], OutboxRecord] = {}
        self.cursor: datetime | None = None

    def _store(self, record: MessageRecord) -> MessageRecord:
        record.etag = f'W/"{next(self._etags)}"'
        self._rows[(record.batch, record.index)] = _copy_record(record)
        return record

    def create_batch(self, records: Sequence[MessageRecord], *,
                     outbox: bool = False) -> list[MessageRecord]:
        """Insert new records; one that exists already (a retry) comes back as first stored.
        With `outbox`, an outbox row per 99 records (as the real store's transactions)."""
        with self._lock:
            for r in records:
                if (r.batch, r.index) not in self._rows:
                    self._store(_copy_record(r))
                    self._events[(r.batch, r.index)] = []
                    if outbox and r.status in PENDING_STATUSES:
                        key = (r.batch, r.index // OUTBOX_CHUNK)
                        row = self.outbox_rows.get(key) or OutboxRecord(
                            batch=r.batch, chunk=key[1], indices=[], send_at=r.send_at,
                            created_at=_now())
                        row.indices.append(r.index)
                        self.outbox_rows[key] = row
            return [_copy_record(self._rows[(r.batch, r.index)]) for r in records]

    def clear_outbox(self, batch: str, indices: Iterable[int], *,
                     on_messages: bool = False) -> None:
        with self._lock:
            for i in indices:
                self.outbox_rows.pop((batch, i // OUTBOX_CHUNK), None)

    def stranded(self, since: datetime, until: datetime) -> list[OutboxRecord]:
        with self._lock:
            return [replace(r, indices=list(r.indices)) for r in self.outbox_rows.values()
                    if r.created_at < until and r.batch >= since.strftime("%Y%m%d%H%M%S")]

    def outbox_cursor(self) -> datetime | None:
        return self.cursor

    def move_outbox_cursor(self, until: datetime) -> None:
        self.cursor = until

    def apply(self, batch: str, indices: Iterable[int], decide: Decide,
              preloaded: Sequence[MessageRecord] | None = None, *,
              clear_outbox: bool = False) -> list[MessageRecord]:
        """`decide` on each record as stored now (the real store re-decides on an ETag clash);
        the records after the change, changed or not, in index order."""
        indices = list(indices)
        with self._lock:
            known = ({r.index for r in preloaded} if preloaded is not None
                     else {i for b, i in self._rows if b == batch})
            out = []
            for i in sorted(set(indices) & known):
                if (batch, i) not in self._rows:
                    continue
                current = _copy_record(self._rows[(batch, i)])
                change = decide(_copy_record(current))
                out.append(current if change is None else self._commit(current, change))
            if clear_outbox:  # with the last write, as the real store does
                self.clear_outbox(batch, indices)
            return [_copy_record(r) for r in out]

    def _commit(self, record: MessageRecord, change: Change) -> MessageRecord:
        unknown = set(change.fields) - _RECORD_FIELDS
        if unknown:  # the real store would silently not persist these
            raise AssertionError(f"Change sets fields MessageRecord does not have: {unknown}")
        now = _now()
        new = replace(record, **change.fields)
        new.updated_at = now
        if change.status is not None or change.note:
            new.status = change.status or record.status
            new.seq = record.seq + 1
            self._events[(record.batch, record.index)].append(MessageEvent(
                status=change.noted_status or new.status, at=change.noted_at or now,
                detail=change.detail,
                data=_copy(change.data) if change.data else None))
        return self._store(new)

    def load(self, batch: str, indices: Sequence[int] | None = None) -> list[MessageRecord]:
        """The batch's records by index; like the real store, empty `indices` means all."""
        keep = set(indices) if indices else None
        with self._lock:
            return [_copy_record(r) for (b, i), r in sorted(self._rows.items())
                    if b == batch and (keep is None or i in keep)]

    def pending(self, batch: str) -> list[MessageRecord]:
        return [r for r in self.load(batch) if r.status in PENDING_STATUSES]

    def find_recipient(self, batch: str, first: int, last: int, to: str
                       ) -> MessageRecord | None:
        return next((r for r in self.load(batch) if first <= r.index <= last and r.to == to),
                    None)

    def status_counts(self, batch: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.load(batch):
            counts[str(r.status)] = counts.get(str(r.status), 0) + 1
        return counts

    def run_counts(self, batch: str) -> dict[str, int]:
        # The real store keeps them with every change; here they are the rows' own.
        return self.status_counts(batch)

    def with_history(self, public_id: str) -> tuple[MessageRecord, list[MessageEvent]]:
        batch, index = split_message_id(public_id)
        with self._lock:
            rec = self._rows.get((batch, index))
            if rec is None:
                raise NotFound(f"No message with id '{public_id}'.")
            return _copy_record(rec), sorted(self._events[(batch, index)], key=lambda e: e.at)

    def by_ids(self, public_ids: Sequence[str]) -> dict[str, MessageRecord]:
        with self._lock:
            keys = [split_message_id(i) for i in public_ids]
            return {message_id(*k): _copy_record(self._rows[k]) for k in keys
                    if k in self._rows}

    def recent(self, since: datetime, until: datetime, match: MessageFilter, limit: int,
               after: BatchCursor | None) -> tuple[list[MessageRecord], BatchCursor | None]:
        """The real store's order (newest batch first, index order within one) over every
        record, without its time slices: the cursor is the last record returned."""
        lo, hi = since.strftime(BATCH_TIME_FORMAT), until.strftime(BATCH_TIME_FORMAT) + "~"
        with self._lock:
            rows = [r for (b, _), r in self._rows.items() if lo <= b < hi
                    and match.sender in (None, r.sender) and match.status in (None, r.status)
                    and match.tag in (None, r.tag)]
        rows.sort(key=lambda r: r.index)
        rows.sort(key=lambda r: r.batch, reverse=True)
        if after is not None:
            rows = [r for r in rows if r.batch < after.batch
                    or (r.batch == after.batch and r.index > after.index)]
        page = [_copy_record(r) for r in rows[:limit]]
        more = len(rows) > limit
        return page, (BatchCursor(page[-1].batch, page[-1].index, FIRST_SLICE_SECONDS)
                      if more else None)

    def awaiting_report(self, since: datetime, until: datetime) -> list[MessageRecord]:
        lo, hi = since.strftime(BATCH_TIME_FORMAT), until.strftime(BATCH_TIME_FORMAT)
        with self._lock:
            return [_copy_record(r) for (b, _), r in sorted(self._rows.items())
                    if lo <= b < hi and r.status == MessageStatus.SENT and r.delivery_report]

    # -- for tests ----------------------------------------------------------------------------

    def record(self, message_id: str) -> MessageRecord:
        """The stored record of a public message id (KeyError when there is none)."""
        with self._lock:
            return _copy_record(self._rows[split_message_id(message_id)])

    def all(self) -> list[MessageRecord]:
        """Every stored record, by batch and index."""
        with self._lock:
            return [_copy_record(r) for _, r in sorted(self._rows.items())]


# -- opt-outs ---------------------------------------------------------------------------------


class FakeOptOuts:
    """`OptOuts` (optout_store): state per (partition, recipient) and an audit history."""

    def __init__(self, scope: Literal["sender", "global"] = "sender") -> None:
        self._scope = scope
        self._lock = threading.Lock()
        self._state: dict[tuple[str, str], OptOutStateRecord] = {}
        # (partition, recipient) -> row key -> entry
        self._history: dict[tuple[str, str], dict[str, OptOutHistoryRecord]] = {}

    def _partition_for(self, sender: str) -> str:
        return GLOBAL_SENDER if self._scope == "global" else sender

    def is_opted_out(self, sender: str, recipient: str) -> bool:
        return recipient in self.opted_out_among(sender, [recipient])

    def opted_out_among(self, sender: str, recipients: Iterable[str]) -> set[str]:
        """Opted out of `sender`, or globally: a global opt-out always wins."""
        partitions = dict.fromkeys((sender, GLOBAL_SENDER))
        with self._lock:
            return {r for r in set(recipients) for p in partitions
                    if (rec := self._state.get((p, r))) is not None and rec.opted_out}

    def get(self, sender: str, recipient: str) -> OptOutStateRecord | None:
        with self._lock:
            rec = self._state.get((self._partition_for(sender), recipient))
        return None if rec is None else replace(rec, sender=sender)

    def opt_out(self, sender: str, recipient: str, *, source: Source,
                keyword: str | None = None, text: str | None = None,
                inbound_message_id: str | None = None, reason: str | None = None,
                at: datetime | None = None) -> bool:
        return self._set(sender, recipient, True, source, keyword, text, inbound_message_id,
                         reason, at)

    def opt_in(self, sender: str, recipient: str, *, source: Source,
               keyword: str | None = None, text: str | None = None,
               inbound_message_id: str | None = None, reason: str | None = None,
               at: datetime | None = None) -> bool:
        return self._set(sender, recipient, False, source, keyword, text, inbound_message_id,
                         reason, at)

    def _set(self, sender: str, recipient: str, opted_out: bool, source: Source,
             keyword: str | None, text: str | None, inbound_message_id: str | None,
             reason: str | None, at: datetime | None) -> bool:
        """True when the state changed. A never-changed pair is not opted out, so opting it in
        changes nothing: the port's documented contract (`OptOutStore._set` answers True for
        it). Every call leaves a history row; one carrying an inbound id is keyed by it (and
        its time), so recording that inbound again adds none."""
        partition, now = self._partition_for(sender), at or _now()
        suffix = (hashlib.sha256(inbound_message_id.encode()).hexdigest()[:12]
                  if inbound_message_id else secrets.token_hex(6))
        entry = OptOutHistoryRecord(sender=partition, recipient=recipient,
                            action="opt-out" if opted_out else "opt-in", at=now, source=source,
                            keyword=keyword, text=text, inbound_message_id=inbound_message_id,
                            reason=reason)
        with self._lock:
            before = self._state.get((partition, recipient))
            changed = (before.opted_out if before else False) != opted_out
            self._history.setdefault((partition, recipient), {})[
                f"{_sortable(now)}-{suffix}"] = entry
            self._state[(partition, recipient)] = OptOutStateRecord(
                sender=partition, recipient=recipient, opted_out=opted_out, updated_at=now,
                source=source, keyword=keyword)
        return changed

    def list_opted_out(self, partition: str) -> list[OptOutStateRecord]:
        with self._lock:
            return [rec for (p, _), rec in sorted(self._state.items())
                    if p == partition and rec.opted_out]

    def history(self, sender: str, recipient: str) -> list[OptOutHistoryRecord]:
        with self._lock:
            rows = self._history.get((self._partition_for(sender), recipient), {})
            return [rows[k] for k in sorted(rows)]


# -- idempotency, pacing, queues --------------------------------------------------------------


class FakeIdempotencyKeys:
    """`IdempotencyKeys`: a key binds a request fingerprint and the batch chosen at its claim."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bound: dict[str, tuple[str, IdempotencyClaim]] = {}  # key -> (fingerprint, claim)

    def claim(self, key: str, fingerprint: str) -> IdempotencyClaim:
        with self._lock:
            batch = new_batch_id()
            bound_to, claim = self._bound.setdefault(
                key, (fingerprint, IdempotencyClaim(batch, False)))
        if bound_to != fingerprint:
            raise Conflict("This Idempotency-Key was already used with a different request "
                           "body; use a new key for a new request.")
        return claim

    def complete(self, key: str) -> None:
        with self._lock:
            if key in self._bound:
                fingerprint, claim = self._bound[key]
                self._bound[key] = (fingerprint, replace(claim, completed=True))


class FakePacer:
    """`Pacer`: every bulk slot is `wait_s` from now (0: now, so dispatch never sleeps); a
    priority slot is now. Records what was reserved and given back."""

    def __init__(self, wait_s: float = 0.0) -> None:
        self.wait_s = wait_s
        self.room_now = True  # False: the bulk lane is full, accepted messages are queued
        self.reserved: list[tuple[str, int]] = []
        self.priority: list[tuple[str, int]] = []
        self.given_back: list[tuple[str, int]] = []

    def reserve(self, sender: str, count: int, *, priority: bool = False) -> float:
        (self.priority if priority else self.reserved).append((sender, count))
        return time.time() + (0.0 if priority else self.wait_s)

    def reserve_within(self, sender: str, count: int, within_s: float | None, *,
                       priority: bool = False) -> float | None:
        if not priority and (not self.room_now or (within_s is not None
                                                   and self.wait_s > within_s)):
            return None
        return self.reserve(sender, count, priority=priority)

    def give_back(self, sender: str, count: int) -> None:
        self.given_back.append((sender, count))


class FakeJobs:
    """`Jobs`: records each (job, delay) put on the queue, the delay as asked for (the real
    queue rounds it up to whole seconds and caps it at about 6 days)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.enqueued: list[tuple[Job, float]] = []

    def enqueue(self, job: Job, delay_s: float = 0) -> None:
        job.encode()  # what the real queue stores: it must encode
        with self._lock:
            self.enqueued.append((job, delay_s))

    def enqueue_many(self, jobs: Sequence[Job], delay_s: float = 0) -> None:
        for job in jobs:
            self.enqueue(job, delay_s)

    # -- for tests ----------------------------------------------------------------------------

    def texts(self) -> list[tuple[str, float]]:
        """Every (queue message text, delay), as stored."""
        with self._lock:
            return [(job.encode(), delay) for job, delay in self.enqueued]

    def decoded(self, model: type[M]) -> list[tuple[M, float]]:
        """Every (job, delay) as a consumer would read it back from the queue text."""
        with self._lock:
            return [(model.model_validate_json(job.encode()), delay)
                    for job, delay in self.enqueued]

    def take(self, model: type[M]) -> list[tuple[M, float]]:
        """Like `decoded`, and empty the queue (the jobs were received and deleted)."""
        with self._lock:
            taken, self.enqueued = self.enqueued, []
        return [(model.model_validate_json(job.encode()), delay) for job, delay in taken]

    def dispatch_jobs(self) -> list[DispatchJob]:
        return [job for job, _ in self.decoded(DispatchJob)]

    def fanout_jobs(self) -> list[FanoutJob]:
        return [job for job, _ in self.decoded(FanoutJob)]


# -- campaigns, audiences, templates ----------------------------------------------------------


class FakeCampaigns:
    """`Campaigns`: campaigns (ETag-guarded), snapshots, runs, chunk markers, schedule index."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._etags = itertools.count(1)
        self._campaigns: dict[str, CampaignRecord] = {}
        self._rows: dict[str, dict[int, RecipientRecord]] = {}
        self._runs: dict[tuple[str, str], RunRecord] = {}
        self.chunk_marks: dict[tuple[str, str, int], dict[str, Any]] = {}
        self._schedule: dict[tuple[str, str], datetime] = {}  # (run key, campaign id) -> due

    def _etag(self) -> str:
        return f'W/"{next(self._etags)}"'

    def new_token(self) -> tuple[str, str]:
        token = secrets.token_urlsafe(24)
        return token, token_hash(token)

    def create(self, campaign: CampaignRecord, rows: Sequence[RecipientRecord]) -> None:
        with self._lock:
            self._rows.setdefault(campaign.id, {}).update({r.index: r for r in rows})
            campaign.etag = self._etag()
            self._campaigns[campaign.id] = _copy(campaign)

    def get(self, campaign_id: str) -> CampaignRecord:
        with self._lock:
            if campaign_id not in self._campaigns:
                raise NotFound(f"No campaign with id '{campaign_id}'.")
            return _copy(self._campaigns[campaign_id])

    def save(self, campaign: CampaignRecord) -> bool:
        with self._lock:
            stored = self._campaigns.get(campaign.id)
            if stored is None or stored.etag != campaign.etag:
                return False
            campaign.updated_at, campaign.etag = _now(), self._etag()
            self._campaigns[campaign.id] = _copy(campaign)
            return True

    def change(self, campaign: CampaignRecord,
               mutate: Callable[[CampaignRecord], bool]) -> CampaignRecord:
        for _ in range(8):
            if not mutate(campaign) or self.save(campaign):
                return campaign
            campaign = self.get(campaign.id)
        raise StorageUnavailable(f"Campaign {campaign.id} kept changing; try again")

    def page(self, limit: int, after: str | None) -> tuple[list[CampaignRecord], str | None]:
        with self._lock:
            items = [_copy(self._campaigns[k]) for k in sorted(self._campaigns)
                     if after is None or k > after][:limit]
        return items, (items[-1].id if len(items) >= limit else None)

    def with_status(self, status: str) -> list[CampaignRecord]:
        with self._lock:
            return [_copy(c) for _, c in sorted(self._campaigns.items()) if c.status == status]

    def write_rows(self, campaign: CampaignRecord, rows: Sequence[RecipientRecord], *,
                   new: bool) -> None:
        with self._lock:
            self._rows.setdefault(campaign.id, {}).update({r.index: r for r in rows})

    def recipients(self, campaign: CampaignRecord, lo: int, hi: int) -> list[RecipientRecord]:
        with self._lock:
            rows = self._rows.get(campaign.id, {})
            return [rows[i] for i in sorted(rows) if lo <= i < hi and rows[i].verdict == "valid"]

    def rows(self, campaign: CampaignRecord, indices: Sequence[int]) -> list[RecipientRecord]:
        with self._lock:
            rows = self._rows.get(campaign.id, {})
            return [rows[i] for i in indices if i in rows]

    def start_run(self, campaign_id: str, key: str, chunks: int, blocks: int = 1) -> RunRecord:
        with self._lock:
            if (campaign_id, key) not in self._runs:
                self._runs[(campaign_id, key)] = RunRecord(campaign_id, key, chunks, "sending",
                                                           _now(), etag=self._etag(),
                                                           blocks=blocks)
            run = self.run(campaign_id, key)
        assert run is not None
        return run

    def run(self, campaign_id: str, key: str, *, chunk: int | None = None) -> RunRecord | None:
        with self._lock:
            run = self._runs.get((campaign_id, key))
            if run is None:
                return None
            done = {n for (c, k, n) in self.chunk_marks if (c, k) == (campaign_id, key)
                    and chunk in (None, n)}
            return replace(_copy(run), done_chunks=done)

    def runs(self, campaign_id: str) -> list[RunRecord]:
        with self._lock:
            keys = sorted(k for c, k in self._runs if c == campaign_id)
            return [r for k in keys if (r := self.run(campaign_id, k)) is not None]

    def mark_chunk(self, run: RunRecord, chunk: int, counts: dict[str, int]) -> None:
        with self._lock:
            self.chunk_marks[(run.campaign_id, run.key, chunk)] = dict(counts)

    def run_canceled(self, campaign_id: str, key: str) -> bool:
        with self._lock:
            run = self._runs.get((campaign_id, key))
            return run is not None and run.status == "canceled"

    def set_run_status(self, run: RunRecord, status: str) -> bool:
        with self._lock:
            stored = self._runs.get((run.campaign_id, run.key))
            if stored is None or stored.etag != run.etag:
                return False
            run.status, run.finished_at, run.etag = status, _now(), self._etag()
            self._runs[(run.campaign_id, run.key)] = replace(_copy(run), done_chunks=set())
            return True

    def settle_run(self, run: RunRecord, counts: dict[str, int]) -> bool:
        with self._lock:
            stored = self._runs.get((run.campaign_id, run.key))
            if stored is None or stored.etag != run.etag:
                return False
            run.settled_counts, run.etag = dict(counts), self._etag()
            self._runs[(run.campaign_id, run.key)] = replace(_copy(run), done_chunks=set())
            return True

    def schedule(self, campaign_id: str, due: datetime) -> None:
        with self._lock:
            self._schedule[(run_key(due), campaign_id)] = due

    def due(self, now: datetime) -> Iterator[tuple[str, str]]:
        with self._lock:
            entries = sorted(k for k in self._schedule if k[0] <= run_key(now))
        for key, campaign_id in entries:
            yield campaign_id, key

    def unschedule(self, campaign_id: str, key: str) -> None:
        with self._lock:
            self._schedule.pop((key, campaign_id), None)

    # -- for tests ----------------------------------------------------------------------------

    def scheduled(self) -> list[tuple[str, str]]:
        """(campaign id, run key) of every schedule entry, due or not."""
        with self._lock:
            return [(c, k) for k, c in sorted(self._schedule)]


def _saved_id(what: str, item_id: str, items: Mapping[str, T]) -> T:
    if item_id not in items:
        raise NotFound(f"No {what} with id '{item_id}'.")
    return items[item_id]


class FakeAudiences:
    """`Audiences`: saved audiences and their members, oldest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, tuple[AudienceRecord, list[MemberRecord]]] = {}

    def create(self, name: str, members: Sequence[MemberRecord]) -> AudienceRecord:
        columns: dict[str, None] = {}
        for m in members:
            columns.update(dict.fromkeys(m.attributes))
        info = AudienceRecord("a" + new_batch_id(), name, len(members), list(columns), _now())
        with self._lock:
            self._items[info.id] = (info, list(members))
        return info

    def get(self, audience_id: str) -> AudienceRecord:
        with self._lock:
            return _saved_id("audience", audience_id, self._items)[0]

    def all(self) -> list[AudienceRecord]:
        with self._lock:
            return [info for info, _ in self._items.values()]

    def members(self, audience_id: str) -> list[MemberRecord]:
        with self._lock:
            return list(_saved_id("audience", audience_id, self._items)[1])

    def each_member(self, audience_id: str) -> Iterator[MemberRecord]:
        yield from self.members(audience_id)

    def member_range(self, info: AudienceRecord, lo: int, hi: int
                     ) -> list[tuple[int, MemberRecord]]:
        members = self.members(info.id)
        return [(i, members[i]) for i in range(lo, min(hi, len(members)))]

    def delete(self, audience_id: str) -> None:
        with self._lock:
            _saved_id("audience", audience_id, self._items)
            del self._items[audience_id]


class FakeTemplates:
    """`Templates`: saved templates, oldest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, TemplateRecord] = {}

    def create(self, name: str, text: str, variables: Sequence[str]) -> TemplateRecord:
        info = TemplateRecord("t" + new_batch_id(), name, text, list(variables), _now())
        with self._lock:
            self._items[info.id] = info
        return info

    def get(self, template_id: str) -> TemplateRecord:
        with self._lock:
            return _saved_id("template", template_id, self._items)

    def all(self) -> list[TemplateRecord]:
        with self._lock:
            return list(self._items.values())

    def delete(self, template_id: str) -> None:
        with self._lock:
            _saved_id("template", template_id, self._items)
            del self._items[template_id]


# -- conversations, analytics, reports, inbound -----------------------------------------------


class FakeConversations:
    """`Conversations`: entries per (our number, their number), ordered by their row key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str], dict[str, ConversationRecord]] = {}
        self._last: dict[tuple[str, str], ConversationRecord] = {}

    def record(self, entries: Iterable[ConversationRecord]) -> None:
        with self._lock:
            for e in entries:  # upserts: a redelivery rewrites the same row
                self._rows.setdefault((e.our_number, e.their_number), {})[e.row_key()] = e
                last = self._last.get((e.our_number, e.their_number))
                if last is None or (e.at, e.row_key()) > (last.at, last.row_key()):
                    self._last[(e.our_number, e.their_number)] = e  # never moves back

    def recent(self, our_number: str, limit: int, continuation: str | None
               ) -> tuple[list[ConversationSummaryRecord], str | None]:
        """The real index's order (newest last message first); the token is an offset."""
        if continuation is not None and not continuation.isdigit():
            raise RequestInvalid("The continuation token is not valid.",
                                 [FieldError("continuationToken", "not valid")])
        with self._lock:
            last = sorted((e for (ours, _), e in self._last.items() if ours == our_number),
                          key=lambda e: e.at, reverse=True)
        start = int(continuation or 0)
        end = start + max(1, min(limit, 200))
        return ([ConversationSummaryRecord(e.their_number, e.text, e.direction, e.at)
                 for e in last[start:end]], str(end) if end < len(last) else None)

    def _entries(self, our_number: str, their_number: str) -> list[ConversationRecord]:
        with self._lock:
            rows = self._rows.get((our_number, their_number), {})
            return [rows[k] for k in sorted(rows)]

    def last_outbound(self, our_number: str, their_number: str, since: datetime,
                      until: datetime) -> ConversationRecord | None:
        lo, hi = _sortable(since), _sortable(until) + "|~"
        found = [e for e in self._entries(our_number, their_number)
                 if e.direction == "outbound" and lo <= e.row_key() <= hi]
        return found[-1] if found else None

    def outbound_before(self, our_number: str, their_number: str, since: datetime | None,
                        until: datetime | None, tag: str | None, limit: int,
                        before: str | None) -> list[tuple[str, str]]:
        lo = _sortable(since) if since else ""
        hi = min(b for b in (until and _sortable(until) + "|~", before, "~") if b)
        found = [(e.row_key(), e.message_id) for e in self._entries(our_number, their_number)
                 if e.direction == "outbound" and lo <= e.row_key() < hi
                 and tag in (None, e.tag)]
        return sorted(found, reverse=True)[:limit]

    def page(self, our_number: str, their_number: str, limit: int = 50,
             continuation: str | None = None) -> tuple[list[ConversationRecord], str | None]:
        """Pages of `limit` (1..200); the token is opaque to callers (here: an offset)."""
        if continuation is not None and not continuation.isdigit():
            raise RequestInvalid("The continuation token is not valid.")
        entries = self._entries(our_number, their_number)
        start, limit = int(continuation or 0), max(1, min(limit, 200))
        end = start + limit
        return entries[start:end], (str(end) if end < len(entries) else None)


class FakeAnalytics:
    """`Analytics`: each fact counted once, ever (a ledger keyed by day and fact id)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ledger: dict[tuple[date, str], Fact] = {}

    def record(self, facts: Sequence[Fact]) -> int:
        with self._lock:
            new = {(f.day, f.id): f for f in facts if (f.day, f.id) not in self._ledger}
            self._ledger.update(new)
            return len(new)

    def _counts(self, keep: Callable[[Fact], bool]) -> dict[str, int]:
        counts = dict.fromkeys(COUNTERS, 0)
        with self._lock:
            for fact in self._ledger.values():
                if keep(fact):
                    for name, n in fact.counts.items():
                        counts[name] += n
        return counts

    def query(self, start: date, end: date, sender: str | None = None,
              tag: str | None = None) -> AnalyticsReport:
        check_range(start, end)

        def keep(day: date) -> Callable[[Fact], bool]:
            return lambda f: (f.day == day and sender in (None, f.sender)
                              and (tag is None or f.tag == tag))

        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        per_day = [(d, self._counts(keep(d))) for d in days]
        totals = {name: sum(c[name] for _, c in per_day) for name in COUNTERS}
        return AnalyticsReport(totals={**totals, **rates(totals)},
                               days=[{"date": d.isoformat(), **c, **rates(c)}
                                     for d, c in per_day])

    # -- for tests ----------------------------------------------------------------------------

    def totals(self, sender: str | None = None, tag: str | None = None) -> dict[str, int]:
        """Every counter summed over all days (optionally one sender or tag)."""
        return self._counts(lambda f: sender in (None, f.sender) and tag in (None, f.tag))

    @property
    def fact_ids(self) -> list[str]:
        """The ids of every fact counted, in the order they were first counted."""
        with self._lock:
            return [fact_id for _, fact_id in self._ledger]


class FakeAwaitingReports:
    """`AwaitingReports`: message ids per UTC send hour, and the last hour swept."""

    MAX_CATCH_UP = timedelta(days=30)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, set[str]] = {}
        self._cursor: str | None = None

    def add(self, sent: Iterable[tuple[str, datetime]]) -> None:
        with self._lock:
            for message_id, at in sent:
                self._buckets.setdefault(hour_bucket(at), set()).add(message_id)

    def remove(self, message_id: str, sent_at: datetime) -> None:
        with self._lock:
            self._buckets.get(hour_bucket(sent_at), set()).discard(message_id)

    def due_buckets(self, now: datetime, timeout: timedelta) -> list[str]:
        """Every hour after the last one swept (at most 30 days back) that is past `timeout`."""
        oldest = now - timeout - self.MAX_CATCH_UP
        with self._lock:
            cursor = self._cursor
        start = oldest if cursor is None else max(
            oldest, bucket_hour(cursor)
            + timedelta(hours=1))
        last_due = hour_bucket(now - timeout - timedelta(hours=1))
        hours = (start.replace(minute=0, second=0, microsecond=0) + timedelta(hours=n)
                 for n in itertools.count())
        return list(itertools.takewhile(lambda b: b <= last_due, map(hour_bucket, hours)))

    def entries(self, bucket: str) -> list[AwaitingRecord]:
        with self._lock:
            return [AwaitingRecord(bucket, m) for m in sorted(self._buckets.get(bucket, ()))]

    def finish_bucket(self, bucket: str, entries: list[AwaitingRecord]) -> None:
        with self._lock:
            for e in entries:
                self._buckets.get(e.bucket, set()).discard(e.message_id)
            self._cursor = bucket

    # -- for tests ----------------------------------------------------------------------------

    def waiting(self) -> set[str]:
        """Every message id still waiting for its report."""
        with self._lock:
            return set().union(*self._buckets.values())


class FakeInboundLedger:
    """`InboundLedger`: inbound ids seen, and which were fully processed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: dict[str, dict[str, Any]] = {}
        self.done: set[str] = set()

    def claim(self, inbound_id: str, fields: dict[str, Any]) -> bool:
        with self._lock:
            self.seen.setdefault(inbound_id, dict(fields))
            return inbound_id not in self.done

    def complete(self, inbound_id: str) -> None:
        with self._lock:
            self.done.add(inbound_id)


class FakeAppEvents:
    """`AppEvents`: every envelope published, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.published: list[dict[str, Any]] = []

    def publish(self, event_type: str, event_id: str, data: Mapping[str, Any],
                at: datetime | None = None) -> dict[str, Any]:
        envelope = event_envelope(event_type, event_id, data, at)
        json.dumps(envelope)  # what the real queue sends: it must serialise
        with self._lock:
            self.published.append(envelope)
        return envelope

    def publish_many(self, events: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
        for event in events:
            self.publish(*event)

    # -- for tests ----------------------------------------------------------------------------

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.published if e["type"] == event_type]


class FakeProviderIds:
    """`ProviderIds`: ACS id -> our message id, and the reports kept because none matched."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.index: dict[str, str] = {}
        self._kept: dict[tuple[str, str], tuple[dict[str, Any], datetime]] = {}

    def record(self, pairs: Iterable[tuple[str, str]]) -> None:
        with self._lock:
            self.index.update(pairs)

    def lookup(self, provider_id: str) -> str | None:
        with self._lock:
            return self.index.get(provider_id)

    def keep_unmatched(self, provider_id: str, event_id: str, event: dict[str, Any]) -> None:
        with self._lock:
            self._kept[(provider_id or "unknown", event_id)] = (_copy(event), _now())

    def unmatched(self) -> list[UnmatchedReportRecord]:
        """Every kept event, decoded again as the real index does (None: not a report)."""
        with self._lock:
            kept = sorted(self._kept.items())
        out = []
        for (provider_id, event_id), (event, received_at) in kept:
            try:
                reports = delivery_reports(json.dumps(event))
            except RequestInvalid:
                reports = []
            out.append(UnmatchedReportRecord(provider_id, event_id, _copy(event), received_at,
                                       reports[0] if reports else None))
        return out

    def forget_unmatched(self, provider_id: str, event_id: str) -> None:
        with self._lock:
            self._kept.pop((provider_id, event_id), None)


class FakeStorageProbe:
    """`StorageProbe`: storage answers while `available`."""

    def __init__(self, available: bool = True) -> None:
        self.available = available

    def probe(self) -> None:
        if not self.available:
            raise StorageUnavailable("Table storage failed: the service did not answer")


# -- ACS and the app's webhook ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayCall:
    """One send call as the gateway received it."""

    sender: str
    recipients: tuple[OutboundSms, ...]
    message: str
    tag: str | None
    delivery_report: bool

    @property
    def to(self) -> list[str]:
        return [r.to for r in self.recipients]


# A scripted answer to one call: raise this error, or refuse these recipients (status, error).
Step = ProviderError | Mapping[str, tuple[int, str]]


# Every ACS id any FakeGateway handed out (unique across tests), with the recipient and the tag
# of its send call: what ACS echoes in the delivery report (`steps.report` reads it).
_ACS_IDS = itertools.count(1)
ACS_SENT: dict[str, tuple[str, str | None]] = {}


class FakeGateway:
    """`SmsGateway` as ACS behaves: accepts everyone unless a test scripted otherwise.

    `fail_next(error)` makes the next call raise (ProviderThrottled, ProviderUnavailable,
    ProviderRejected); `refuse_next({to: (status, error)})` makes the next call refuse those
    recipients and accept the others. Steps are used one per call, in order. A repeatability id
    ACS already accepted comes back as a duplicate with the same message id and is not
    delivered again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: deque[Step] = deque()
        self._accepted: dict[str, str] = {}  # repeatability id -> ACS message id
        self.calls: list[GatewayCall] = []
        self.delivered: list[tuple[str, str]] = []  # (to, text) that reached a handset

    def fail_next(self, *errors: ProviderError) -> None:
        with self._lock:
            self._script.extend(errors)

    def refuse_next(self, refusals: Mapping[str, tuple[int, str]]) -> None:
        with self._lock:
            self._script.append(dict(refusals))

    def send(self, sender: str, recipients: Sequence[OutboundSms], message: str, *,
             tag: str | None, delivery_report: bool) -> list[SendOutcome]:
        if not 1 <= len(recipients) <= MAX_RECIPIENTS_PER_CALL:
            raise ValueError(f"1..{MAX_RECIPIENTS_PER_CALL} recipients per call")
        with self._lock:
            self.calls.append(GatewayCall(sender, tuple(recipients), message, tag,
                                          delivery_report))
            step: Step = self._script.popleft() if self._script else {}
            if isinstance(step, ProviderError):
                raise step
            return [self._outcome(r, message, step, tag) for r in recipients]

    def _outcome(self, r: OutboundSms, message: str,
                 refusals: Mapping[str, tuple[int, str]], tag: str | None) -> SendOutcome:
        if r.to in refusals:
            status, error = refusals[r.to]
            return SendOutcome(r.to, False, None, status, error)
        if r.repeatability_id in self._accepted:
            return SendOutcome(r.to, True, self._accepted[r.repeatability_id], 202,
                               duplicate=True)
        provider_id = self._accepted[r.repeatability_id] = f"Outgoing_{next(_ACS_IDS):06d}"
        ACS_SENT[provider_id] = (r.to, tag)
        self.delivered.append((r.to, message))
        return SendOutcome(r.to, True, provider_id, 202)

    # -- for tests ----------------------------------------------------------------------------

    def texts_to(self, number: str) -> list[str]:
        """What the handset of `number` received, oldest first."""
        with self._lock:
            return [text for to, text in self.delivered if to == number]


class FakeWebhookPoster:
    """`WebhookPoster`: answers the scripted statuses in order (then 200), records posts."""

    def __init__(self, *statuses: int | None) -> None:
        self._statuses = deque(statuses)
        self.posts: list[tuple[str, bytes, dict[str, str]]] = []

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int | None:
        self.posts.append((url, body, dict(headers)))
        return self._statuses.popleft() if self._statuses else 200


class FakeWebhookOutbox:
    """`WebhookOutbox`: the deliveries put back (with their delay) and those given up."""

    def __init__(self) -> None:
        self.retried: list[tuple[WebhookDelivery, int]] = []
        self.given_up: list[WebhookDelivery] = []

    def retry_later(self, delivery: WebhookDelivery, delay_s: int) -> None:
        self.retried.append((delivery, delay_s))

    def give_up(self, delivery: WebhookDelivery) -> None:
        self.given_up.append(delivery)


# -- all of them ------------------------------------------------------------------------------


@dataclass
class FakeDeps:
    """One fake of each port, real settings and the keyword engine they describe."""

    settings: Settings
    keywords: KeywordEngine
    optouts: FakeOptOuts
    messages: FakeMessages = field(default_factory=FakeMessages)
    idempotency: FakeIdempotencyKeys = field(default_factory=FakeIdempotencyKeys)
    pacer: FakePacer = field(default_factory=FakePacer)
    jobs: FakeJobs = field(default_factory=FakeJobs)
    campaign_jobs: FakeJobs = field(default_factory=FakeJobs)
    report_retries: FakeJobs = field(default_factory=FakeJobs)
    campaigns: FakeCampaigns = field(default_factory=FakeCampaigns)
    audiences: FakeAudiences = field(default_factory=FakeAudiences)
    templates: FakeTemplates = field(default_factory=FakeTemplates)
    conversations: FakeConversations = field(default_factory=FakeConversations)
    analytics: FakeAnalytics = field(default_factory=FakeAnalytics)
    awaiting_reports: FakeAwaitingReports = field(default_factory=FakeAwaitingReports)
    inbound: FakeInboundLedger = field(default_factory=FakeInboundLedger)
    app_events: FakeAppEvents = field(default_factory=FakeAppEvents)
    provider_ids: FakeProviderIds = field(default_factory=FakeProviderIds)
    gateway: FakeGateway = field(default_factory=FakeGateway)
    webhook_poster: FakeWebhookPoster = field(default_factory=FakeWebhookPoster)
    webhook_outbox: FakeWebhookOutbox = field(default_factory=FakeWebhookOutbox)
    storage: FakeStorageProbe = field(default_factory=FakeStorageProbe)

    @property
    def outbox(self) -> FakeMessages:
        """The outbox rows live with the messages, as in the real store."""
        return self.messages

    @classmethod
    def build(cls, **settings: object) -> FakeDeps:
        """Fakes around `load_settings(SMS_DEFAULT_FROM=SENDER, **settings)`."""
        values: dict[str, object] = {"SMS_DEFAULT_FROM": SENDER, **settings}
        loaded = load_settings(**values)
        return cls(settings=loaded, keywords=loaded.keyword_engine(),
                   optouts=FakeOptOuts(loaded.optout_scope))


if TYPE_CHECKING:  # mypy: each fake is its port, and FakeDeps is every *Deps
    from sms_core.use_cases.analytics import InboundCountDeps
    from sms_core.use_cases.campaign_runs import CampaignDeps
    from sms_core.use_cases.conversations import ConversationDeps, ConversationListDeps
    from sms_core.use_cases.delivery_reports import ReportDeps
    from sms_core.use_cases.dispatch import DispatchDeps
    from sms_core.use_cases.inbound import InboundDeps
    from sms_core.use_cases.messages import SearchDeps
    from sms_core.use_cases.optout_changes import OptOutChangeDeps
    from sms_core.use_cases.ports import (
        Analytics,
        AppEvents,
        Audiences,
        AwaitingReports,
        Campaigns,
        Conversations,
        IdempotencyKeys,
        InboundLedger,
        Jobs,
        Messages,
        OptOuts,
        Outbox,
        Pacer,
        ProviderIds,
        SmsGateway,
        StorageProbe,
        Templates,
        WebhookOutbox,
        WebhookPoster,
    )
    from sms_core.use_cases.sending import SendDeps
    from sms_core.use_cases.status_changes import StatusDeps

    def _ports(d: FakeDeps) -> tuple[
            Messages, OptOuts, IdempotencyKeys, Pacer, Jobs, Jobs, Campaigns, Audiences,
            Templates, Conversations, Analytics, AwaitingReports, InboundLedger, AppEvents,
            ProviderIds, SmsGateway, WebhookPoster, WebhookOutbox, StorageProbe, Outbox]:
        return (d.messages, d.optouts, d.idempotency, d.pacer, d.jobs, d.campaign_jobs,
                d.campaigns, d.audiences, d.templates, d.conversations, d.analytics,
                d.awaiting_reports, d.inbound, d.app_events, d.provider_ids, d.gateway,
                d.webhook_poster, d.webhook_outbox, d.storage, d.outbox)

    def _deps(d: FakeDeps) -> tuple[
            StatusDeps, SendDeps, DispatchDeps, ReportDeps, InboundDeps, CampaignDeps,
            OptOutChangeDeps, ConversationDeps, InboundCountDeps, SearchDeps,
            ConversationListDeps]:
        return (d, d, d, d, d, d, d, d, d, d, d)
