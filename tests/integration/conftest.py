"""Fixtures for integration tests: real Azurite, the real ACS SDK against the emulator.

Each test gets its own outbound and delivery-report queues, so no other consumer (such as the
end-to-end function host) can take its jobs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TypeVar
from urllib.parse import urlsplit

import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy
from pydantic import BaseModel

from localdev.acs_emulator import DEFAULT_ACCESS_KEY, AcsEmulator
from localdev.busy_pacer import BusyBulkLane
from sms_core.adapters.job_queue import JobQueue
from sms_core.bootstrap import Services
from sms_core.models.messages import DispatchJob
from sms_core.settings import load_settings
from tests.numbers import unique_number

SENDER = "+18005550100"


def new_number() -> str:
    """A fresh valid US number (fictional 555 exchange) no other test uses."""
    return unique_number()


@pytest.fixture
def dlr_queue_name() -> str:
    return f"dlr-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def emulator(azurite_connection_string: str, dlr_queue_name: str) -> Iterator[AcsEmulator]:
    emu = AcsEmulator(port=0, access_key_b64=DEFAULT_ACCESS_KEY,
                      storage_connection_string=azurite_connection_string, dlr_delay_s=0.01,
                      rate_per_minute=100_000, dlr_queue_name=dlr_queue_name)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


def make_services(storage: str, emulator: AcsEmulator, **settings: object) -> Services:
    """Services wired to Azurite and the emulator, with a private outbound queue."""
    values: dict[str, object] = {"AzureWebJobsStorage": storage,
                                 "ACS_CONNECTION_STRING": emulator.connection_string,
                                 "SMS_DEFAULT_FROM": SENDER,
                                 "SMS_SENDER_RATE_PER_MINUTE": 100_000}
    values.update(settings)
    services = Services(load_settings(**values))
    services.ensure_resources()
    name = f"out-{uuid.uuid4().hex[:12]}"
    services.storage.queue_service().create_queue(name)
    services.jobs = JobQueue(services.storage.queue(name))  # type: ignore[misc]
    retries = f"dlr-retry-{uuid.uuid4().hex[:12]}"
    services.storage.queue_service().create_queue(retries)
    services.report_retries = JobQueue(services.storage.queue(retries))  # type: ignore[misc]
    return services


@pytest.fixture
def services(azurite_connection_string: str, emulator: AcsEmulator) -> Services:
    return make_services(azurite_connection_string, emulator)


def queue_every_send(services: Services) -> Services:
    """Make `services` queue every bulk send (see `BusyBulkLane`)."""
    services.__dict__["pacer"] = BusyBulkLane(services.pacer)
    return services


M = TypeVar("M", bound=BaseModel)


def take_from(queue: JobQueue, model: type[M]) -> list[M]:
    """Remove and return the jobs visible now on one of the test's private queues."""
    client = queue._queue
    jobs = []
    for msg in client.receive_messages(messages_per_page=32, visibility_timeout=30):
        jobs.append(model.model_validate_json(msg.content))
        client.delete_message(msg)
    return jobs


def take_jobs(services: Services) -> list[DispatchJob]:
    """Remove and return the jobs visible now on the test's outbound queue."""
    return take_from(services.jobs, DispatchJob)


def dlr_client(storage: str, name: str) -> QueueClient:
    """A reader for the emulator's delivery-report queue (base64 text)."""
    return QueueClient.from_connection_string(storage, name,
                                              message_decode_policy=TextBase64DecodePolicy())


def storage_endpoints(connection_string: str) -> dict[str, tuple[str, int]]:
    """(host, port) of the Table and Queue services (and the Blob service when the string
    names one), for a `StorageProxy` in front of them."""
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    out: dict[str, tuple[str, int]] = {}
    for service, key in (("table", "TableEndpoint"), ("queue", "QueueEndpoint"),
                         ("blob", "BlobEndpoint")):
        url = urlsplit(parts.get(key, ""))
        if url.hostname is None or url.port is None:
            if service == "blob":
                continue
            pytest.skip("the proxy sits in front of an Azurite with explicit endpoints")
        out[service] = (url.hostname, url.port)
    return out
