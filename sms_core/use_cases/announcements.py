"""Telling the app and the analytics about what happened to messages.

`announce` runs right after a status change is committed: it publishes `sms.status` and records
the change's analytics fact. Both are keyed by `status-<message id>-<status>`, so a handler that
is redelivered after a crash can announce again without double counting.

Attribution (docs/architecture.md): a message's outcomes count on the UTC day it was sent (its
creation day when it never was), so a day's deliveryRate covers that day's messages; inbound
messages and opt-outs count on the day they arrived. `responses` counts, per message we sent,
whether the person wrote back within 24 hours, on the day and tag of that message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sms_core.bootstrap import Services
from sms_core.models.messages import PENDING_STATUSES, MessageStatus, parse_sender
from sms_core.models.records import MessageRecord
from sms_core.rules.analytics import Fact, parse_date_range, utc_day
from sms_core.use_cases.status_events import publish_status

RESPONSE_WINDOW = timedelta(hours=24)


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


def announce(services: Services, records: Iterable[MessageRecord],
             extra: Mapping[str, int] | None = None) -> None:
    """Publish `sms.status` and count the status of each record (idempotent per status)."""
    items = [r for r in records if r.status not in PENDING_STATUSES]
    if not items:
        return
    facts = [f for f in (status_fact(r, extra) for r in items) if f is not None]
    services.analytics.record(facts)
    publish_status(services.app_events, items)


def count_inbound(services: Services, inbound_id: str, our_number: str, their_number: str,
                  received_at: datetime, keyword_kind: str | None) -> None:
    """Count an inbound message, the opt-out/in it carried, and the reply it is to our message."""
    counts = {"inbound": 1}
    if keyword_kind == "opt_out":
        counts["optOuts"] = 1
    elif keyword_kind == "opt_in":
        counts["optIns"] = 1
    facts = [Fact(id=f"inbound-{inbound_id}", day=utc_day(received_at), sender=our_number,
                  tag=None, counts=counts)]
    replied_to = services.conversations.last_outbound(
        our_number, their_number, received_at - RESPONSE_WINDOW, received_at)
    if replied_to is not None:
        facts.append(Fact(id=f"response-{replied_to.message_id}", day=utc_day(replied_to.at),
                          sender=our_number, tag=replied_to.tag, counts={"responses": 1}))
    services.analytics.record(facts)


def count_accepted(services: Services, records: Iterable[MessageRecord]) -> None:
    """Count the recipients a send request blocked or rejected up front."""
    services.analytics.record([f for f in (status_fact(r) for r in records
                                           if r.initial_status not in PENDING_STATUSES)
                               if f is not None])


def analytics_report(services: Services, params: Mapping[str, str]) -> dict[str, Any]:
    """`GET /api/analytics`: totals and days for a date range, optionally one sender and tag."""
    start, end = parse_date_range(params)
    sender = parse_sender(params["sender"], "sender") if params.get("sender") else None
    return services.analytics.query(start, end, sender=sender,
                                    tag=params.get("tag") or None).public()
