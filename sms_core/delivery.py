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
    if new_status is None:
        log.info("delivery report %s for %s has status %r: kept as detail", event.id, ours,
                 acs_status)
        return False
    batch, index = split_message_id(ours)
    report = {"deliveryStatus": acs_status, "deliveryStatusDetails": details,
              "deliveryAttempts": ci_get(data, "deliveryAttempts"),
              "receivedTimestamp": ci_get(data, "receivedTimestamp"), "eventId": event.id}

    def decide(r: MessageRecord) -> Change | None:
        if not can_transition(r.status, new_status):
            return None
        error = None if new_status == MessageStatus.DELIVERED else (details or acs_status)
        return Change(fields={"error": error}, status=new_status,
                      detail=f"delivery report: {acs_status}"
                      + (f" ({details})" if details else ""),
                      data={k: v for k, v in report.items() if v is not None})

    done = services.messages.apply(batch, [index], decide)
    return bool(done) and done[0].status == new_status
