"""Nothing stranded: the outbox of accepted messages and the sweeper that empties it.

`accept_send` writes, in the same entity-group transaction as every 99 messages, an outbox row
listing the pending ones, and deletes it once they were sent inline or their jobs are on
`sms-outbound`. A row still there after `GRACE` belongs to a request that died between the two
(a crash, a queue outage): `sweep_outbox` (a timer, every minute) puts those messages on the
queue, once. A job put there twice (the request was only slow) is harmless: dispatch skips
messages that left the pending states, and a resend carries the same repeatability id.

The sweeper reads the partitions of batches created since its cursor (minus `OVERLAP`, for
requests that were slow to write), so it never scans the whole table. A keyed retry writes into
its first attempt's batch, which may lie behind the cursor: such a request answers 503 when its
enqueue fails (`behind_the_sweeper`), and the client's retry with the same key finishes it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sms_core.models.messages import MAX_RECIPIENTS_PER_CALL, PENDING_STATUSES, DispatchJob
from sms_core.models.records import MessageRecord, OutboxRecord, batch_time
from sms_core.use_cases.ports import Jobs, Messages, Outbox

log = logging.getLogger(__name__)

GRACE = timedelta(seconds=60)  # longer than any live request takes to hand its messages over
OVERLAP = timedelta(minutes=10)  # how far behind its cursor the sweeper looks again
FIRST_LOOKBACK = timedelta(hours=24)  # the first sweep of a deployment


class SweepDeps(Protocol):
    """The ports the outbox sweeper needs."""

    @property
    def messages(self) -> Messages: ...
    @property
    def outbox(self) -> Outbox: ...
    @property
    def jobs(self) -> Jobs: ...


def enqueue_dispatch(jobs: Jobs, batch: str, records: list[MessageRecord], *,
                     priority: bool = False) -> None:
    """Put pending messages of one batch on `sms-outbound`, 100 per job, scheduled ones
    hidden until their time."""
    send_at = records[0].send_at
    delay = (send_at - datetime.now(UTC)).total_seconds() if send_at else 0.0
    jobs.enqueue_many([DispatchJob(
        batch=batch, indices=[r.index for r in records[i:i + MAX_RECIPIENTS_PER_CALL]],
        not_before=send_at if delay > 0 else None, priority=priority or None)
        for i in range(0, len(records), MAX_RECIPIENTS_PER_CALL)], delay_s=delay)


def behind_the_sweeper(batch: str, now: datetime) -> bool:
    """True when the sweeper may no longer look at this batch's partition."""
    created = batch_time(batch)
    return created is None or created < now - OVERLAP / 2


def sweep_outbox(deps: SweepDeps, now: datetime | None = None) -> int:
    """Hand over the messages of outbox rows older than `GRACE`; returns how many."""
    now = now or datetime.now(UTC)
    until = now - GRACE
    since = (deps.outbox.outbox_cursor() or now - FIRST_LOOKBACK) - OVERLAP
    handed = sum(_hand_over(deps, row) for row in deps.outbox.stranded(since, until))
    deps.outbox.move_outbox_cursor(until)
    return handed


def _hand_over(deps: SweepDeps, row: OutboxRecord) -> int:
    listed = set(row.indices)
    waiting = [r for r in deps.messages.load(row.batch, row.indices)
               if r.index in listed and r.status in PENDING_STATUSES]
    if waiting:
        log.warning("outbox: %d messages of batch %s had no job; enqueueing them",
                    len(waiting), row.batch)
        for send_at in sorted({r.send_at for r in waiting},
                              key=lambda t: t or datetime.min.replace(tzinfo=UTC)):
            enqueue_dispatch(deps.jobs, row.batch, [r for r in waiting if r.send_at == send_at])
    deps.outbox.clear_outbox(row.batch, row.indices, on_messages=row.on_message)
    return len(waiting)
