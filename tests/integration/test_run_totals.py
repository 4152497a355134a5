"""A campaign run's totals against Azurite: kept as its messages are created and change (a delta
row in each transaction, folded exactly once by reads), equal to counting the messages at every
step, a redelivered chunk not counted twice; once no message can change they stay on the run,
so reading a campaign costs the same with one run or thirty."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from localdev.acs_emulator import AcsEmulator
from localdev.storage_proxy import Fault, StorageProxy, total_requests
from sms_core.bootstrap import Services
from sms_core.concurrency import run_all
from sms_core.models.messages import MessageStatus
from sms_core.models.records import Change, MessageRecord, run_batch, run_key
from sms_core.use_cases.campaign_runs import refresh_runs
from sms_core.use_cases.campaigns import confirm_send, prepare_campaign
from sms_http.requests import campaign_request, send_confirmation
from tests.integration.conftest import make_services, new_number, storage_endpoints
from tests.integration.test_campaigns import drain


def prepare(services: Services, **body: Any) -> Any:
    body.setdefault("name", "totals")
    return prepare_campaign(services, campaign_request(json.dumps(body).encode(),
                                                       "application/json", {}))


def deltas(services: Services, batch: str) -> int:
    return len(list(services.messages._table.query_entities(
        "PartitionKey eq @pk and RowKey ge '~delta.' and RowKey lt '~delta/'",
        parameters={"pk": batch})))


def test_the_kept_totals_equal_the_messages_at_every_step(services: Services) -> None:
    people = [new_number() for _ in range(230)]
    services.optouts.opt_out("+18005550100", people[0], source="api")
    prepared = prepare(services, template="Hi", delivery_report=True,
                       audience={"recipients": [{"to": p} for p in people]})
    # Opted out after preparing: blocked when its chunk fans out.
    services.optouts.opt_out("+18005550100", people[1], source="api")
    sent = confirm_send(services, prepared.id, send_confirmation(json.dumps(
        {"confirmationToken": prepared.confirmation_token}).encode()))
    batch = run_batch(prepared.id, sent.runs[0].id)
    drain(services)
    assert services.messages.run_counts(batch) == services.messages.status_counts(batch)
    # people[0] opted out before: not in the snapshot at all.
    assert services.messages.run_counts(batch) == {"sent": 228, "blocked": 1}
    # Delivery reports for a hundred, from many threads at once.
    run_all(lambda i: services.messages.apply(batch, [i], lambda r: Change(
        status=MessageStatus.DELIVERED, detail="report")), range(2, 102))
    assert services.messages.run_counts(batch) == {"sent": 128, "delivered": 100,
                                                   "blocked": 1}
    assert deltas(services, batch) <= 20  # the reads folded what the changes added
    assert services.messages.run_counts(batch) == services.messages.status_counts(batch)


def test_concurrent_reads_fold_each_delta_once(services: Services) -> None:
    batch = run_batch("c20260101000000aaaaaaaaaaaa", run_key(datetime.now(UTC)))
    now = datetime.now(UTC)
    records = [MessageRecord(batch=batch, index=i, sender="+18005550100", to=new_number(),
                             body="x", status=MessageStatus.QUEUED,
                             initial_status=MessageStatus.QUEUED, segments=1,
                             encoding="GSM-7", created_at=now, updated_at=now)
               for i in range(120)]
    services.messages.create_batch(records)
    run_all(lambda i: services.messages.apply(batch, [i], lambda r: Change(
        status=MessageStatus.SENT, detail="sent")), range(60))
    assert deltas(services, batch) > 20
    answers = run_all(lambda _: services.messages.run_counts(batch), range(6))
    assert all(a == {"queued": 60, "sent": 60} for a in answers)
    assert services.messages.run_counts(batch) == {"queued": 60, "sent": 60}
    # The same messages written again (a redelivered chunk): nothing counted twice.
    services.messages.create_batch(records)
    assert services.messages.run_counts(batch) == {"queued": 60, "sent": 60}


@pytest.fixture
def proxy(azurite_connection_string: str) -> Iterator[StorageProxy]:
    with StorageProxy(storage_endpoints(azurite_connection_string)) as running:
        yield running


def test_a_campaign_with_thirty_settled_runs_reads_as_cheaply_as_one(
        proxy: StorageProxy, emulator: AcsEmulator) -> None:
    services = make_services(proxy.connection_string(), emulator)
    costs = []
    for runs in (1, 30):
        prepared = prepare(services, template="Hi", delivery_report=False,
                           audience={"recipients": [{"to": new_number()}]})
        campaign = services.campaigns.get(prepared.id)
        start = datetime(2026, 1, 1, tzinfo=UTC)
        for n in range(runs):
            run = services.campaigns.start_run(campaign.id, run_key(start + timedelta(days=n)),
                                               1)
            services.campaigns.mark_chunk(run, 0, {})
            assert services.campaigns.set_run_status(run, "completed")
            assert services.campaigns.settle_run(run, {"sent": 1})
        campaign.status = "completed"
        proxy.reset()
        _, read = refresh_runs(services, campaign)
        costs.append(total_requests(proxy.snapshot()))
        assert [c for _, c in read] == [{"sent": 1}] * runs
    assert costs[0] == costs[1] == 1  # one range query of the campaign's runs


def test_a_run_is_settled_once_no_message_can_change(services: Services) -> None:
    people = [new_number() for _ in range(3)]
    prepared = prepare(services, template="Hi", delivery_report=True,
                       audience={"recipients": [{"to": p} for p in people]})
    sent = confirm_send(services, prepared.id, send_confirmation(json.dumps(
        {"confirmationToken": prepared.confirmation_token}).encode()))
    batch = run_batch(prepared.id, sent.runs[0].id)
    drain(services)
    campaign = services.campaigns.get(prepared.id)
    refresh_runs(services, campaign)
    (run,) = services.campaigns.runs(prepared.id)
    assert run.status == "completed" and run.settled_counts is None  # sent: reports may come
    services.messages.apply(batch, [0, 1, 2], lambda r: Change(
        status=MessageStatus.DELIVERED, detail="report"))
    refresh_runs(services, services.campaigns.get(prepared.id))
    (run,) = services.campaigns.runs(prepared.id)
    assert run.settled_counts == {"delivered": 3}


def test_a_fold_that_fails_never_fails_the_read(proxy: StorageProxy,
                                                emulator: AcsEmulator) -> None:
    """A fold is best effort: refused (or dropped) by storage, the read still answers, exactly."""
    services = make_services(proxy.connection_string(), emulator)
    batch = run_batch("c20260101000000bbbbbbbbbbbb", run_key(datetime.now(UTC)))
    now = datetime.now(UTC)
    services.messages.create_batch([MessageRecord(
        batch=batch, index=i, sender="+18005550100", to=new_number(), body="x",
        status=MessageStatus.QUEUED, initial_status=MessageStatus.QUEUED, segments=1,
        encoding="GSM-7", created_at=now, updated_at=now) for i in range(40)])
    run_all(lambda i: services.messages.apply(batch, [i], lambda r: Change(
        status=MessageStatus.SENT, detail="sent")), range(30))
    proxy.fault = lambda info: Fault(400) if b"~totals" in info.body else None
    assert services.messages.run_counts(batch) == {"queued": 10, "sent": 30}
    assert deltas(services, batch) > 20  # nothing was folded
    proxy.fault = None
    assert services.messages.run_counts(batch) == {"queued": 10, "sent": 30}
    assert deltas(services, batch) <= 20
