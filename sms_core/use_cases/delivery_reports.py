"""Delivery reports: ACS `SMSDeliveryReportReceived` events move a message to its final status."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sms_core.logs import fields
from sms_core.models.events import DeliveryReport, DeliveryReportRetry
from sms_core.models.messages import MessageStatus, can_transition, report_route
from sms_core.models.records import (
    Change,
    MessageRecord,
    bucket_hour,
    sent_late,
    split_message_id,
)
from sms_core.models.records import message_id as public_id
from sms_core.rules.analytics import Fact, utc_day
from sms_core.settings import Settings
from sms_core.use_cases.optout_changes import change_optout
from sms_core.use_cases.ports import AwaitingReports, Jobs, OptOuts, ProviderIds
from sms_core.use_cases.status_changes import StatusChanges, StatusDeps, status_changes

log = logging.getLogger(__name__)

_STATUS_BY_ACS = {"delivered": MessageStatus.DELIVERED, "failed": MessageStatus.FAILED,
                  "expired": MessageStatus.EXPIRED}
CARRIER_OPT_OUT = 4007  # "The Destination/To number has opted out of receiving messages from you."
UNVERIFIED_TOLL_FREE = 4010  # "Message was blocked due to the toll-free number not being verified."
# A report whose message is not known yet is put back on its queue after these delays (seconds):
# its ACS id is being written by the dispatcher that got it from ACS a moment ago. After the
# last, it waits for the reconcile timer, kept in UnmatchedReports from the first try on.
REPORT_RETRY_DELAYS_S = (1, 2, 4, 8, 16)
_CODE = re.compile(r"^\s*(\d{4})\b")


class ReportDeps(StatusDeps, Protocol):
    """The ports applying delivery reports (and expiring those that never came) needs."""

    @property
    def settings(self) -> Settings: ...
    @property
    def provider_ids(self) -> ProviderIds: ...
    @property
    def awaiting_reports(self) -> AwaitingReports: ...
    @property
    def optouts(self) -> OptOuts: ...
    @property
    def report_retries(self) -> Jobs: ...


def delivery_code(details: str | None) -> int | None:
    """The leading numeric ACS code of `deliveryStatusDetails` ("4006: ..." -> 4006), if any."""
    m = _CODE.match(details or "")
    return int(m.group(1)) if m else None


def apply_delivery_reports(deps: ReportDeps, reports: Sequence[DeliveryReport]) -> int:
    """Apply the delivery reports of one queue message; returns how many changed a message."""
    with status_changes(deps) as changes:
        return sum(apply_delivery_report(deps, changes, r) for r in reports)


def apply_delivery_report(deps: ReportDeps, changes: StatusChanges,
                          report: DeliveryReport) -> bool:
    """Apply one report. Unknown messages are kept for reconciliation, never dropped."""
    provider_id, acs_status, details = report.provider_message_id, report.status, report.details
    found = locate(deps, report)
    kept_as = report.event_id or provider_id
    if found is None:
        route = report_route(report.tag)
        batch = route.batch if route is not None else None
        facts = fields(batch, batch=batch, providerMessageId=provider_id,
                       deliveryStatus=acs_status, retry=report.retry)
        # Kept first: if putting it back fails, the reconcile timer still has it.
        deps.provider_ids.keep_unmatched(provider_id, kept_as, dict(report.raw))
        if provider_id and report.retry < len(REPORT_RETRY_DELAYS_S):
            deps.report_retries.enqueue(DeliveryReportRetry(report, report.retry + 1),
                                        REPORT_RETRY_DELAYS_S[report.retry])
            log.info("delivery report %s for ACS message %s (batch %s) matches no message "
                     "yet: put back, try %d of %d", acs_status or "?", provider_id,
                     batch or "unknown", report.retry + 1, len(REPORT_RETRY_DELAYS_S),
                     extra=facts)
        else:
            log.warning("delivery report for unknown ACS message %s (batch %s) kept for "
                        "reconciliation", provider_id, batch or "unknown", extra=facts)
        return False
    if report.retry:  # a retry that found its message: the kept copy is done with
        deps.provider_ids.forget_unmatched(provider_id, kept_as)
    new_status = _STATUS_BY_ACS.get(acs_status.lower())
    batch, index, preloaded = found
    data = {"deliveryStatus": acs_status, "deliveryStatusDetails": details,
            "deliveryAttempts": report.attempts,
            "receivedTimestamp": report.received_timestamp, "eventId": report.event_id}
    data = {k: v for k, v in data.items() if v is not None}
    detail = f"delivery report: {acs_status or '?'}" + (f" ({details})" if details else "")

    moved = [False]  # whether this report moved the message (not a redelivery or late one)

    def decide(r: MessageRecord) -> Change | None:
        if new_status is None:
            # A status ACS may add later: kept in the history, the lifecycle left alone.
            if any(eid == report.event_id for eid in r.report_ids):
                return None
            return Change(fields={"report_ids": [*r.report_ids, report.event_id][-20:]},
                          detail=detail, data=data, note=True)
        # Decided again after a concurrent change: the last decision is what was written.
        moved[0] = can_transition(r.status, new_status)
        if not moved[0]:
            return None
        error = None if new_status == MessageStatus.DELIVERED else (details or acs_status)
        return Change(fields={"error": error}, status=new_status, detail=detail, data=data)

    if new_status is not None and delivery_code(details) == CARRIER_OPT_OUT:
        preloaded = preloaded or deps.messages.load(batch, [index])
        if preloaded and can_transition(preloaded[0].status, new_status):
            _carrier_opt_out(deps, preloaded[0], details)
    toll_free = delivery_code(details) == UNVERIFIED_TOLL_FREE
    # Announced also on a redelivered report: ids make it idempotent for app and analytics.
    done = changes.apply(batch, [index], decide, preloaded=preloaded,
                         extra={"unverifiedTollFree": 1} if toll_free else None,
                         when=lambda r: new_status is not None and r.status == new_status)
    changed = bool(done) and new_status is not None and done[0].status == new_status
    if changed and done[0].sent_at is not None and sent_late(done[0].batch, done[0].sent_at):
        deps.awaiting_reports.remove(done[0].id, done[0].sent_at)
    _log_report(report, batch, index, done[0] if done else None, moved[0])
    return changed


def _log_report(report: DeliveryReport, batch: str, index: int, record: MessageRecord | None,
                changed: bool) -> None:
    """The one line of an applied delivery report (the message's status after it, and whether
    this report moved it there: a redelivery or a late report does not)."""
    message_id = record.id if record is not None else public_id(batch, index)
    status = record.status.value if record is not None else None
    log.info("delivery report %s for message %s (batch %s): %s%s", report.status or "?",
             message_id, batch, status or "not applied",
             "" if changed else " (no change)",
             extra=fields(batch, batch=batch, messageId=message_id,
                          providerMessageId=report.provider_message_id,
                          deliveryStatus=report.status,
                          deliveryStatusDetails=report.details, messageStatus=status,
                          changed=changed, retry=report.retry or None))


def locate(deps: ReportDeps, report: DeliveryReport
           ) -> tuple[str, int, list[MessageRecord] | None] | None:
    """The batch and index of a report's message (and the message, when it was read on the
    way), or None when we do not know it (yet).

    The tag our send call gave ACS names the batch and index range (`report_route`): one range
    query finds the message. A report without such a tag (sent before tags carried the route)
    is looked up in the ACS-id index.
    """
    route = report_route(report.tag)
    if route is not None and report.to:
        record = deps.messages.find_recipient(route.batch, route.first, route.last, report.to)
        return None if record is None else (record.batch, record.index, [record])
    ours = (deps.provider_ids.lookup(report.provider_message_id)
            if report.provider_message_id else None)
    if ours is None:
        return None
    batch, index = split_message_id(ours)
    return batch, index, None


def _carrier_opt_out(deps: ReportDeps, record: MessageRecord, details: str | None) -> None:
    """The carrier says the recipient opted out (4007): record it, once per message.

    Done before the report changes the message's status: a redelivery after a crash in between
    finds the message not failed yet and does it again (the store sees no change the second
    time); a redelivery after the change finds it failed and does nothing, so a START the
    person sent meanwhile is not undone.
    """
    deps.analytics.record([Fact(id=f"optout-carrier-{record.id}",
                                day=utc_day(record.sent_at or record.created_at),
                                sender=record.sender, tag=record.tag, counts={"optOuts": 1})])
    change_optout(deps, record.sender, record.to, opted_out=True, source="carrier",
                  event_id=f"optout-carrier-{record.id}", reason=str(details),
                  event_details={"reason": details})


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one expiry run did."""

    buckets: int
    expired: int


def expire_overdue(deps: ReportDeps, now: datetime | None = None) -> SweepResult:
    """Expire messages still `sent` SMS_DLR_TIMEOUT_HOURS after sending (the expiry timer)."""
    now = now or datetime.now(UTC)
    hours = deps.settings.dlr_timeout_hours
    cutoff = now - timedelta(hours=hours)
    watch = deps.awaiting_reports
    expired = 0
    buckets = watch.due_buckets(now, timedelta(hours=hours))
    for bucket in buckets:
        entries = watch.entries(bucket)
        by_batch: dict[str, set[int]] = {}
        for entry in entries:
            batch, index = split_message_id(entry.message_id)
            by_batch.setdefault(batch, set()).add(index)
        # Messages sent promptly have no row: the batches created in the hour before this one
        # were all sent by its end (PROMPT_SEND), and that end is past the cutoff now. A late
        # one among them is left to its own row.
        hour = bucket_hour(bucket)
        for r in deps.messages.awaiting_report(hour - timedelta(hours=1), hour):
            if r.sent_at is not None and r.sent_at < cutoff:
                by_batch.setdefault(r.batch, set()).add(r.index)
        with status_changes(deps) as changes:
            for batch, indices in by_batch.items():
                done = changes.apply(batch, indices, lambda r: Change(
                    fields={"error": f"no delivery report within {hours:g} hours"},
                    status=MessageStatus.EXPIRED, detail="no delivery report")
                    if r.status == MessageStatus.SENT else None,
                    when=lambda r: r.status == MessageStatus.EXPIRED)
                expired += sum(1 for r in done if r.status == MessageStatus.EXPIRED)
        watch.finish_bucket(bucket, entries)
    if expired:
        log.info("expired %d message(s) without a delivery report", expired)
    return SweepResult(buckets=len(buckets), expired=expired)


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """What one reconcile run did, and what is still unknown."""

    applied: int
    unmatched: int
    invalid_inbound: int
    oldest_unmatched: datetime | None


def reconcile_reports(deps: ReportDeps) -> ReconcileResult:
    """Apply kept reports whose message is now known; report the rest (the reconcile timer)."""
    applied, unmatched, invalid = 0, 0, 0
    oldest: datetime | None = None
    for kept in deps.provider_ids.unmatched():
        if kept.provider_id == "invalid-inbound" or kept.report is None:
            # An inbound event we could not use, or a report that no longer reads back (cut at
            # the 30,000 characters a row keeps): kept for a person, never forgotten unread.
            invalid += 1
            continue
        if locate(deps, kept.report) is None:
            unmatched += 1
            received = kept.received_at
            oldest = received if oldest is None or (received and received < oldest) else oldest
            continue
        apply_delivery_reports(deps, [kept.report])
        deps.provider_ids.forget_unmatched(kept.provider_id, kept.event_id)
        applied += 1
    if unmatched or invalid:
        log.warning("reconcile: %d delivery report(s) still match no message (oldest %s); "
                    "%d unusable event(s) kept in UnmatchedReports", unmatched,
                    oldest, invalid)
    return ReconcileResult(applied, unmatched, invalid, oldest)
