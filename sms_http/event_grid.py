"""The Event Grid webhook protocol of `POST|OPTIONS /api/inbound`: handshakes, then events.

Event Grid validates a webhook before delivering to it: the Event Grid schema sends a
`SubscriptionValidationEvent` whose `validationCode` is echoed back; CloudEvents 1.0 sends an
`OPTIONS` request with `WebHook-Request-Origin`, answered with `WebHook-Allowed-Origin`. After
that, each POST holds one event or a batch; only `SMSReceived` events are processed, others are
acknowledged (an error would make Event Grid retry them for a day).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sms_core.adapters.event_grid import SMS_RECEIVED, decode_payload, inbound_sms, validation_code
from sms_core.errors import FieldError, RequestInvalid
from sms_core.models.events import InboundSms, InvalidInbound
from sms_core.use_cases.inbound import InboundDeps, receive_inbound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookAnswer:
    """What the inbound webhook answers Event Grid."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


ORIGIN_HEADER = "WebHook-Request-Origin"
# A DNS host name (RFC 1123): dot-separated labels of letters, digits and inner hyphens, each
# at most 63 characters, 253 in all. Event Grid sends `eventgrid.azure.net`.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)


def _origin(headers: Mapping[str, str]) -> str:
    origin = next((v for k, v in headers.items() if k.lower() == ORIGIN_HEADER.lower()), None)
    if not origin:
        raise RequestInvalid(f"The {ORIGIN_HEADER} header is required.",
                             [FieldError(ORIGIN_HEADER, "required header")])
    # The origin is echoed in WebHook-Allowed-Origin: anything but a host name (a folded
    # header holds CR LF) would make an invalid response header, answered as a 500.
    if len(origin) > 253 or not _HOST_NAME.fullmatch(origin):
        raise RequestInvalid(f"The {ORIGIN_HEADER} header must be a host name.",
                             [FieldError(ORIGIN_HEADER, "must be a host name, e.g. "
                                                        "eventgrid.azure.net")])
    return origin


def abuse_protection_handshake(headers: Mapping[str, str]) -> WebhookAnswer:
    """Answer the CloudEvents OPTIONS handshake: allow the requesting origin, at any rate.

    `RequestInvalid` (a 400 problem naming the header) when the origin is missing or is not a
    host name.
    """
    return WebhookAnswer(200, None, {"WebHook-Allowed-Origin": _origin(headers),
                                     "WebHook-Allowed-Rate": "*", "Allow": "POST, OPTIONS"})


def inbound_post(deps: InboundDeps, body: bytes | str) -> WebhookAnswer:
    """One POST from Event Grid (Event Grid schema or CloudEvents, one event or a batch)."""
    events = decode_payload(body)
    code = validation_code(events)
    if code is not None:
        return WebhookAnswer(200, {"validationResponse": code})
    messages: list[InboundSms | InvalidInbound] = []
    for event in events:
        if event.type.lower() != SMS_RECEIVED:
            log.info("ignored event %s of type %s", event.id, event.type)
            continue
        try:
            messages.append(inbound_sms(event))
        except RequestInvalid as exc:
            messages.append(InvalidInbound(event.id, event.raw, exc))
    result = receive_inbound(deps, messages)
    if result.invalid and not result.processed:
        raise result.invalid[0]
    return WebhookAnswer(200, {"received": result.processed, "invalid": len(result.invalid)})
