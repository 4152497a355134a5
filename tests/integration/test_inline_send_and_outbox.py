"""The accepting request sends inline; the outbox and its sweeper strand nothing.

Real parts: Azurite (tables and queues), the ACS SDK and the emulator. Faults are injected in
front of the queue service (a client whose sends fail or whose process "dies"), at ACS (an
answer lost after ACS took the call) and by the order of events (a backlog paced at 60/min, a
STOP arriving in it). Each test counts what reached the handsets: once, none stranded, none
twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ServiceResponseError

from localdev.acs_emulator import AcsEmulator
from sms_core.bootstrap import Services
from sms_core.errors import ProviderUnavailable
from sms_core.models.messages import DispatchJob, MessageStatus
from sms_core.models.records import split_message_id
from sms_core.use_cases.dispatch import dispatch
from sms_core.use_cases.messages import get_message
from sms_core.use_cases.outbox import GRACE, sweep_outbox
from sms_http.event_grid import inbound_post
from tests.integration.conftest import make_services, new_number, queue_every_send, take_jobs
from tests.integration.flows import apply_reports, run_all_jobs, send, status
from tests.integration.test_inbound import sms_event

UNSUBSCRIBED = ("You have successfully been unsubscribed to messages from this number. "
                "Reply START to resubscribe.")


def outbox_rows(services: Services, batch: str) -> list[str]:
    """The outbox rows still in a batch's partition."""
    return [e["RowKey"] for e in services.messages._table.query_entities(
        "PartitionKey eq @pk and Kind eq 'outbox'", parameters={"pk": batch})]


def marked(services: Services, message_id: str) -> bool:
    """True while a message's own row is its outbox entry (a request with one pending message)."""
    batch, index = split_message_id(message_id)
    return bool(services.messages._table.get_entity(batch, f"{index:05d}").get("Outbox"))


def after_grace() -> datetime:
    return datetime.now(UTC) + GRACE + timedelta(seconds=1)


class Crash(BaseException):
    """The process dies at this point: nothing after it runs, no handler catches it."""


class FaultyQueue:
    """A queue client in front of the real one: `send_message` calls listed in `fail` (1-based)
    fail as a dropped connection does (or `crash` the process); the rest pass through."""

    def __init__(self, real: Any, fail: set[int], crash: bool = False) -> None:
        self._real = real
        self._fail = fail
        self._crash = crash
        self.calls = 0
        self.queue_name = real.queue_name

    def send_message(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls in self._fail:
            if self._crash:
                raise Crash
            raise ServiceResponseError("Connection reset by peer")
        return self._real.send_message(*args, **kwargs)


def test_a_send_with_room_is_at_the_handset_when_the_answer_comes(
        services: Services, emulator: AcsEmulator, azurite_connection_string: str,
        dlr_queue_name: str) -> None:
    to = new_number()
    (entry,) = send(services, to=to, message="Your code is 123456", tag="otp").messages
    assert entry.status == MessageStatus.QUEUED  # what was accepted
    inbox = emulator.state.inbox(to)
    assert [m["message"] for m in inbox] == ["Your code is 123456"]  # no queue in between
    assert take_jobs(services) == []
    batch, _ = split_message_id(entry.id)
    assert outbox_rows(services, batch) == [] and not marked(services, entry.id)
    msg = get_message(services.messages, entry.id)
    assert msg.status == MessageStatus.SENT and msg.provider_message_id == inbox[0]["messageId"]
    assert apply_reports(services, azurite_connection_string, dlr_queue_name, 1) == 1
    msg = get_message(services.messages, entry.id)
    assert [h.status for h in msg.history] == ["queued", "sent", "delivered"]


def test_enqueue_failures_during_accept_answer_202_and_the_sweeper_sends_each_once(
        services: Services, emulator: AcsEmulator) -> None:
    numbers = [new_number() for _ in range(300)]  # 3 jobs, 4 transactions with outbox rows
    services.jobs._queue = FaultyQueue(services.jobs._queue, fail={2, 3})  # type: ignore[assignment]
    answer = send(services, to=numbers, message="Your appointment is tomorrow")
    assert [m.status for m in answer.messages] == [MessageStatus.QUEUED] * 300  # a 202
    batch, _ = split_message_id(answer.messages[0].id)
    assert len(outbox_rows(services, batch)) == 4  # not cleared: the enqueue failed
    services.jobs._queue = services.jobs._queue._real  # type: ignore[attr-defined]

    assert sweep_outbox(services) == 0  # within the grace period nothing is touched
    assert sweep_outbox(services, after_grace()) == 300  # every pending message, once more
    assert outbox_rows(services, batch) == []
    assert sweep_outbox(services, after_grace()) == 0
    run_all_jobs(services)
    assert all(len(emulator.state.inbox(n)) == 1 for n in numbers)
    sent = sum(len(r["recipients"]) for r in emulator.state.requests() if r["status"] == 202)
    assert sent == 300  # the job that did get through and the sweeper's overlap: no resend
    assert {status(services, m.id) for m in answer.messages} == {MessageStatus.SENT}


def test_a_crash_between_the_rows_and_the_enqueue_is_found_and_sent_once(
        services: Services, emulator: AcsEmulator) -> None:
    numbers = [new_number() for _ in range(150)]
    services.jobs._queue = FaultyQueue(services.jobs._queue, fail={1, 2}, crash=True)  # type: ignore[assignment]
    with pytest.raises(Crash):
        send(services, to=numbers, message="Doors open at 9")
    services.jobs._queue = services.jobs._queue._real  # type: ignore[attr-defined]
    assert take_jobs(services) == [] and emulator.state.stats()["accepted"] == 0
    assert sweep_outbox(services, after_grace()) == 150
    run_all_jobs(services)
    assert all(len(emulator.state.inbox(n)) == 1 for n in numbers)
    assert emulator.state.stats()["accepted"] == 150


@pytest.mark.parametrize("crash", [False, True], ids=["enqueue-fails", "process-dies"])
def test_a_lone_message_without_its_job_is_found_by_the_mark_on_its_row_and_sent_once(
        services: Services, emulator: AcsEmulator, crash: bool) -> None:
    queue_every_send(services)  # the sender's pace is taken: the message must go by the queue
    services.jobs._queue = FaultyQueue(services.jobs._queue, fail={1}, crash=crash)  # type: ignore[assignment]
    to = new_number()
    if crash:
        with pytest.raises(Crash):
            send(services, to=to, message="Your code is 424242")
        (row,) = [r for r in services.messages.stranded(
            datetime.now(UTC) - timedelta(minutes=1), after_grace())
            if services.messages.load(r.batch)[0].to == to]
        message_id = f"{row.batch}-{row.indices[0]:05d}"
    else:
        (entry,) = send(services, to=to, message="Your code is 424242").messages
        assert entry.status == MessageStatus.QUEUED  # a 202: the message is durable
        message_id = entry.id
    services.jobs._queue = services.jobs._queue._real  # type: ignore[attr-defined]
    batch, _ = split_message_id(message_id)
    assert outbox_rows(services, batch) == [] and marked(services, message_id)  # no row of its own
    assert take_jobs(services) == []

    assert sweep_outbox(services) == 0  # within the grace period
    assert sweep_outbox(services, after_grace()) == 1
    assert not marked(services, message_id)
    assert sweep_outbox(services, after_grace()) == 0
    run_all_jobs(services)
    assert [m["message"] for m in emulator.state.inbox(to)] == ["Your code is 424242"]
    assert emulator.state.stats()["accepted"] == 1
    assert status(services, message_id) == MessageStatus.SENT


def test_acs_accepting_an_inline_send_whose_answer_is_lost_sends_it_once(
        services: Services, emulator: AcsEmulator) -> None:
    real = services.gateway

    class AnswerLost:
        def send(self, *args: Any, **kwargs: Any) -> Any:
            real.send(*args, **kwargs)  # ACS took it ...
            raise ProviderUnavailable("ACS did not answer (read timeout)")  # ... we never heard

    services.__dict__["gateway"] = AnswerLost()
    to = new_number()
    (entry,) = send(services, to=to, message="Exactly once").messages
    services.__dict__["gateway"] = real
    assert status(services, entry.id) == MessageStatus.QUEUED  # waits for its retry (15 s)
    assert services.jobs._queue.get_queue_properties().approximate_message_count == 1
    batch, index = split_message_id(entry.id)
    dispatch(services, DispatchJob(batch=batch, indices=[index], attempt=2))  # the retry, now
    assert len(emulator.state.inbox(to)) == 1  # ACS de-duplicated the repeatability id
    calls = [r for r in emulator.state.requests() if to in r["recipients"]]
    assert len(calls) == 2
    msg = get_message(services.messages, entry.id)
    assert msg.status == MessageStatus.SENT
    assert msg.history[-1].detail == "accepted by ACS (duplicate of an earlier attempt)"


def test_a_stop_reply_overtakes_a_backlog_paced_at_60_a_minute(
        azurite_connection_string: str, emulator: AcsEmulator) -> None:
    sender = "+18005550177"
    services = make_services(azurite_connection_string, emulator, SMS_DEFAULT_FROM=sender,
                             SMS_SENDER_RATE_PER_MINUTE=60)
    numbers = [new_number() for _ in range(300)]
    send(services, to=numbers, message="Flash sale today")
    for job in take_jobs(services):  # the first 100 go, the rest wait for their slots
        dispatch(services, job)
    assert emulator.state.stats()["accepted"] == 100
    # One of the 200 still waiting (the jobs were enqueued side by side, in no fixed order).
    waiting = next(n for n in numbers if not emulator.state.inbox(n))

    answer = inbound_post(services, sms_event(waiting, sender, "STOP"))
    assert answer.status == 200
    # At the handset when the webhook answered: no queue, no pacing slot behind the 200.
    assert [m["message"] for m in emulator.state.inbox(waiting)] == [UNSUBSCRIBED]
    assert emulator.state.stats()["accepted"] == 101


def test_an_outbox_row_the_sweeper_took_meanwhile_does_not_fail_the_inline_send(
        services: Services, emulator: AcsEmulator) -> None:
    real = services.gateway
    to = new_number()

    class SweptDuringTheCall:
        def send(self, *args: Any, **kwargs: Any) -> Any:
            (row,) = [r for r in services.messages.stranded(
                datetime.now(UTC) - timedelta(minutes=1), datetime.now(UTC) + GRACE)
                if services.messages.load(r.batch)[0].to == to]
            services.messages.clear_outbox(row.batch, row.indices,  # as a sweeper would
                                           on_messages=row.on_message)
            return real.send(*args, **kwargs)

    services.__dict__["gateway"] = SweptDuringTheCall()
    (entry,) = send(services, to=to, message="Still once").messages
    services.__dict__["gateway"] = real
    assert len(emulator.state.inbox(to)) == 1
    assert status(services, entry.id) == MessageStatus.SENT
    assert outbox_rows(services, split_message_id(entry.id)[0]) == []


class FailingTransactions:
    """The Messages table client, except that transactions starting at one row key fail as a
    dropped connection does, every time (a partition server that stays unreachable)."""

    def __init__(self, real: Any, first_row: str) -> None:
        self._real = real
        self._first_row = first_row

    def submit_transaction(self, ops: Any, **kwargs: Any) -> Any:
        if ops and ops[0][1]["RowKey"] == self._first_row:
            raise ServiceResponseError("Connection reset by peer")
        return self._real.submit_transaction(ops, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_a_request_stored_in_part_answers_202_for_the_stored_and_rejects_the_rest(
        services: Services, emulator: AcsEmulator) -> None:
    numbers = [new_number() for _ in range(150)]  # transactions of 99 + 51
    real = services.messages._table
    services.messages._table = FailingTransactions(real, "00099")  # type: ignore[assignment]
    answer = send(services, to=numbers, message="Half of it")
    services.messages._table = real
    statuses = [m.status for m in answer.messages]
    assert statuses == [MessageStatus.QUEUED] * 99 + [MessageStatus.REJECTED] * 51
    assert {m.error for m in answer.messages[99:]} == {
        "not accepted: storage was unavailable; send to this recipient again"}
    run_all_jobs(services)
    # The client sends the rejected ones again, without a key: nobody gets it twice.
    again = send(services, to=numbers[99:], message="Half of it")
    assert {m.status for m in again.messages} == {MessageStatus.QUEUED}
    run_all_jobs(services)
    assert [len(emulator.state.inbox(n)) for n in numbers] == [1] * 150
