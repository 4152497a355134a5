"""Analytics: counting what arrives, and the report of `GET /api/analytics`.

Status outcomes are counted by `status_changes`; this module counts inbound messages, the
opt-outs and opt-ins they carried and the replies they are to our messages. Inbound messages and
opt-outs count on the UTC day they arrived; `responses` counts, per message we sent, whether the
person wrote back within 24 hours, on the day and tag of that message.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from sms_core.models.queries import AnalyticsQuery
from sms_core.rules.analytics import AnalyticsReport, Fact, utc_day
from sms_core.use_cases.ports import Analytics, Conversations

RESPONSE_WINDOW = timedelta(hours=24)


class InboundCountDeps(Protocol):
    """The ports counting an inbound message needs."""

    @property
    def analytics(self) -> Analytics: ...
    @property
    def conversations(self) -> Conversations: ...


def count_inbound(deps: InboundCountDeps, inbound_id: str, our_number: str, their_number: str,
                  received_at: datetime, keyword_kind: str | None) -> None:
    """Count an inbound message, the opt-out/in it carried, and the reply it is to our message."""
    counts = {"inbound": 1}
    if keyword_kind == "opt_out":
        counts["optOuts"] = 1
    elif keyword_kind == "opt_in":
        counts["optIns"] = 1
    facts = [Fact(id=f"inbound-{inbound_id}", day=utc_day(received_at), sender=our_number,
                  tag=None, counts=counts)]
    replied_to = deps.conversations.last_outbound(
        our_number, their_number, received_at - RESPONSE_WINDOW, received_at)
    if replied_to is not None:
        facts.append(Fact(id=f"response-{replied_to.message_id}", day=utc_day(replied_to.at),
                          sender=our_number, tag=replied_to.tag, counts={"responses": 1}))
    deps.analytics.record(facts)


def analytics_report(analytics: Analytics, query: AnalyticsQuery) -> AnalyticsReport:
    """`GET /api/analytics`: totals and days for a date range, optionally one sender and tag."""
    return analytics.query(query.start, query.end, sender=query.sender, tag=query.tag)
