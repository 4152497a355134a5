"""Posting app events to SMS_APP_WEBHOOK_URL, signed, retried with backoff through a queue.

A failed post (connection error, timeout, non-2xx) goes back on `sms-webhook-out`, invisible
for 30 s, 60 s, ... up to an hour, for `WEBHOOK_MAX_ATTEMPTS` attempts; after that the event is
moved to `sms-webhook-out-poison` (it is still on `sms-events` too). No worker ever sleeps.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Protocol

import httpx
from azure.core.exceptions import AzureError

from sms_core.adapters.app_events import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_MAX_ATTEMPTS,
    WEBHOOK_TIMEOUT_S,
    WebhookDelivery,
    sign,
    webhook_backoff_s,
)
from sms_core.adapters.storage import WEBHOOK_OUTBOX_QUEUE, StorageClients
from sms_core.errors import StorageUnavailable
from sms_core.settings import Settings

log = logging.getLogger(__name__)


class WebhookPoster(Protocol):
    """Anything that can POST bytes and tell the status (None: no answer)."""

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int | None:
        """POST and return the HTTP status, or None when the app could not be reached."""
        ...


class HttpxPoster:
    """The real poster: one pooled httpx client per process."""

    def __init__(self, timeout_s: float = WEBHOOK_TIMEOUT_S) -> None:
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int | None:
        """POST `body`; None on connection errors and timeouts."""
        try:
            return self._client.post(url, content=body, headers=headers).status_code
        except httpx.HTTPError as exc:
            log.warning("app webhook unreachable: %s", exc)
            return None


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


def deliver_webhook(settings: Settings, storage: StorageClients, poster: WebhookPoster,
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
    try:
        if delivery.attempt >= WEBHOOK_MAX_ATTEMPTS:
            log.error("app webhook gave up on event %s after %d attempts (last status %s)",
                      delivery.event.get("id"), delivery.attempt, status)
            storage.queue(f"{WEBHOOK_OUTBOX_QUEUE}-poison").send_message(delivery.encode())
            return False
        retry = WebhookDelivery(delivery.event, delivery.attempt + 1)
        storage.queue(WEBHOOK_OUTBOX_QUEUE).send_message(
            retry.encode(), visibility_timeout=webhook_backoff_s(delivery.attempt))
    except AzureError as exc:
        raise StorageUnavailable(f"Webhook outbox storage failed: {exc}") from exc
    return False
