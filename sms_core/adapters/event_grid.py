"""Decoding Event Grid payloads as they really arrive, into our own types.

Queue messages may be base64 text or raw JSON, hold one event or an array; events may use the
Event Grid schema (`eventType`, `data`) or CloudEvents 1.0 (`type`, `data`); ACS has sent keys in
camelCase and PascalCase (even `Tag`), and `from` without its `+`. Use cases see only
`InboundSms` and `DeliveryReport`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sms_core.errors import FieldError, RequestInvalid
from sms_core.models.events import RETRY_MEMBER, DeliveryReport, InboundSms
from sms_core.models.messages import MAX_JSON_DEPTH, decode_json
from sms_core.rules.phone import InvalidPhoneNumber, sender_to_e164_or_shortcode, to_e164
from sms_core.rules.times import storable_time

# Event types, compared case-insensitively.
SMS_RECEIVED = "microsoft.communication.smsreceived"
DELIVERY_REPORT_RECEIVED = "microsoft.communication.smsdeliveryreportreceived"
SUBSCRIPTION_VALIDATION = "microsoft.eventgrid.subscriptionvalidationevent"


def ci_get(mapping: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """`mapping[key]` matched case-insensitively (ACS sends both camelCase and PascalCase)."""
    if key in mapping:
        return mapping[key]
    lower = key.lower()
    for k, v in mapping.items():
        if k.lower() == lower:
            return v
    return default


@dataclass(frozen=True, slots=True)
class GridEvent:
    """One event, whatever schema it came in."""

    id: str
    type: str
    data: Mapping[str, Any]
    time: str | None
    raw: Mapping[str, Any]


def queue_text(body: bytes | str) -> str:
    """The JSON text of a queue message written base64 (the Functions default) or raw.

    host.json sets `messageEncoding: none` so the host hands over the message as stored, and
    every consumer accepts both forms: Event Grid's Storage-queue destination has been seen
    writing base64, while its docs once said plain text.
    """
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        return stripped
    try:
        return base64.b64decode(stripped, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return text


def decode_payload(body: bytes | str) -> list[GridEvent]:
    """Events from a queue message or webhook body: base64 or JSON, one event or an array."""
    try:
        text = queue_text(body)
    except UnicodeDecodeError:
        raise RequestInvalid("The payload is not UTF-8 text.",
                             [FieldError("body", "malformed JSON")]) from None
    # Events are kept verbatim (an unmatched report, an invalid inbound): bounded depth.
    parsed = decode_json(text, "The payload (JSON or base64-encoded JSON)",
                         max_depth=MAX_JSON_DEPTH)
    items = parsed if isinstance(parsed, list) else [parsed]
    events = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise RequestInvalid(f"Event {i} is not a JSON object.",
                                 [FieldError(f"[{i}]", "an event object is required")])
        etype = ci_get(item, "eventType") or ci_get(item, "type")
        data = ci_get(item, "data")
        if not isinstance(etype, str) or not isinstance(data, dict | type(None)):
            raise RequestInvalid(f"Event {i} has no eventType/type.",
                                 [FieldError(f"[{i}].eventType", "required")])
        events.append(GridEvent(id=str(ci_get(item, "id", "")), type=etype, data=data or {},
                                time=ci_get(item, "eventTime") or ci_get(item, "time"),
                                raw=item))
    return events


def validation_code(events: list[GridEvent]) -> str | None:
    """The code of a subscription-validation event among `events`, if there is one."""
    for event in events:
        if event.type.lower() == SUBSCRIPTION_VALIDATION:
            code = ci_get(event.data, "validationCode")
            if not isinstance(code, str):
                raise RequestInvalid("The validation event has no validationCode.",
                                     [FieldError("data.validationCode", "required")])
            return code
    return None


def inbound_sms(event: GridEvent) -> InboundSms:
    """An `SMSReceived` event normalised (keys in any case, numbers without '+')."""
    data = event.data
    raw_from, raw_to = ci_get(data, "from"), ci_get(data, "to")
    text = ci_get(data, "message")
    errors = [FieldError(f"data.{name}", "required") for name, value in
              (("from", raw_from), ("to", raw_to)) if not isinstance(value, str) or not value]
    if errors:
        raise RequestInvalid(f"SMSReceived event {event.id} is incomplete.", errors)
    try:
        their = to_e164(str(raw_from))
        ours = sender_to_e164_or_shortcode(str(raw_to))
    except InvalidPhoneNumber as exc:
        raise RequestInvalid(f"SMSReceived event {event.id}: {exc.reason}",
                             [FieldError("data.from", exc.reason)]) from None
    received = _parse_time(ci_get(data, "receivedTimestamp")) or _parse_time(event.time)
    return InboundSms(id=str(ci_get(data, "messageId") or event.id), their_number=their,
                      our_number=ours, text=text if isinstance(text, str) else "",
                      received_at=received or datetime.now(UTC))


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    # .NET writes 7 fractional digits; Python reads at most 6.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        tz = rest[len(digits):]
        text = f"{head}.{digits[:6]}{tz}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    # A .NET default (0001-01-01) or a typo'd year: storage cannot keep it, so it is no time.
    return storable_time(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


def delivery_report(event: GridEvent) -> DeliveryReport:
    """An `SMSDeliveryReportReceived` event as our type (keys in any case)."""
    data = event.data
    details = ci_get(data, "deliveryStatusDetails")
    stamp = ci_get(data, "receivedTimestamp")
    tag, to = ci_get(data, "tag"), ci_get(data, "to")
    return DeliveryReport(
        event_id=event.id, provider_message_id=str(ci_get(data, "messageId") or ""),
        status=str(ci_get(data, "deliveryStatus") or ""),
        details=None if details is None else str(details),
        attempts=ci_get(data, "deliveryAttempts"),
        received_timestamp=None if stamp is None else str(stamp), raw=dict(event.raw),
        retry=_retry_count(event.raw.get(RETRY_MEMBER)),
        tag=tag if isinstance(tag, str) else None,
        to=_e164_or_none(to))


def _e164_or_none(value: Any) -> str | None:
    # ACS writes the recipient with "+", the published sample without: both mean one number.
    try:
        return to_e164(value) if isinstance(value, str) and value else None
    except InvalidPhoneNumber:
        return None


def _retry_count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def delivery_reports(body: bytes | str) -> list[DeliveryReport]:
    """The delivery reports in a queue message (other event types are left out)."""
    return [delivery_report(e) for e in decode_payload(body)
            if e.type.lower() == DELIVERY_REPORT_RECEIVED]
