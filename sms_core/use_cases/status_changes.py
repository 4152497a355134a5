"""Status changes of messages, told to the app and counted once per unit of work.

A use case never "remembers to announce": it changes messages through `StatusChanges`, opened
with `status_changes(deps)`, and when the unit of work ends every message that left the pending
states is published as `sms.status` and counted in the analytics, in one call each.

Both are keyed by `status-<message id>-<status>`, so announcing again is harmless: a handler
redelivered after a crash `republish`es what it finds already settled, and the app (which
de-duplicates on the event id) and the counters (a ledger per fact) see each change once.

Attribution (docs/architecture.md): a message's outcomes count on the UTC day it was sent (its
creation day when it never was), so a day's deliveryRate covers that day's messages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Protocol

from sms_core.models.app_events import status_event
from sms_core.models.messages import PENDING_STATUSES, MessageStatus
from sms_core.models.records import Decide, MessageRecord
from sms_core.rules.analytics import Fact, utc_day
from sms_core.use_cases.ports import Analytics, AppEvents, Messages

log = logging.getLogger(__name__)


class StatusDeps(Protocol):
    """The ports a unit of work that changes message statuses needs."""

    @property
    def messages(self) -> Messages: ...
    @property
    def analytics(self) -> Analytics: ...
    @property
    def app_events(self) -> AppEvents: ...


def status_fact(record: MessageRecord, extra: Mapping[str, int] | None = None) -> Fact | None:
    """The analytics fact of a message's current (non-pending) status."""
    if record.status in PENDING_STATUSES or record.status == MessageStatus.CANCELED:
        return None
    counts = {str(record.status): 1}
    if record.status == MessageStatus.SENT:
        counts["segments"] = record.segments
    counts.update(extra or {})
    day = utc_day(record.sent_at or record.created_at)
    return Fact(id=f"status-{record.id}-{record.status}", day=day, sender=record.sender,
                tag=record.tag, counts=counts)


class StatusChanges:
    """The messages one unit of work created or changed, announced together at its end."""

    def __init__(self, deps: StatusDeps) -> None:
        self._deps = deps
        self._facts: dict[str, Fact] = {}
        self._settled: dict[str, MessageRecord] = {}

    def create_batch(self, records: Sequence[MessageRecord], *,
                     outbox: bool = False) -> list[MessageRecord]:
        """Store a send request's messages; those blocked or rejected up front are counted."""
        stored = self._deps.messages.create_batch(records, outbox=outbox)
        self.created(stored)
        return stored

    def created(self, records: Iterable[MessageRecord]) -> None:
        """Count the messages stored blocked or rejected up front (no `sms.status` for them)."""
        for r in records:
            if r.initial_status not in PENDING_STATUSES:
                self._count(status_fact(r))

    def apply(self, batch: str, indices: Iterable[int], decide: Decide, *,
              preloaded: Sequence[MessageRecord] | None = None,
              extra: Mapping[str, int] | None = None,
              when: Callable[[MessageRecord], bool] | None = None,
              clear_outbox: bool = False) -> list[MessageRecord]:
        """`Messages.apply`, remembering every settled record (changed or found so).

        `when` narrows what is announced (say, only records now in the status a report set);
        `extra` adds counters to their analytics facts.
        """
        done = self._deps.messages.apply(batch, indices, decide, preloaded,
                                         clear_outbox=clear_outbox)
        self.republish((r for r in done if when is None or when(r)), extra)
        return done

    def republish(self, records: Iterable[MessageRecord],
                  extra: Mapping[str, int] | None = None) -> None:
        """Announce records already settled (a redelivery: the crashed run may not have)."""
        for r in records:
            if r.status not in PENDING_STATUSES:
                self._settled[f"{r.id}-{r.status}"] = r
                self._count(status_fact(r, extra))

    def sent_before(self, records: Iterable[MessageRecord]) -> None:
        """Count the `sent` of messages whose delivery report was applied before it."""
        for r in records:
            self._count(status_fact(replace(r, status=MessageStatus.SENT)))

    def _count(self, fact: Fact | None) -> None:
        if fact is not None:
            self._facts[fact.id] = fact

    def announce(self) -> None:
        """Count and publish everything remembered so far, once; then forget it."""
        facts, settled = list(self._facts.values()), list(self._settled.values())
        self._facts, self._settled = {}, {}
        if facts:
            self._deps.analytics.record(facts)
        if settled:
            self._deps.app_events.publish_many([status_event(r) for r in settled])


@contextmanager
def status_changes(deps: StatusDeps) -> Iterator[StatusChanges]:
    """One unit of work: what it changed is announced when it ends, even when it fails.

    A failure after some changes were committed still announces those (they happened); should
    the announcement fail too, the original error is the one raised, and the redelivery of the
    job or event announces again.
    """
    changes = StatusChanges(deps)
    try:
        yield changes
    except BaseException:
        try:
            changes.announce()
        except Exception:
            log.warning("could not announce the status changes of a failed unit of work",
                        exc_info=True)
        raise
    changes.announce()
