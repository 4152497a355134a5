"""sms-webhook-out: POST app events to SMS_APP_WEBHOOK_URL, signed, retried with backoff."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_core.events import queue_text
from sms_core.webhook_delivery import deliver_webhook


def main(msg: func.QueueMessage) -> None:
    services = get_services()
    deliver_webhook(services.settings, services.storage, services.webhook_poster,
                    queue_text(msg.get_body()))
