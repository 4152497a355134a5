"""Shared steps of the use-case tests: send, run the queued dispatch jobs, build ACS events."""

from __future__ import annotations

import itertools
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sms_core.models.campaigns import CampaignRequest
from sms_core.models.events import DeliveryReport, InboundSms
from sms_core.models.messages import DispatchJob, MessageStatus, SendRequest, SendResponse
from sms_core.models.records import BATCH_TIME_FORMAT, MessageRecord
from sms_core.use_cases import sending
from sms_core.use_cases.dispatch import dispatch
from sms_core.use_cases.sending import accept_send
from tests.unit.fakes import ACS_SENT, FakeDeps

ALICE = "+14255550101"
BOB = "+14255550102"
CAROL = "+14255550103"
DAVE = "+14255550104"
_ids = itertools.count(1)


def send(deps: FakeDeps, key: str | None = None, **body: Any) -> SendResponse:
    """`POST /api/messages` with this body (and Idempotency-Key)."""
    return accept_send(deps, SendRequest.model_validate(body), key)


def accepted_ago(monkeypatch: pytest.MonkeyPatch, age: timedelta) -> None:
    """Send requests from here on are stored as if accepted `age` ago: their messages leave
    that long after their request, as a scheduled or long-paced message does."""
    monkeypatch.setattr(sending, "new_batch_id", lambda: (datetime.now(UTC) - age).strftime(
        BATCH_TIME_FORMAT) + secrets.token_hex(6))


def run_jobs(deps: FakeDeps, limit: int = 50) -> int:
    """Dispatch every queued job as the queue would hand it over, including put-back ones."""
    runs = 0
    while jobs := deps.jobs.take(DispatchJob):
        for job, _delay in jobs:
            dispatch(deps, job)
            runs += 1
        assert runs < limit, "dispatch keeps putting jobs back"
    return runs


def sent(deps: FakeDeps, to: str = ALICE, **body: Any) -> MessageRecord:
    """A message accepted and sent (ACS took it): the record as stored."""
    (entry,) = send(deps, to=to, message=body.pop("message", "Hello"), **body).messages
    run_jobs(deps)
    record = deps.messages.record(entry.id)
    assert record.status == MessageStatus.SENT
    return record


def report(provider_id: str | None, status: str, details: str | None = "No error.",
           event_id: str | None = None, *, routed: bool = True) -> DeliveryReport:
    """An `SMSDeliveryReportReceived` event for an ACS message id, as Event Grid sends it:
    with the recipient and the tag of the send call when a FakeGateway handed out the id.
    `routed=False`: a report without our route in its tag (a message sent before tags carried
    it), found through the ACS-id index."""
    event_id = event_id or f"dlr-{next(_ids)}"
    to, tag = ACS_SENT.get(provider_id or "", ("+14255550101", None))
    tag = tag if routed else None
    data: dict[str, Any] = {"messageId": provider_id, "from": "+18005550100",
                            "to": to, "deliveryStatus": status,
                            "deliveryStatusDetails": details,
                            "deliveryAttempts": [{"timestamp": "2026-01-01T00:00:00Z",
                                                  "segmentsSucceeded": 1,
                                                  "segmentsFailed": 0}],
                            "receivedTimestamp": "2026-01-01T00:00:01Z"}
    if tag is not None:
        data["Tag"] = tag  # the published sample's spelling
    raw = {"id": event_id, "eventType": "Microsoft.Communication.SMSDeliveryReportReceived",
           "subject": f"deliveryreport/{provider_id}", "data": data,
           "eventTime": "2026-01-01T00:00:01Z", "dataVersion": "1.0"}
    return DeliveryReport(event_id=event_id, provider_message_id=provider_id or "",
                          status=status, details=details, attempts=data["deliveryAttempts"],
                          received_timestamp=data["receivedTimestamp"], raw=raw,
                          tag=tag, to=to)


def inbound(text: str, their: str = ALICE, ours: str = "+18005550100",
            inbound_id: str | None = None, at: datetime | None = None) -> InboundSms:
    """An `SMSReceived` event as decoded from Event Grid."""
    return InboundSms(id=inbound_id or f"Incoming_{next(_ids):06d}", their_number=their,
                      our_number=ours, text=text, received_at=at or datetime.now(UTC))


def campaign(**overrides: Any) -> CampaignRequest:
    """A campaign request for Alice and Dave from an inline template (fields overridable)."""
    body: dict[str, Any] = {
        "name": "Spring sale", "template": "Hi {{name}}, 20% off today", "tag": "spring",
        "audience": {"recipients": [{"to": ALICE, "vars": {"name": "Alice"}},
                                    {"to": DAVE, "vars": {"name": "Dave"}}]}}
    body.update(overrides)
    return CampaignRequest.model_validate(body)
