"""Shared steps of integration tests: send, run the dispatcher, apply delivery reports."""

from __future__ import annotations

import time
from typing import Any

from sms_core.adapters.event_grid import delivery_reports
from sms_core.bootstrap import Services
from sms_core.models.messages import MessageStatus, SendRequest
from sms_core.use_cases.delivery_reports import apply_delivery_reports
from sms_core.use_cases.dispatch import dispatch
from sms_core.use_cases.messages import get_message
from sms_core.use_cases.sending import accept_send
from tests.deadlines import deadline
from tests.integration.conftest import dlr_client, take_jobs


def send(services: Services, idempotency_key: str | None = None, **body: Any) -> Any:
    return accept_send(services, SendRequest.model_validate(body), idempotency_key)


def run_all_jobs(services: Services, deadline_s: float = 15) -> int:
    """Dispatch every job until the queue stays empty (jobs put back with a delay included)."""
    end = deadline(deadline_s)
    runs = 0
    while time.monotonic() < end:
        jobs = take_jobs(services)
        if not jobs:
            if not _has_hidden(services):  # none visible, none waiting: all done
                return runs
            time.sleep(0.1)
            continue
        for job in jobs:
            dispatch(services, job)
            runs += 1
    return runs


def _has_hidden(services: Services) -> bool:
    props = services.jobs._queue.get_queue_properties()
    return bool(props.approximate_message_count)


def status(services: Services, message_id: str) -> MessageStatus:
    return get_message(services.messages, message_id).status


def handle_delivery_reports(services: Services, body: bytes | str) -> int:
    """What the `delivery_report` function does with one queue message."""
    return apply_delivery_reports(services, delivery_reports(body))


def apply_reports(services: Services, storage: str, queue: str, expected: int,
                  deadline_s: float = 10) -> int:
    client = dlr_client(storage, queue)
    seen = 0
    end = deadline(deadline_s)
    while seen < expected and time.monotonic() < end:
        for msg in client.receive_messages(messages_per_page=32):
            handle_delivery_reports(services, msg.content)
            client.delete_message(msg)
            seen += 1
        time.sleep(0.05)
    return seen
