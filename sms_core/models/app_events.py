"""Events for the app: `sms.received`, `optout.changed` (and `sms.status`, later) on `sms-events`,
and, when SMS_APP_WEBHOOK_URL is set, the same events POSTed to the app, HMAC-signed.

Envelope (JSON): `{"id", "type", "time", "data": {...}}`; `id` is stable for one fact, so an app
can de-duplicate (delivery is at least once).

Webhook signature: headers `X-SMS-Timestamp: <unix seconds>` and
`X-SMS-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`. To verify:

    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    ok = hmac.compare_digest(f"v1={expected}", signature) and abs(time.time() - int(ts)) < 300

Webhook posts never run inside the inbound request: events go to the internal queue
`sms-webhook-out`, whose consumer posts them and retries with backoff.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sms_core.models.records import MessageRecord

SIGNATURE_HEADER = "X-SMS-Signature"


TIMESTAMP_HEADER = "X-SMS-Timestamp"


WEBHOOK_MAX_ATTEMPTS = 12  # 30 s doubling, capped at 1 h: about 8 hours of trying


WEBHOOK_TIMEOUT_S = 10.0


def event_envelope(event_type: str, event_id: str, data: Mapping[str, Any],
                   at: datetime | None = None) -> dict[str, Any]:
    """The JSON envelope of an app event."""
    return {"id": event_id, "type": event_type,
            "time": (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
            "data": dict(data)}


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-SMS-Signature` value for a body sent at `timestamp`."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str,
           tolerance_s: int = 300, now: float | None = None) -> bool:
    """Check a webhook signature (what an app does with the two headers)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((now if now is not None else time.time()) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """A queued webhook post: the event and how many attempts it has had."""

    event: dict[str, Any]
    attempt: int = 1

    def encode(self) -> str:
        """The queue message text."""
        return json.dumps({"event": self.event, "attempt": self.attempt},
                          separators=(",", ":"))

    @classmethod
    def decode(cls, body: bytes | str) -> WebhookDelivery:
        """Parse a queue message."""
        raw = json.loads(body)
        return cls(event=dict(raw["event"]), attempt=int(raw.get("attempt", 1)))


def webhook_backoff_s(attempt: int) -> int:
    """Delay before webhook attempt `attempt + 1`: 30 s doubling, capped at one hour."""
    return int(min(30 * 2 ** max(0, attempt - 1), 3600))


# One builder per app event: (type, id, data), the id stable for the fact it tells.
AppEvent = tuple[str, str, dict[str, Any]]
STATUS_EVENT = "sms.status"
OPTOUT_CHANGED_EVENT = "optout.changed"
RECEIVED_EVENT = "sms.received"


def status_event(record: MessageRecord) -> AppEvent:
    """`sms.status`: a message's current status (id `status-<message id>-<status>`)."""
    data: dict[str, Any] = {"id": record.id, "status": str(record.status), "from": record.sender,
                            "to": record.to, "tag": record.tag,
                            "providerMessageId": record.provider_message_id,
                            "error": record.error, "at": record.updated_at.isoformat()}
    return STATUS_EVENT, f"status-{record.id}-{record.status}", data


def optout_changed_event(event_id: str, sender: str, recipient: str, *, opted_out: bool,
                         scope: str, source: str, **details: Any) -> AppEvent:
    """`optout.changed`: a recipient's opt-out state changed (`details`: keyword, reason, ...)."""
    data: dict[str, Any] = {"from": sender, "to": recipient, "optedOut": opted_out,
                            "scope": scope, "source": source, **details}
    return OPTOUT_CHANGED_EVENT, event_id, data


def received_event(inbound_id: str, sender: str, recipient: str, text: str, *,
                   keyword: str | None, keyword_kind: str | None,
                   received_at: datetime, length: int | None = None) -> AppEvent:
    """`sms.received`: a person wrote to one of our numbers (id `received-<inbound id>`).

    `text` may be cut to what a queue message holds; `messageLength` is the length of the text
    as received (`length`, else the length of `text`)."""
    return RECEIVED_EVENT, f"received-{inbound_id}", {
        "id": inbound_id, "from": sender, "to": recipient, "message": text,
        "messageLength": len(text) if length is None else length,
        "keyword": keyword, "keywordKind": keyword_kind, "receivedAt": received_at.isoformat()}
