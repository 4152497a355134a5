"""The Azure SDK clients' connection pools hold as many connections as the app uses at once.

urllib3 keeps at most `pool_maxsize` idle connections per host and, when more were open at once,
closes the extra ones with the warning "Connection pool is full, discarding connection": the
warning that flooded `make run` during a 1,000-recipient campaign (and each discarded connection
is a new TCP connection next time). A burst as wide as the app's concurrency, through the real
clients against Azurite and the ACS emulator, must discard none.
"""

from __future__ import annotations

import logging
import threading
import uuid

import pytest

from localdev.acs_emulator import AcsEmulator
from sms_core.bootstrap import Services
from sms_core.concurrency import CONNECTIONS_PER_HOST
from sms_core.models.messages import DispatchJob, OutboundSms
from tests.integration.conftest import SENDER, new_number

ROUNDS = 3


def _burst(services: Services, width: int) -> None:
    """`width` threads released together, each doing storage and ACS calls a few times."""
    gate = threading.Barrier(width)
    errors: list[BaseException] = []
    batch = f"pool{uuid.uuid4().hex[:12]}"

    def work(n: int) -> None:
        try:
            gate.wait(timeout=60)
            for _ in range(ROUNDS):
                services.messages.load(batch, [n])  # a Table query
                services.jobs.enqueue(DispatchJob(batch=batch, indices=[n]), 0)  # a Queue send
                services.gateway.send(SENDER, [OutboundSms(new_number(), str(uuid.uuid4()),
                                                           "Mon, 01 Jan 2024 00:00:00 GMT")],
                                      "pool test", tag=None, delivery_report=False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(width)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert not any(t.is_alive() for t in threads)


def test_a_burst_as_wide_as_the_app_discards_no_connection(
        services: Services, emulator: AcsEmulator, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        _burst(services, CONNECTIONS_PER_HOST)
    full = [r.getMessage() for r in caplog.records
            if r.name == "urllib3.connectionpool" and "pool is full" in r.getMessage()]
    assert full == [], full[:3]
