"""`sms.status` events: the app hears every status change of every message.

The event id is `status-<message id>-<status>`, the same however often it is published, so the
app can de-duplicate. Publishing happens after the change is committed; a handler that crashed in
between is redelivered by its queue, finds the message already in that status, and publishes again
(`republish`), so every change is heard at least once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sms_core.adapters.app_events import AppEventQueue
from sms_core.models.messages import PENDING_STATUSES
from sms_core.models.records import MessageRecord

STATUS_EVENT = "sms.status"


def status_event(record: MessageRecord) -> tuple[str, str, dict[str, Any]]:
    """The (type, id, data) of the event telling `record`'s current status."""
    data: dict[str, Any] = {"id": record.id, "status": str(record.status), "from": record.sender,
                            "to": record.to, "tag": record.tag,
                            "providerMessageId": record.provider_message_id,
                            "error": record.error, "at": record.updated_at.isoformat()}
    return STATUS_EVENT, f"status-{record.id}-{record.status}", data


def publish_status(events: AppEventQueue, records: Iterable[MessageRecord]) -> None:
    """Publish the current status of each record that has left the pending states."""
    events.publish_many([status_event(r) for r in records
                         if r.status not in PENDING_STATUSES])
