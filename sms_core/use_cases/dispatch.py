"""The sender: turns a job from `sms-outbound` into one ACS call and records what happened.

Order of work for a job (one batch, one sender, at most 100 recipients):

1. load the messages; skip those no longer pending (a redelivered job is a no-op for them);
2. take a pacing slot for the sender; a slot more than a moment away puts the job back on the
   queue with that delay (and the slot) instead of holding a worker, without the recipients
   who opted out meanwhile (they are blocked now and give their share of the slot back);
3. claim: persist each message's repeatability id and first-sent time *before* calling ACS, so a
   resend after a crash carries the same ids and ACS de-duplicates it;
4. check opt-outs right before the call (invariant 1) and block those who opted out; their
   share of the slot goes back;
5. call ACS, with a tag naming the batch and index range so each delivery report finds its
   message by one range query (`models.messages.report_tag`); record `sent` with the provider
   id, `failed` with ACS's reason, or put retryable recipients back with backoff.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Protocol

from sms_core.concurrency import run_all
from sms_core.errors import ProviderRejected, ProviderThrottled, ProviderUnavailable
from sms_core.logs import fields
from sms_core.models.messages import (
    PENDING_STATUSES,
    DispatchJob,
    MessageStatus,
    OutboundSms,
    SendOutcome,
    report_tag,
)
from sms_core.models.records import (
    Change,
    ConversationRecord,
    MessageRecord,
    run_of_batch,
    sent_late,
)
from sms_core.use_cases.ports import (
    AwaitingReports,
    Conversations,
    Jobs,
    OptOuts,
    Pacer,
    RunStatuses,
    SmsGateway,
)
from sms_core.use_cases.status_changes import StatusChanges, StatusDeps, status_changes

log = logging.getLogger(__name__)

INLINE_WAIT_S = 1.0  # a pacing slot closer than this is waited for in-process
_REPORTED = frozenset({MessageStatus.DELIVERED, MessageStatus.FAILED, MessageStatus.EXPIRED})
MAX_ATTEMPTS = 8  # ACS outages: about 2 hours of backoff before a message is marked failed
_REPEATABILITY_NS = uuid.UUID("6f0b3d0e-5c1a-4c36-9a59-7a1b0c2d3e4f")


class DispatchDeps(StatusDeps, Protocol):
    """The ports dispatch needs."""

    @property
    def jobs(self) -> Jobs: ...
    @property
    def pacer(self) -> Pacer: ...
    @property
    def optouts(self) -> OptOuts: ...
    @property
    def gateway(self) -> SmsGateway: ...
    @property
    def awaiting_reports(self) -> AwaitingReports: ...
    @property
    def conversations(self) -> Conversations: ...
    @property
    def campaigns(self) -> RunStatuses: ...


@dataclass(frozen=True, slots=True)
class DispatchResult:
    """What a dispatch did, for logs and tests."""

    sent: int = 0
    failed: int = 0
    blocked: int = 0
    deferred: int = 0  # back on the queue: paced, or retried (below)
    outbox_cleared: bool = False  # the inline send's outbox rows went with its last write
    retried: int = 0  # of `deferred`: throttled by ACS, or ACS unavailable
    acs_calls: int = 0
    acs_ms: float = field(default=0.0, compare=False)  # the calls side by side, wall time


def log_dispatch(job: DispatchJob, result: DispatchResult, *, attempt: int,
                 inline: bool = False) -> None:
    """The one line of a dispatch (a queued job, or an accepting request's inline send)."""
    log.info("dispatch %s%s (%d message(s), attempt %d): sent %d, failed %d, blocked %d, "
             "retried %d, deferred %d; ACS %d call(s) in %.1f ms", job.batch,
             " inline" if inline else "", len(job.indices), attempt, result.sent,
             result.failed, result.blocked, result.retried, result.deferred - result.retried,
             result.acs_calls, result.acs_ms,
             extra=fields(job.batch, batch=job.batch, messages=len(job.indices),
                          attempt=attempt, inline=inline, sent=result.sent,
                          failed=result.failed, blocked=result.blocked, retried=result.retried,
                          deferred=result.deferred - result.retried, acsCalls=result.acs_calls,
                          acsMs=round(result.acs_ms, 1)))


def backoff_s(attempt: int) -> float:
    """Delay before retry `attempt` (1-based): 15 s doubling, capped at 30 minutes."""
    return float(min(15 * 2 ** max(0, attempt - 1), 1800))


def repeatability_id(record: MessageRecord) -> str:
    """A stable repeatability id for a message: the same on every attempt, unique per message."""
    return str(uuid.uuid5(_REPEATABILITY_NS, record.id))


def _pending(record: MessageRecord) -> bool:
    return record.status in PENDING_STATUSES


def _to_status(status: MessageStatus, detail: str, error: str | None = None,
               **fields: object) -> Change:
    return Change(fields={"error": error, **fields}, status=status, detail=detail)


def dispatch(deps: DispatchDeps, job: DispatchJob, *, attempt: int = 1) -> DispatchResult:
    """Process one dispatch job. Safe to run more than once for the same job.

    `attempt` is the queue's dequeue count: a storage failure raises, and the host retries the
    job; provider failures are retried by re-enqueueing with backoff and then recorded.
    """
    with status_changes(deps) as changes:
        result = _dispatch(deps, changes, job, attempt)
        # Told when its messages are recorded, before the unit of work announces them (for a
        # job of 100 that takes longer than the send, and reports may already have come back).
        log_dispatch(job, result, attempt=job_attempt(job, attempt))
    return result


def _dispatch(deps: DispatchDeps, changes: StatusChanges, job: DispatchJob,
              attempt: int) -> DispatchResult:
    now = time.time()
    if job.not_before is not None and job.not_before.timestamp() > now + INLINE_WAIT_S:
        deps.jobs.enqueue(job, job.not_before.timestamp() - now)
        return DispatchResult(deferred=len(job.indices))
    loaded = deps.messages.load(job.batch, job.indices)
    records = [r for r in loaded if _pending(r)]
    if attempt > 1:  # a redelivery: the crashed attempt may not have told the app
        changes.republish(r for r in loaded if not _pending(r))
    if records and _run_canceled(deps, job.batch):
        # The campaign was canceled: its sweep (`campaign_runs.cancel_chunk`) may not have
        # reached these yet, and none of them may leave after the cancel was answered.
        changes.apply(job.batch, [r.index for r in records], _cancel_pending)
        return DispatchResult()
    if any(r.cancel_requested for r in records):
        changes.apply(job.batch, [r.index for r in records if r.cancel_requested],
                      _cancel_if_requested)
        records = [r for r in records if not r.cancel_requested]
    if not records:
        return DispatchResult()
    sender = records[0].sender
    slot = (deps.pacer.reserve(sender, len(records), priority=bool(job.priority))
            if job.slot_at is None else job.slot_at)
    wait = slot - time.time()
    if wait > INLINE_WAIT_S:
        blocked: list[MessageRecord] = []
        if job.slot_at is None:  # nobody who opted out keeps a slot while the job waits
            records, blocked = _block_opted_out(deps, changes, job.batch, records)
            if not records:
                return DispatchResult(blocked=len(blocked))
        deps.jobs.enqueue(job.model_copy(update={"indices": [r.index for r in records],
                                                 "slot_at": slot}), wait)
        return DispatchResult(blocked=len(blocked), deferred=len(records))
    if wait > 0:
        time.sleep(wait)

    first_sent_at = datetime.now(UTC)
    first_sent = format_datetime(first_sent_at, usegmt=True)
    # Only a first attempt writes: a redelivered job finds its ids already stored.
    unclaimed = [r for r in records if not r.first_sent]
    claimed = [r for r in records if r.first_sent] + ([r for r in deps.messages.apply(
        job.batch, [r.index for r in unclaimed],
        lambda r: None if not _pending(r) or r.first_sent else Change(fields={
            "repeatability_id": repeatability_id(r), "first_sent": first_sent,
            "first_sent_at": first_sent_at}),
        preloaded=unclaimed) if _pending(r)] if unclaimed else [])

    # Right before the call (invariant 1): a STOP may have come while the job was queued.
    to_send, late = _block_opted_out(deps, changes, job.batch, claimed)
    if not to_send:
        return DispatchResult(blocked=len(late))
    result = send_claimed(deps, changes, job, to_send, attempt=job_attempt(job, attempt))
    return replace(result, blocked=len(late), outbox_cleared=False)


def _block_opted_out(deps: DispatchDeps, changes: StatusChanges, batch: str,
                     records: list[MessageRecord]
                     ) -> tuple[list[MessageRecord], list[MessageRecord]]:
    """Block the messages whose recipient opted out, and give their share of the sender's
    pacing slot back; returns (the others, those blocked)."""
    opted_out = deps.optouts.opted_out_among(
        records[0].sender, [r.to for r in records if not r.optout_exempt]) if records else set()
    blocked = [r for r in records if r.to in opted_out]
    if blocked:
        changes.apply(batch, [r.index for r in blocked], lambda r: _to_status(
            MessageStatus.BLOCKED, "recipient opted out before the send",
            f"{r.to} opted out of messages from {r.sender}") if _pending(r) else None)
        deps.pacer.give_back(records[0].sender, len(blocked))
    return [r for r in records if r.to not in opted_out], blocked


def _same_content(records: list[MessageRecord]) -> list[list[MessageRecord]]:
    """Split a job into groups that can share one ACS call (one body, tag and report flag).

    A plain send has one group; a personalised campaign chunk has up to one per recipient,
    because an ACS send call carries a single message text for all its recipients.
    """
    groups: dict[tuple[str, str | None, bool], list[MessageRecord]] = {}
    for r in records:
        groups.setdefault((r.body, r.tag, r.delivery_report), []).append(r)
    return list(groups.values())


def _run_canceled(deps: DispatchDeps, batch: str) -> bool:
    run = run_of_batch(batch)
    return run is not None and deps.campaigns.run_canceled(*run)


def _cancel_pending(r: MessageRecord) -> Change | None:
    # This job is the only one that would send the message (a claimed one too: its earlier
    # attempt was throttled or failed, and the retry is this job), so it never leaves.
    if not _pending(r):
        return None
    return _to_status(MessageStatus.CANCELED, "campaign canceled",
                      "the campaign was canceled before this message was sent")


def _cancel_if_requested(r: MessageRecord) -> Change | None:
    # A campaign canceled while this message was claimed (in an ACS call that was then
    # throttled or failed): it has not left, so it is canceled now instead of retried.
    return _cancel_pending(r) if r.cancel_requested else None


def job_attempt(job: DispatchJob, dequeue_count: int) -> int:
    """The provider-attempt number: retries we scheduled plus redeliveries by the queue."""
    return max(job.attempt, 1) + max(dequeue_count - 1, 0)


@dataclass
class _CallResult:
    """What one ACS call (one group of a job) came back with."""

    records: list[MessageRecord]
    outcomes: list[SendOutcome] | None = None
    error: ProviderRejected | ProviderUnavailable | ProviderThrottled | None = None


def _call(gateway: SmsGateway, records: list[MessageRecord]) -> _CallResult:
    first = records[0]
    calls = [OutboundSms(r.to, r.repeatability_id or repeatability_id(r),
                         r.first_sent or format_datetime(datetime.now(UTC), usegmt=True))
             for r in records]
    try:
        return _CallResult(records, gateway.send(
            first.sender, calls, first.body,
            tag=report_tag(first.batch, [r.index for r in records], first.tag),
            delivery_report=first.delivery_report))
    except (ProviderThrottled, ProviderUnavailable, ProviderRejected) as exc:
        return _CallResult(records, error=exc)


def send_claimed(deps: DispatchDeps, changes: StatusChanges, job: DispatchJob,
                 records: list[MessageRecord], *, attempt: int,
                 clear_outbox: bool = False) -> DispatchResult:
    """Send claimed messages (repeatability ids stored, slot taken, opt-outs checked).

    One ACS call per group of the job (concurrently), then all results recorded at once;
    throttled and retryable recipients go back on the queue as a job of their own. With
    `clear_outbox` (the accepting request sends inline), the messages' outbox rows are deleted
    with the recording transaction, unless some go back on the queue: then the caller deletes
    them once that job is there (`outbox_cleared` says which).
    """
    groups = _same_content(records)
    started = time.perf_counter()
    calls = run_all(lambda group: _call(deps.gateway, group), groups)
    acs_ms = (time.perf_counter() - started) * 1000
    by_index: dict[int, SendOutcome] = {}
    failures: dict[int, str] = {}  # whole-call failures: index -> reason
    throttled: list[int] = []
    retry_after = 0.0
    retry: list[int] = []
    for call in calls:
        indices = [r.index for r in call.records]
        if isinstance(call.error, ProviderThrottled):
            throttled += indices
            retry_after = max(retry_after, call.error.retry_after)
        elif isinstance(call.error, ProviderUnavailable) and attempt < MAX_ATTEMPTS:
            log.warning("ACS unavailable (attempt %d), retrying batch %s: %s", attempt,
                        job.batch, call.error.detail)
            retry += indices
        elif call.error is not None:
            failures.update(dict.fromkeys(indices, call.error.detail))
        else:
            assert call.outcomes is not None
            by_index.update(zip(indices, call.outcomes, strict=True))
    retry += [i for i, o in by_index.items() if o.retryable and attempt < MAX_ATTEMPTS]

    now = datetime.now(UTC)
    accepted = [(r, by_index[r.index]) for r in records
                if r.index in by_index and by_index[r.index].accepted]
    deps.awaiting_reports.add((r.id, now) for r, _ in accepted
                              if r.delivery_report and sent_late(r.batch, now))
    deps.conversations.record(ConversationRecord(
        our_number=r.sender, their_number=r.to, direction="outbound", message_id=r.id,
        text=r.body, at=_first_sent_time(r, now), tag=r.tag) for r, _ in accepted)
    waiting = set(retry) | set(throttled)

    overtaken: set[int] = set()

    def decide(r: MessageRecord) -> Change | None:
        if r.index in waiting:
            return None
        if not _pending(r):
            o = by_index.get(r.index)
            if (o is not None and o.accepted and r.provider_message_id is None
                    and r.status in _REPORTED):
                # Its delivery report overtook this write: keep what only the send knows, and
                # the `sent` step in its history (the status stays the report's).
                overtaken.add(r.index)
                at = max(r.created_at, _first_sent_time(r, now))
                return Change(fields={"provider_message_id": o.provider_message_id,
                                      "sent_at": at}, note=True,
                              noted_status=MessageStatus.SENT, noted_at=at,
                              detail="accepted by ACS (recorded after its delivery report)")
            return None
        if r.index in failures:
            return _to_status(MessageStatus.FAILED, "send failed", failures[r.index])
        o = by_index[r.index]
        if o.accepted:
            detail = "accepted by ACS" + (" (duplicate of an earlier attempt)"
                                          if o.duplicate else "")
            return _to_status(MessageStatus.SENT, detail, None,
                              provider_message_id=o.provider_message_id, sent_at=now)
        reason = o.error or f"ACS answered {o.http_status}"
        return _to_status(MessageStatus.FAILED, f"ACS refused the message ({o.http_status})",
                          reason)

    settled = [r for r in records if r.index not in waiting]
    # The claimed records carry fresh ETags: no reload unless something changed meanwhile.
    # Folded only when nothing goes back on the queue: a row must outlive a job not yet written.
    fold = clear_outbox and not waiting
    done = changes.apply(job.batch, [r.index for r in settled], decide,
                         preloaded=settled, clear_outbox=fold) if settled else []
    changes.sent_before(r for r in done if r.index in overtaken)
    if throttled:
        deps.jobs.enqueue(job.model_copy(update={"indices": throttled, "slot_at": None}),
                          retry_after)
    if retry:
        deps.jobs.enqueue(job.model_copy(update={
            "indices": retry, "slot_at": None, "attempt": attempt + 1}), backoff_s(attempt))
    # Sent by this call: also those whose delivery report was recorded before this write.
    sent = sum(1 for r in done if r.status == MessageStatus.SENT or r.index in overtaken)
    failed = sum(1 for r in done if r.status == MessageStatus.FAILED)
    return DispatchResult(sent=sent, failed=failed, deferred=len(retry) + len(throttled),
                          outbox_cleared=fold, retried=len(retry) + len(throttled),
                          acs_calls=len(groups), acs_ms=acs_ms)


def _first_sent_time(record: MessageRecord, default: datetime) -> datetime:
    # The stored first-sent time keeps the conversation row key stable across resends.
    if record.first_sent_at is not None:
        return record.first_sent_at
    return parsedate_to_datetime(record.first_sent) if record.first_sent else default
