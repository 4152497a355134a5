"""Posting app events to SMS_APP_WEBHOOK_URL, signed, retried with backoff through a queue.

A failed post (connection error, timeout, non-2xx) goes back on `sms-webhook-out`, invisible
for 30 s, 60 s, ... up to an hour, for `WEBHOOK_MAX_ATTEMPTS` attempts; after that the event is
moved to `sms-webhook-out-poison` (it is still on `sms-events` too). No worker ever sleeps.
"""

from __future__ import annotations

import json
import logging
import time

from sms_core.models.app_events import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_MAX_ATTEMPTS,
    WebhookDelivery,
    sign,
    webhook_backoff_s,
)
from sms_core.settings import Settings
from sms_core.use_cases.ports import WebhookOutbox, WebhookPoster

log = logging.getLogger(__name__)


def signed_request(settings: Settings, delivery: WebhookDelivery,
                   now: float | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one webhook post."""
    body = json.dumps(delivery.event, separators=(",", ":")).encode("utf-8")
    ts = int(now if now is not None else time.time())
    headers = {"content-type": "application/json", TIMESTAMP_HEADER: str(ts),
               "X-SMS-Event-Type": str(delivery.event.get("type", "")),
               "X-SMS-Delivery-Attempt": str(delivery.attempt)}
    if settings.app_webhook_secret:
        headers[SIGNATURE_HEADER] = sign(settings.app_webhook_secret, ts, body)
    return body, headers


def deliver_webhook(settings: Settings, outbox: WebhookOutbox, poster: WebhookPoster,
                    message: bytes | str) -> bool:
    """Try one post of a queued event; reschedule or dead-letter it on failure."""
    delivery = WebhookDelivery.decode(message)
    url = settings.app_webhook_url
    if not url:
        log.warning("SMS_APP_WEBHOOK_URL is no longer set: event %s not posted",
                    delivery.event.get("id"))
        return False
    body, headers = signed_request(settings, delivery)
    status = poster.post(url, body, headers)
    if status is not None and 200 <= status < 300:
        return True
    if delivery.attempt >= WEBHOOK_MAX_ATTEMPTS:
        log.error("app webhook gave up on event %s after %d attempts (last status %s)",
                  delivery.event.get("id"), delivery.attempt, status)
        outbox.give_up(delivery)
        return False
    outbox.retry_later(WebhookDelivery(delivery.event, delivery.attempt + 1),
                       webhook_backoff_s(delivery.attempt))
    return False
