"""The `sms-events` queue and the webhook outbox `sms-webhook-out`: where app events go.

The events themselves (envelope, signature, webhook retries): `sms_core.models.app_events`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from azure.storage.queue import QueueClient

from sms_core.adapters.azure_errors import storage_errors
from sms_core.concurrency import run_all
from sms_core.models.app_events import WebhookDelivery, event_envelope

_EVENTS_STORAGE = storage_errors("Event queue")
_OUTBOX_STORAGE = storage_errors("Webhook outbox")


class AppEventQueue:
    """Publishes app events to `sms-events` and, if configured, to the webhook outbox."""

    def __init__(self, events: QueueClient, webhook_outbox: QueueClient | None) -> None:
        self._events = events
        self._outbox = webhook_outbox

    def publish(self, event_type: str, event_id: str, data: Mapping[str, Any],
                at: datetime | None = None) -> dict[str, Any]:
        """Send one event to the app (queue, and webhook outbox when a webhook is set)."""
        envelope = event_envelope(event_type, event_id, data, at)
        with _EVENTS_STORAGE:
            self._events.send_message(json.dumps(envelope, separators=(",", ":")))
        if self._outbox is not None:
            with _OUTBOX_STORAGE:
                self._outbox.send_message(WebhookDelivery(envelope).encode())
        return envelope

    def publish_many(self, events: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
        """Publish several events concurrently (the Queue API has no batch send)."""
        run_all(lambda e: self.publish(*e), events)


class WebhookOutboxQueue:
    """`sms-webhook-out` and its poison twin: webhook posts waiting for another attempt."""

    def __init__(self, outbox: QueueClient, poison: QueueClient) -> None:
        self._outbox = outbox
        self._poison = poison

    @_OUTBOX_STORAGE
    def retry_later(self, delivery: WebhookDelivery, delay_s: int) -> None:
        """Put the delivery back, invisible for `delay_s` seconds."""
        self._outbox.send_message(delivery.encode(), visibility_timeout=delay_s)

    @_OUTBOX_STORAGE
    def give_up(self, delivery: WebhookDelivery) -> None:
        """Move a delivery that used all its attempts to the poison queue."""
        self._poison.send_message(delivery.encode())
