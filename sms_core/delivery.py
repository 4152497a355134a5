"""Delivery reports: ACS `SMSDeliveryReportReceived` events move a message to its final status."""

from __future__ import annotations

import logging
import re

from sms_core.app import Services
from sms_core.events import GridEvent, ci_get, decode_payload
from sms_core.message_store import Change, MessageRecord, split_message_id
from sms_core.models import MessageStatus, can_transition

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
    if changed and delivery_code(details) == CARRIER_OPT_OUT:
        record = done[0]
        if services.optouts.opt_out(record.sender, record.to, source="carrier",
                                    reason=str(details)):
            services.app_events.publish("optout.changed", f"optout-carrier-{record.id}", {
                "from": record.sender, "to": record.to, "optedOut": True,
                "scope": services.settings.optout_scope, "source": "carrier",
                "reason": details})
    return changed
