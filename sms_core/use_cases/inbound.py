"""Inbound SMS from Event Grid: handshakes, keywords, opt-out lifecycle, relay to the app.

Steps for one `Microsoft.Communication.SMSReceived` event, each idempotent so that Event Grid's
redeliveries and a crash half-way are harmless:

1. claim the inbound message id (a fully processed redelivery stops here);
2. record it in the conversation;
3. a keyword acts at once: opt-out / opt-in recorded (history keyed by the inbound id), the
   reply accepted with an Idempotency-Key derived from the inbound id (one reply, ever);
4. relay `sms.received` (and `optout.changed` when the state changed) to the app;
5. mark the message done.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sms_core.adapters.event_grid import GridEvent, ci_get, decode_payload
from sms_core.bootstrap import Services
from sms_core.errors import FieldError, RequestInvalid
from sms_core.models.records import ConversationEntry
from sms_core.rules.keywords import KeywordMatch
from sms_core.rules.phone import InvalidPhoneNumber, sender_to_e164_or_shortcode, to_e164
from sms_core.use_cases.announcements import count_inbound
from sms_core.use_cases.sending import accept_reply

log = logging.getLogger(__name__)

SMS_RECEIVED = "microsoft.communication.smsreceived"
SUBSCRIPTION_VALIDATION = "microsoft.eventgrid.subscriptionvalidationevent"


@dataclass(frozen=True)
class WebhookAnswer:
    """What the inbound webhook answers Event Grid."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def abuse_protection_handshake(headers: Mapping[str, str]) -> WebhookAnswer:
    """Answer the CloudEvents OPTIONS handshake: allow the requesting origin, at any rate."""
    origin = next((v for k, v in headers.items() if k.lower() == "webhook-request-origin"), None)
    if not origin:
        return WebhookAnswer(400, {"error": "WebHook-Request-Origin header required"})
    return WebhookAnswer(200, None, {"WebHook-Allowed-Origin": origin,
                                     "WebHook-Allowed-Rate": "*", "Allow": "POST, OPTIONS"})


def handle_webhook(services: Services, body: bytes) -> WebhookAnswer:
    """Handle one POST from Event Grid (Event Grid schema or CloudEvents, one or a batch)."""
    events = decode_payload(body)
    for event in events:
        if event.type.lower() == SUBSCRIPTION_VALIDATION:
            code = ci_get(event.data, "validationCode")
            if not isinstance(code, str):
                raise RequestInvalid("The validation event has no validationCode.",
                                     [FieldError("data.validationCode", "required")])
            return WebhookAnswer(200, {"validationResponse": code})
    processed, invalid = 0, []
    for event in events:
        if event.type.lower() == SMS_RECEIVED:
            try:
                process_sms_received(services, event)
                processed += 1
            except RequestInvalid as exc:
                # Kept for a person to look at, never silently dropped.
                services.provider_ids.keep_unmatched("invalid-inbound", event.id or "-",
                                                     dict(event.raw))
                invalid.append(exc)
        else:
            # Acknowledged, never an error: Event Grid would retry it for a day.
            log.info("ignored event %s of type %s", event.id, event.type)
    if invalid and not processed:
        raise invalid[0]
    return WebhookAnswer(200, {"received": processed, "invalid": len(invalid)})


@dataclass(frozen=True, slots=True)
class InboundSms:
    """An inbound SMS, normalised."""

    id: str
    their_number: str
    our_number: str
    text: str
    received_at: datetime


def parse_sms_received(event: GridEvent) -> InboundSms:
    """Normalise an SMSReceived event (keys in any case, numbers without '+')."""
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
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def process_sms_received(services: Services, event: GridEvent) -> None:
    """Process one inbound SMS (idempotent; see the module docstring)."""
    sms = parse_sms_received(event)
    if not services.inbound.claim(sms.id, {"From": sms.their_number, "To": sms.our_number,
                                           "Text": sms.text[:16000],
                                           "ReceivedAt": sms.received_at}):
        log.info("inbound %s already processed", sms.id)
        return
    match = services.keywords.match(sms.text)
    services.conversations.record([ConversationEntry(
        our_number=sms.our_number, their_number=sms.their_number, direction="inbound",
        message_id=sms.id, text=sms.text, at=sms.received_at,
        keyword=match.keyword if match else None)])
    if match is not None:
        _act_on_keyword(services, sms, match)
    count_inbound(services, sms.id, sms.our_number, sms.their_number, sms.received_at,
                  match.kind if match else None)
    services.app_events.publish("sms.received", f"received-{sms.id}", {
        "id": sms.id, "from": sms.their_number, "to": sms.our_number, "message": sms.text,
        "keyword": match.keyword if match else None,
        "keywordKind": match.kind if match else None,
        "receivedAt": sms.received_at.isoformat()}, at=sms.received_at)
    services.inbound.complete(sms.id)


def _act_on_keyword(services: Services, sms: InboundSms, match: KeywordMatch) -> None:
    optouts = services.optouts
    common = {"source": "keyword", "keyword": match.keyword, "text": sms.text[:1000],
              "inbound_message_id": sms.id, "at": sms.received_at}
    if match.kind in ("opt_out", "opt_in"):
        opting_out = match.kind == "opt_out"
        changed = (optouts.opt_out if opting_out else optouts.opt_in)(
            sms.our_number, sms.their_number, **common)  # type: ignore[arg-type]
        if changed:
            services.app_events.publish("optout.changed", f"optout-{sms.id}", {
                "from": sms.our_number, "to": sms.their_number, "optedOut": opting_out,
                "scope": services.settings.optout_scope, "source": "keyword",
                "keyword": match.keyword, "inboundMessageId": sms.id,
                "at": sms.received_at.isoformat()}, at=sms.received_at)
    if services.settings.auto_reply and match.reply:
        accept_reply(services, sms.our_number, sms.their_number, match.reply, sms.id,
                     confirms_opt_out=match.kind == "opt_out")
