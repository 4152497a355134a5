"""Campaign runs: firing a due run, fanning it out exactly once, cancel, completion.

A run is one delivery of a campaign's prepared snapshot: its messages live in their own batch
(`<due time><campaign id>`), the message index being the snapshot row index. So every step is
idempotent by key, which is what makes redelivered queue messages harmless:

- `fire` creates the run row (insert-if-absent), enqueues one `chunk` job per 1,000 snapshot rows
  on `sms-campaigns`, then records the run on the campaign (ETag-guarded). A crash before that
  record makes the next fire (timer or redelivered job) redo the same keyed work.
- `fan_out_chunk` writes the chunk's messages with entity-group transactions (a retry reads the
  existing rows back instead of writing twice), enqueues dispatch jobs, then marks the chunk
  done. A redelivered chunk finds its marker, or its messages; dispatch itself claims each
  message before calling ACS with a stable repeatability id, so a duplicate job sends nothing.
- Opt-outs recorded after preparation win: the chunk blocks them, and dispatch re-checks.
- Quiet hours are evaluated per recipient when the chunk fans out: a recipient inside them gets
  a `scheduled` message due when the window ends in their zone (the strictest of their zones).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from sms_core.concurrency import run_all
from sms_core.errors import NotFound
from sms_core.logs import fields
from sms_core.models.campaigns import FanoutJob, ScheduleIn
from sms_core.models.messages import (
    MAX_RECIPIENTS_PER_CALL,
    MAX_VISIBILITY_S,
    PENDING_STATUSES,
    DispatchJob,
    MessageStatus,
)
from sms_core.models.records import (
    CampaignRecord,
    Change,
    MessageRecord,
    RunRecord,
    is_counted_batch,
    run_key,
    run_time,
)
from sms_core.rules.quiet_hours import QuietHours, next_allowed, zones_for
from sms_core.settings import Settings
from sms_core.use_cases.ports import (
    Audiences,
    Campaigns,
    Jobs,
    OptOuts,
    Preparations,
    Templates,
)
from sms_core.use_cases.status_changes import StatusDeps, status_changes

log = logging.getLogger(__name__)

CHUNK_ROWS = 1000  # snapshot rows per fan-out job: 10 transactions of 100, 10 dispatch jobs
_CANCEL_SLICE = 500
_RETRIES = 8



class CampaignDeps(StatusDeps, Protocol):
    """The ports campaigns need: their store, the saved parts, opt-outs and both queues."""

    @property
    def settings(self) -> Settings: ...
    @property
    def campaigns(self) -> Campaigns: ...
    @property
    def audiences(self) -> Audiences: ...
    @property
    def templates(self) -> Templates: ...
    @property
    def optouts(self) -> OptOuts: ...
    @property
    def jobs(self) -> Jobs: ...
    @property
    def campaign_jobs(self) -> Jobs: ...
    @property
    def preparations(self) -> Preparations: ...


def _chunks(campaign: CampaignRecord) -> int:
    return max(1, -(-campaign.rows_span // CHUNK_ROWS))


def _slot(run: RunRecord, row_index: int) -> tuple[int, int]:
    """(block batch, message index) of snapshot row `row_index` in `run`.

    Fan-out chunks are dealt to the run's batches in turn (chunk c to batch c mod B, at
    index (c div B) * CHUNK_ROWS + its place in the chunk): a chunk's messages share one
    partition, for its transactions, while chunks written or dispatched at the same time land
    in different partitions, so no single partition carries a large run's load. With B = one
    batch per 10,000 rows, a batch holds at most 10 chunks (5-digit message indices); a run with
    one batch (every run before blocks) keeps message index = row.
    """
    chunk, place = divmod(row_index, CHUNK_ROWS)
    return chunk % run.blocks, (chunk // run.blocks) * CHUNK_ROWS + place


def arm(deps: CampaignDeps, campaign_id: str, due: datetime) -> None:
    """Make sure the run due at `due` fires: now, or by a delayed job on `sms-campaigns`.

    Runs further out than a queue message can wait are fired by the timer (`run_due`), which
    reads the schedule index every minute; the delayed job just makes the common case punctual.
    """
    delay = (due - datetime.now(UTC)).total_seconds()
    if delay <= 1:
        key = run_key(due)
        if fire(deps, campaign_id, key, first_chunk_inline=True):
            # The confirming request writes the first chunk itself, so a small campaign leaves
            # at once instead of after the queue's next poll; its job, enqueued with a delay,
            # finds the chunk done (or does it, if this request dies first).
            try:
                fan_out_chunk(deps, campaign_id, key, 0)
            except Exception:
                log.exception("campaign %s: first chunk of run %s left to its job",
                              campaign_id, key)
    elif delay < MAX_VISIBILITY_S:
        deps.campaign_jobs.enqueue(
            FanoutJob(kind="fire", campaign=campaign_id, run=run_key(due)), delay)


FIRST_CHUNK_GRACE_S = 30  # how long the first chunk's job waits when the request does it


def fire(deps: CampaignDeps, campaign_id: str, key: str, *,
         first_chunk_inline: bool = False) -> bool:
    """Start the run `key` of a campaign (idempotent) and schedule the next one, if any.

    Returns True when this call started the run. With `first_chunk_inline` the first chunk's
    job is enqueued with a delay: the caller means to fan that chunk out itself.
    """
    store = deps.campaigns
    try:
        campaign = store.get(campaign_id)
    except NotFound:
        store.unschedule(campaign_id, key)
        return False
    if campaign.status == "prepared":
        return False  # the send confirmation has not finished yet; it arms the run itself
    if campaign.status in ("canceled", "completed") or (
            campaign.last_run is not None and campaign.last_run >= key):
        store.unschedule(campaign_id, key)
        return False
    run = store.start_run(campaign_id, key, _chunks(campaign), campaign.blocks)
    _enqueue_chunks(deps, run, FIRST_CHUNK_GRACE_S if first_chunk_inline else 0)
    schedule = ScheduleIn.model_validate(campaign.schedule) if campaign.schedule else None
    nxt = schedule.next_after(run_time(key)) if schedule and schedule.recurring else None

    def record_run(c: CampaignRecord) -> bool:
        if c.status in ("canceled", "completed") or (c.last_run is not None
                                                      and c.last_run >= key):
            return False
        c.status, c.last_run, c.next_run_at, c.runs = "sending", key, nxt, c.runs + 1
        return True

    campaign = store.change(campaign, record_run)
    if campaign.status == "canceled":
        cancel_runs(deps, campaign)
    elif nxt is not None:
        store.schedule(campaign_id, nxt)
        arm(deps, campaign_id, nxt)
    store.unschedule(campaign_id, key)
    started = campaign.status == "sending" and campaign.last_run == key
    if started:
        log.info("campaign %s run %s started (batch %s): %d recipient row(s), %d chunk(s)%s",
                 campaign_id, key, run.batch, campaign.total, run.chunks,
                 f"; next run {nxt.isoformat()}" if nxt else "",
                 extra=fields(run.batch, campaignId=campaign_id, run=key, batch=run.batch,
                              rows=campaign.total, chunks=run.chunks,
                              nextRunAt=nxt.isoformat() if nxt else None))
    return started


def _enqueue_chunks(deps: CampaignDeps, run: RunRecord, first_delay_s: float) -> None:
    jobs = [FanoutJob(kind="chunk", campaign=run.campaign_id, run=run.key, chunk=n)
            for n in range(run.chunks) if n not in run.done_chunks]
    run_all(lambda j: deps.campaign_jobs.enqueue(j, first_delay_s if j.chunk == 0 else 0),
            jobs)


def handle_fanout_job(deps: CampaignDeps, job: FanoutJob) -> None:
    """Process one message of `sms-campaigns`."""
    if job.kind == "fire":
        fire(deps, job.campaign, job.run)
    elif job.kind == "cancel":
        cancel_chunk(deps, job.campaign, job.run, job.chunk)
    else:
        fan_out_chunk(deps, job.campaign, job.run, job.chunk)


def _message(campaign: CampaignRecord, run: RunRecord, row_index: int, to: str, body: str,
             segments: int, encoding: str, now: datetime, status: MessageStatus,
             error: str | None = None, send_at: datetime | None = None) -> MessageRecord:
    block, index = _slot(run, row_index)
    return MessageRecord(batch=run.block_batch(block), index=index, sender=campaign.sender, to=to,
                         body=body, status=status, initial_status=status, segments=segments,
                         encoding=encoding, created_at=now, updated_at=now, tag=campaign.tag,
                         delivery_report=campaign.delivery_report, error=error,
                         send_at=send_at)


def fan_out_chunk(deps: CampaignDeps, campaign_id: str, key: str, chunk: int) -> None:
    """Write the messages of one chunk of a run and enqueue their dispatch jobs, once."""
    started = time.perf_counter()
    store = deps.campaigns
    campaign = store.get(campaign_id)
    run = store.run(campaign_id, key, chunk=chunk)
    if run is None or chunk in run.done_chunks:
        return
    if run.status == "canceled" or campaign.status == "canceled":
        store.mark_chunk(run, chunk, {"Skipped": True})
        return
    rows = store.recipients(campaign, chunk * CHUNK_ROWS, (chunk + 1) * CHUNK_ROWS)
    batch = run.block_batch(_slot(run, chunk * CHUNK_ROWS)[0])
    now = datetime.now(UTC)
    opted_out = deps.optouts.opted_out_among(campaign.sender, [r.to for r in rows])
    quiet = (QuietHours.parse(campaign.quiet_hours["start"], campaign.quiet_hours["end"])
             if campaign.quiet_hours else None)
    fallback = (campaign.schedule or {}).get("timezone") or "UTC"
    records = []
    for r in rows:
        if r.to in opted_out:
            records.append(_message(campaign, run, r.index, r.to, r.body, r.segments,
                                    r.encoding, now, MessageStatus.BLOCKED,
                                    f"{r.to} opted out of messages from {campaign.sender}"))
            continue
        when = next_allowed(quiet, zones_for(r.to), now, fallback) if quiet else now
        deferred = (when - now).total_seconds() > 1
        records.append(_message(
            campaign, run, r.index, r.to, r.body, r.segments, r.encoding, now,
            MessageStatus.SCHEDULED if deferred else MessageStatus.QUEUED,
            send_at=when if deferred else None))
    stored = deps.messages.create_batch(records)
    latest = store.run(campaign_id, key, chunk=chunk)
    if latest is None or latest.status == "canceled":
        # Canceled while we wrote: the cancel's sweep may have run before our rows existed.
        _cancel_messages(deps, batch, stored)
        store.mark_chunk(run, chunk, {"Skipped": True})
        return
    with status_changes(deps) as changes:
        changes.created(stored)
    pending = [r for r in stored if r.status in PENDING_STATUSES]
    _enqueue_dispatch(deps, batch, pending)
    store.mark_chunk(run, chunk, {"Messages": len(stored), "Pending": len(pending)})
    counts = dict(Counter(r.status.value for r in stored))
    ms = (time.perf_counter() - started) * 1000
    log.info("campaign %s run %s chunk %d of %d (batch %s): %d message(s) (%s) in %.1f ms",
             campaign_id, key, chunk + 1, run.chunks, batch, len(stored),
             _counts_text(counts), ms,
             extra=fields(batch, campaignId=campaign_id, run=key, batch=batch,
                          chunk=chunk + 1, chunks=run.chunks, messages=len(stored),
                          counts=counts, durationMs=round(ms, 1)))


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "none"


def _enqueue_dispatch(deps: CampaignDeps, batch: str, records: Sequence[MessageRecord]) -> None:
    by_due: dict[datetime | None, list[int]] = {}
    for r in records:
        by_due.setdefault(r.send_at, []).append(r.index)
    jobs = [DispatchJob(batch=batch, indices=indices[i:i + MAX_RECIPIENTS_PER_CALL],
                        not_before=due)
            for due, indices in by_due.items()
            for i in range(0, len(indices), MAX_RECIPIENTS_PER_CALL)]
    now = time.time()
    run_all(lambda j: deps.jobs.enqueue(
        j, j.not_before.timestamp() - now if j.not_before else 0), jobs)


def _cancel_decision(r: MessageRecord) -> Change | None:
    if r.status not in PENDING_STATUSES:
        return None
    if r.first_sent:
        # Claimed by dispatch: it may be in an ACS call right now, so only dispatch knows
        # whether it leaves; it cancels the message if the call is retried instead.
        return None if r.cancel_requested else Change(fields={"cancel_requested": True})
    return Change(fields={"error": "the campaign was canceled before this message was sent"},
                  status=MessageStatus.CANCELED, detail="campaign canceled")


def _cancel_messages(deps: CampaignDeps, batch: str,
                     records: Sequence[MessageRecord]) -> None:
    """Cancel the messages that have not left (see `_cancel_decision`)."""
    indices = [r.index for r in records if r.status in PENDING_STATUSES]
    slices = [indices[i:i + _CANCEL_SLICE] for i in range(0, len(indices), _CANCEL_SLICE)]

    with status_changes(deps) as changes:
        run_all(lambda part: changes.apply(batch, part, _cancel_decision,
                                           when=lambda r: r.status == MessageStatus.CANCELED),
                slices)


def cancel_runs(deps: CampaignDeps, campaign: CampaignRecord) -> None:
    """Cancel every run still sending: mark it, then cancel its waiting messages.

    A run of one chunk has its messages canceled here; a larger one by a `cancel` job per
    fanned-out chunk: every canceled message is an update and an `sms.status` event, which for
    a run of millions no request could wait for. Marked canceled, a run fans out nothing more
    (its chunks skip), and a sweep reaches a chunk's messages within seconds.
    """
    for run in deps.campaigns.runs(campaign.id):
        for _ in range(_RETRIES):
            if run.status != "sending":
                break
            if deps.campaigns.set_run_status(run, "canceled"):
                log.info("campaign %s run %s canceled (batch %s)", campaign.id, run.key,
                         run.batch, extra=fields(run.batch, campaignId=campaign.id,
                                                 run=run.key, batch=run.batch))
                break
            run = deps.campaigns.run(campaign.id, run.key) or run
        if run.status != "canceled":
            continue
        if run.chunks <= 1:
            run_all(lambda batch: _cancel_messages(deps, batch, deps.messages.pending(batch)),
                    run.batches)
        else:
            # Every chunk, not only those marked done: one being fanned out now may have
            # checked the run before it was marked canceled, and its rows exist by the time
            # the sweep (enqueued after the mark) reads them.
            deps.campaign_jobs.enqueue_many(
                [FanoutJob(kind="cancel", campaign=campaign.id, run=run.key, chunk=n)
                 for n in range(run.chunks)])


def cancel_chunk(deps: CampaignDeps, campaign_id: str, key: str, chunk: int) -> None:
    """The `cancel` job: cancel the waiting messages of one fanned-out chunk of a canceled run
    (idempotent: a message no longer waiting is left as it is)."""
    run = deps.campaigns.run(campaign_id, key)
    if run is None or run.status != "canceled":
        return
    block, first = _slot(run, chunk * CHUNK_ROWS)
    batch = run.block_batch(block)
    _cancel_messages(deps, batch, deps.messages.load(batch, range(first, first + CHUNK_ROWS)))


def refresh_runs(deps: CampaignDeps, campaign: CampaignRecord
                 ) -> tuple[CampaignRecord, list[tuple[RunRecord, dict[str, int]]]]:
    """Live counts per run; marks runs (and the campaign) completed when nothing is left.

    The counts are kept as messages change (`Messages.run_counts`: a few rows per run, however
    many messages), and kept on the run itself once none of them can change any more (nothing
    pending, and nothing `sent` still waiting for its delivery report): a campaign's older runs
    then cost nothing to read. Runs started before totals were kept are counted on read.
    """
    out = []
    # A `sent` message can still change while its delivery report may come.
    unsettled = (*PENDING_STATUSES, *((MessageStatus.SENT,) if campaign.delivery_report else ()))
    for run in deps.campaigns.runs(campaign.id):
        if run.settled_counts is not None:
            out.append((run, run.settled_counts))
            continue
        counted = is_counted_batch(run.batch)
        counts = (_run_counts(deps, run) if counted
                  else deps.messages.status_counts(run.batch))
        if run.status == "sending" and len(run.done_chunks) >= run.chunks and not any(
                counts.get(s, 0) for s in PENDING_STATUSES) and deps.campaigns.set_run_status(
                run, "completed"):
            _log_completed(campaign, run, counts)
        if counted and run.status != "sending" and not any(
                counts.get(str(s), 0) for s in unsettled):
            deps.campaigns.settle_run(run, counts)
        out.append((run, counts))
    if campaign.status == "sending" and all(r.status != "sending" for r, _ in out):
        campaign.status = "scheduled" if campaign.next_run_at else "completed"
        if not deps.campaigns.save(campaign):
            campaign = deps.campaigns.get(campaign.id)
    return campaign, out


def _run_counts(deps: CampaignDeps, run: RunRecord) -> dict[str, int]:
    """A run's kept totals: those of each of its batches (one per block), read side by side."""
    counts: Counter[str] = Counter()
    for part in run_all(deps.messages.run_counts, run.batches):
        counts.update(part)
    return dict(counts)


def _log_completed(campaign: CampaignRecord, run: RunRecord, counts: dict[str, int]) -> None:
    """The line of a run that has nothing left to send (told once: by the one ETag-guarded
    change to `completed`)."""
    seconds = ((run.finished_at or datetime.now(UTC)) - run.started_at).total_seconds()
    log.info("campaign %s run %s completed (batch %s) in %.1f s: %s", campaign.id, run.key,
             run.batch, seconds, _counts_text(counts),
             extra=fields(run.batch, campaignId=campaign.id, run=run.key, batch=run.batch,
                          counts=dict(counts), durationS=round(seconds, 1)))


def run_due(deps: CampaignDeps, now: datetime | None = None) -> int:
    """The timer's work: fire every due run, then settle campaigns that finished sending."""
    now = now or datetime.now(UTC)
    fired = 0
    for campaign_id, key in list(deps.campaigns.due(now)):
        try:
            fire(deps, campaign_id, key)
            fired += 1
        except Exception:  # one broken campaign must not stop the others; it retries next tick
            log.exception("campaign %s: firing run %s failed", campaign_id, key)
    for campaign in deps.campaigns.with_status("sending"):
        refresh_runs(deps, campaign)
    return fired
