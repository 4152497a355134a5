"""Delivery reports: ACS `SMSDeliveryReportReceived` events move a message to its final status."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sms_core.adapters.event_grid import GridEvent, ci_get, decode_payload
from sms_core.bootstrap import Services
from sms_core.models.messages import MessageStatus, can_transition
from sms_core.models.records import Change, MessageRecord, split_message_id
from sms_core.rules.analytics import Fact, utc_day
from sms_core.use_cases.announcements import announce

log = logging.getLogger(__name__)

DELIVERY_REPORT_EVENT = "Microsoft.Communication.SMSDeliveryReportReceived"
_STATUS_BY_ACS = {"delivered": MessageStatus.DELIVERED, "failed": MessageStatus.FAILED,
                  "expired": MessageStatus.EXPIRED}
CARRIER_OPT_OUT = 4007  # "The Destination/To number has opted out of receiving messages from you."
UNVERIFIED_TOLL_FREE = 4010  # "Message was blocked due to the toll-free number not being verified."
_CODE = re.compile(r"^\s*(\d{4})\b")


def delivery_code(details: str | None) -> int | None:
    """The leading numeric ACS code of `deliveryStatusDetails` ("4006: ..." -> 4006), if any."""
    m = _CODE.match(details or "")
    return int(m.group(1)) if m else None


def handle_delivery_reports(services: Services, body: bytes | str) -> int:
    """Apply every delivery report in a queue message; returns how many changed a message."""
    return sum(apply_delivery_report(services, e) for e in decode_payload(body)
               if e.type.lower() == DELIVERY_REPORT_EVENT.lower())


def apply_delivery_report(services: Services, event: GridEvent) -> bool:
    """Apply one report. Unknown messages are kept for reconciliation, never dropped."""
    data = event.data
    provider_id = str(ci_get(data, "messageId") or "")
    acs_status = str(ci_get(data, "deliveryStatus") or "")
    details = ci_get(data, "deliveryStatusDetails")
    ours = services.provider_ids.lookup(provider_id) if provider_id else None
    if ours is None:
        services.provider_ids.keep_unmatched(provider_id, event.id or provider_id,
                                             dict(event.raw))
        log.warning("delivery report for unknown ACS message %s kept for reconciliation",
                    provider_id)
        return False
    new_status = _STATUS_BY_ACS.get(acs_status.lower())
    batch, index = split_message_id(ours)
    report = {"deliveryStatus": acs_status, "deliveryStatusDetails": details,
              "deliveryAttempts": ci_get(data, "deliveryAttempts"),
              "receivedTimestamp": ci_get(data, "receivedTimestamp"), "eventId": event.id}
    report = {k: v for k, v in report.items() if v is not None}
    detail = f"delivery report: {acs_status or '?'}" + (f" ({details})" if details else "")

    def decide(r: MessageRecord) -> Change | None:
        if new_status is None:
            # A status ACS may add later: kept in the history, the lifecycle left alone.
            if any(eid == event.id for eid in r.report_ids):
                return None
            return Change(fields={"report_ids": [*r.report_ids, event.id][-20:]},
                          detail=detail, data=report, note=True)
        if not can_transition(r.status, new_status):
            return None
        error = None if new_status == MessageStatus.DELIVERED else (details or acs_status)
        return Change(fields={"error": error}, status=new_status, detail=detail, data=report)

    done = services.messages.apply(batch, [index], decide)
    changed = bool(done) and new_status is not None and done[0].status == new_status
    if changed:  # also on a redelivered report: ids make it idempotent for app and analytics
        toll_free = delivery_code(details) == UNVERIFIED_TOLL_FREE
        announce(services, done, {"unverifiedTollFree": 1} if toll_free else None)
    if changed and done[0].sent_at is not None:
        services.awaiting_reports.remove(done[0].id, done[0].sent_at)
    if changed and delivery_code(details) == CARRIER_OPT_OUT:
        record = done[0]
        services.analytics.record([Fact(id=f"optout-carrier-{record.id}",
                                        day=utc_day(record.sent_at or record.created_at),
                                        sender=record.sender, tag=record.tag,
                                        counts={"optOuts": 1})])
        if services.optouts.opt_out(record.sender, record.to, source="carrier",
                                    reason=str(details)):
            services.app_events.publish("optout.changed", f"optout-carrier-{record.id}", {
                "from": record.sender, "to": record.to, "optedOut": True,
                "scope": services.settings.optout_scope, "source": "carrier",
                "reason": details})
    return changed


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one expiry run did."""

    buckets: int
    expired: int


def expire_overdue(services: Services, now: datetime | None = None) -> SweepResult:
    """Expire messages still `sent` SMS_DLR_TIMEOUT_HOURS after sending (the expiry timer)."""
    now = now or datetime.now(UTC)
    hours = services.settings.dlr_timeout_hours
    watch = services.awaiting_reports
    expired = 0
    buckets = watch.due_buckets(now, timedelta(hours=hours))
    for bucket in buckets:
        entries = watch.entries(bucket)
        by_batch: dict[str, list[int]] = {}
        for entry in entries:
            batch, index = split_message_id(entry.message_id)
            by_batch.setdefault(batch, []).append(index)
        for batch, indices in by_batch.items():
            done = services.messages.apply(batch, indices, lambda r: Change(
                fields={"error": f"no delivery report within {hours:g} hours"},
                status=MessageStatus.EXPIRED, detail="no delivery report")
                if r.status == MessageStatus.SENT else None)
            newly = [r for r in done if r.status == MessageStatus.EXPIRED]
            announce(services, newly)
            expired += len(newly)
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


def reconcile_reports(services: Services) -> ReconcileResult:
    """Apply kept reports whose message is now known; report the rest (the reconcile timer)."""
    applied, unmatched, invalid = 0, 0, 0
    oldest: datetime | None = None
    for kept in services.provider_ids.unmatched():
        if kept.provider_id == "invalid-inbound":
            invalid += 1
            continue
        if services.provider_ids.lookup(kept.provider_id) is None:
            unmatched += 1
            received = kept.received_at
            oldest = received if oldest is None or (received and received < oldest) else oldest
            continue
        for event in decode_payload(json.dumps(kept.event)):
            apply_delivery_report(services, event)
        services.provider_ids.forget_unmatched(kept.provider_id, kept.event_id)
        applied += 1
    if unmatched or invalid:
        log.warning("reconcile: %d delivery report(s) still match no message (oldest %s); "
                    "%d invalid inbound event(s) kept in UnmatchedReports", unmatched,
                    oldest, invalid)
    return ReconcileResult(applied, unmatched, invalid, oldest)
