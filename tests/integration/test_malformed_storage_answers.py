"""A storage answer the SDK cannot read is a retryable StorageUnavailable, never a 500.

Real parts: Azurite behind the fault-injecting proxy (`localdev/storage_proxy.py`), the real
Queue and Table SDKs, the ACS emulator. The proxy answers chosen queue requests with answers
the Queue SDK trips over (`MALFORMED`): an error whose XML has no `<Message>` makes it raise
`TypeError` while it builds its own exception, a success with no body or a web page instead of
XML a `ParseError` or an `IndexError`. None is a status the SDK retries, so each test sees the
fault at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from localdev.acs_emulator import AcsEmulator
from localdev.storage_proxy import Fault, RequestInfo, StorageProxy
from sms_core.adapters.app_events import AppEventQueue
from sms_core.bootstrap import Services
from sms_core.errors import SmsError
from sms_core.models.messages import MessageStatus, SendRequest
from sms_core.models.records import split_message_id
from sms_core.use_cases.messages import get_message
from sms_core.use_cases.outbox import GRACE, sweep_outbox
from sms_core.use_cases.sending import accept_send
from sms_http.event_grid import inbound_post
from sms_http.problems import problem_for
from tests.integration.conftest import (
    SENDER,
    make_services,
    new_number,
    queue_every_send,
    storage_endpoints,
    take_jobs,
)
from tests.integration.test_inbound import sms_event

# Answers the Queue SDK cannot read, and what it raises on its own for each.
MALFORMED = {
    # An error without <Message>: TypeError while the SDK builds its own exception.
    "error-without-message": Fault(400, b'<?xml version="1.0" encoding="utf-8"?>'
                                        b"<Error><Code>InvalidInput</Code></Error>",
                                   {"Content-Type": "application/xml"}),
    # "Created" with no body (a proxy cutting it off): xml.etree's ParseError.
    "created-without-body": Fault(201, b"", {"Content-Type": "application/xml"}),
    # "Created" with a page instead of the message list (a captive portal): IndexError.
    "created-with-a-page": Fault(201, b"<html/>", {"Content-Type": "text/html"}),
}


@pytest.fixture
def proxy(azurite_connection_string: str) -> Iterator[StorageProxy]:
    with StorageProxy(storage_endpoints(azurite_connection_string)) as running:
        yield running


@pytest.fixture
def proxied(proxy: StorageProxy, emulator: AcsEmulator) -> Services:
    """Services whose storage goes through the proxy; every bulk send is queued."""
    return queue_every_send(make_services(proxy.connection_string(), emulator))


def answer_malformed(proxy: StorageProxy, queue: str, fault: Fault) -> None:
    def hook(info: RequestInfo) -> Fault | None:
        return fault if (info.resource, info.kind) == (queue, "send") else None
    proxy.fault = hook


def status_of(action: Callable[[], Any], ok: int) -> tuple[int, Any]:
    """The HTTP status a route answers for `action` (as `sms_http.handle` maps it)."""
    try:
        return ok, action()
    except SmsError as exc:
        return problem_for(exc).status, problem_for(exc)
    except Exception as exc:  # what the edge answers as a 500
        return 500, exc


def faulted(proxy: StorageProxy, queue: str) -> int:
    return sum(r.faulted for r in proxy.snapshot() if r.key.resource == queue)


@pytest.mark.parametrize("fault", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_send_whose_enqueue_gets_an_unreadable_answer_is_a_202_not_a_500(
        proxy: StorageProxy, proxied: Services, fault: Fault) -> None:
    queue = proxied.jobs._queue.queue_name
    answer_malformed(proxy, queue, fault)
    to = new_number()
    request = SendRequest.model_validate({"to": to, "message": "Doors open at 9"})
    status, answer = status_of(lambda: accept_send(proxied, request), 202)
    assert faulted(proxy, queue) >= 1  # the enqueue did meet the malformed answer
    assert status == 202, answer
    (entry,) = answer.messages
    proxy.fault = None
    # Stored with its outbox row: the sweeper hands it over (and no stranded row is left for
    # other tests' sweeps to find).
    assert get_message(proxied.messages, entry.id).status == MessageStatus.QUEUED
    assert sweep_outbox(proxied, datetime.now(UTC) + GRACE + timedelta(seconds=1)) >= 1
    batch, index = split_message_id(entry.id)
    assert any(job.batch == batch and index in job.indices for job in take_jobs(proxied))


@pytest.mark.parametrize("fault", MALFORMED.values(), ids=MALFORMED.keys())
def test_an_app_event_that_gets_an_unreadable_answer_is_a_503_event_grid_retries(
        proxy: StorageProxy, proxied: Services, fault: Fault) -> None:
    queue = f"events-{new_number()[-7:]}"
    proxied.storage.queue_service().create_queue(queue)
    proxied.__dict__["app_events"] = AppEventQueue(proxied.storage.queue(queue), None)
    answer_malformed(proxy, queue, fault)
    status, problem = status_of(
        lambda: inbound_post(proxied, sms_event(new_number(), SENDER, "hello")), 200)
    assert faulted(proxy, queue) >= 1
    assert status == 503, problem
    assert problem.headers["Retry-After"]
