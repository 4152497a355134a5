"""What ACS tells us through Event Grid, as our own types (decoded in `adapters.event_grid`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sms_core.errors import RequestInvalid


@dataclass(frozen=True, slots=True)
class InboundSms:
    """An inbound SMS (`SMSReceived`), numbers in E.164 (or a short code for ours)."""

    id: str
    their_number: str
    our_number: str
    text: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A delivery report (`SMSDeliveryReportReceived`) for one message ACS accepted."""

    event_id: str
    provider_message_id: str
    status: str  # ACS's deliveryStatus as sent: Delivered, Failed, Expired, or one ACS adds
    details: str | None
    attempts: Any
    received_timestamp: str | None
    raw: Mapping[str, Any]  # the whole event, kept when the message is not known yet
    retry: int = 0  # how often we put it back on its queue because its message was not known
    tag: str | None = None  # the tag of the send call, as ACS echoes it (see `report_route`)
    to: str | None = None  # the recipient, E.164 with "+"


# Our own member on a delivery-report event we put back on its queue: how often it was.
RETRY_MEMBER = "smsRetry"


@dataclass(frozen=True, slots=True)
class DeliveryReportRetry:
    """A delivery report put back on its queue, to be tried again once its message is known
    (a report can overtake the write of its message's ACS id)."""

    report: DeliveryReport
    attempt: int

    def encode(self) -> str:
        """The queue message text: the event as it came, with the attempt number."""
        return json.dumps({**self.report.raw, RETRY_MEMBER: self.attempt}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class InvalidInbound:
    """An `SMSReceived` event we cannot use (kept for a person to look at, never dropped)."""

    event_id: str
    raw: Mapping[str, Any]
    error: RequestInvalid
