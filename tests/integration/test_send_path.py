"""The queued send path against real parts: Azurite, the ACS SDK and the ACS emulator.

The sender's bulk lane is kept busy here (`queue_every_send`), so every accepted message goes
through `sms-outbound` and dispatch; the inline send and the outbox have
`test_inline_send_and_outbox.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from localdev.acs_emulator import AcsEmulator
from sms_core.bootstrap import Services
from sms_core.errors import Conflict, RequestInvalid
from sms_core.models.messages import MessageStatus
from sms_core.use_cases.dispatch import dispatch
from sms_core.use_cases.messages import get_message
from tests.deadlines import scaled
from tests.integration.conftest import (
    SENDER,
    make_services,
    new_number,
    queue_every_send,
    take_jobs,
)
from tests.integration.flows import apply_reports, run_all_jobs, send, status


@pytest.fixture
def services(azurite_connection_string: str, emulator: AcsEmulator) -> Services:
    return queue_every_send(make_services(azurite_connection_string, emulator))


def test_send_reaches_handset_and_goes_queued_sent_delivered(
        services: Services, emulator: AcsEmulator, azurite_connection_string: str,
        dlr_queue_name: str) -> None:
    to = new_number()
    resp = send(services, to=to, message="Hello from Azure Functions", tag="welcome")
    (entry,) = resp.messages
    assert entry.status == MessageStatus.QUEUED and entry.to == to
    assert (entry.segments, entry.encoding) == (1, "GSM-7")
    assert status(services, entry.id) == MessageStatus.QUEUED

    assert run_all_jobs(services) == 1
    inbox = emulator.state.inbox(to)
    assert [m["message"] for m in inbox] == ["Hello from Azure Functions"]
    msg = get_message(services.messages, entry.id)
    assert msg.status == MessageStatus.SENT
    assert msg.provider_message_id == inbox[0]["messageId"]

    assert apply_reports(services, azurite_connection_string, dlr_queue_name, 1) == 1
    msg = get_message(services.messages, entry.id)
    assert msg.status == MessageStatus.DELIVERED
    assert [h.status for h in msg.history] == ["queued", "sent", "delivered"]
    assert msg.tag == "welcome"


def test_150_recipients_are_sent_in_calls_of_at_most_100_each_once(
        services: Services, emulator: AcsEmulator) -> None:
    numbers = [new_number() for _ in range(150)]
    resp = send(services, to=numbers, message="Big news")
    assert [m.to for m in resp.messages] == numbers
    assert {m.status for m in resp.messages} == {MessageStatus.QUEUED}
    run_all_jobs(services)
    calls = [r for r in emulator.state.requests() if r["status"] == 202]
    assert sorted(len(c["recipients"]) for c in calls) == [50, 100]
    for n in numbers:
        assert len(emulator.state.inbox(n)) == 1, n
    assert {status(services, m.id) for m in resp.messages} == {MessageStatus.SENT}


def test_opted_out_recipient_is_blocked_and_never_reaches_acs(
        services: Services, emulator: AcsEmulator) -> None:
    out, ok = new_number(), new_number()
    services.optouts.opt_out(SENDER, out, source="api", reason="test")
    resp = send(services, to=[out, ok], message="Promo")
    assert [m.status for m in resp.messages] == [MessageStatus.BLOCKED, MessageStatus.QUEUED]
    assert "opted out" in (resp.messages[0].error or "")
    run_all_jobs(services)
    assert emulator.state.inbox(out) == []
    assert len(emulator.state.inbox(ok)) == 1
    assert all(out not in r["recipients"] for r in emulator.state.requests())


def test_stop_after_queueing_still_blocks_at_dispatch(
        services: Services, emulator: AcsEmulator) -> None:
    to = new_number()
    (entry,) = send(services, to=to, message="Queued before the STOP").messages
    services.optouts.opt_out(SENDER, to, source="keyword", keyword="STOP")
    run_all_jobs(services)
    assert emulator.state.inbox(to) == []
    msg = get_message(services.messages, entry.id)
    assert msg.status == MessageStatus.BLOCKED
    assert emulator.state.requests() == []


def test_invalid_and_duplicate_numbers_are_rejected_others_sent(
        services: Services, emulator: AcsEmulator) -> None:
    good = new_number()
    resp = send(services, to=[good, "+1425555", good, "hello"], message="Hi")
    assert [m.status for m in resp.messages] == [
        MessageStatus.QUEUED, MessageStatus.REJECTED, MessageStatus.REJECTED,
        MessageStatus.REJECTED]
    assert "duplicate" in (resp.messages[2].error or "")
    assert resp.messages[1].to == "+1425555" and resp.messages[1].error
    run_all_jobs(services)
    assert len(emulator.state.inbox(good)) == 1


def test_idempotency_key_replay_sends_nothing_new(
        services: Services, emulator: AcsEmulator) -> None:
    to = new_number()
    first = send(services, "key-" + to, to=to, message="Once only")
    run_all_jobs(services)
    again = send(services, "key-" + to, to=to, message="Once only")
    assert again.public() == first.public()
    assert take_jobs(services) == []
    assert len(emulator.state.inbox(to)) == 1
    with pytest.raises(Conflict):
        send(services, "key-" + to, to=to, message="Another body")
    with pytest.raises(RequestInvalid):
        send(services, "bad key with spaces", to=to, message="Once only")


def test_idempotent_retry_after_a_crash_finishes_the_work(
        services: Services, emulator: AcsEmulator) -> None:
    to = new_number()
    broken = services.jobs
    services.jobs = None  # type: ignore[assignment]  # enqueueing fails: the "crash"
    with pytest.raises(AttributeError):
        send(services, "crash-" + to, to=to, message="Eventually")
    services.jobs = broken  # type: ignore[misc]
    retry = send(services, "crash-" + to, to=to, message="Eventually")
    run_all_jobs(services)
    assert len(emulator.state.inbox(to)) == 1
    assert status(services, retry.messages[0].id) == MessageStatus.SENT


def test_crash_between_acs_call_and_recording_does_not_send_twice(
        services: Services, emulator: AcsEmulator) -> None:
    to = new_number()
    (entry,) = send(services, to=to, message="Exactly once").messages
    (job,) = take_jobs(services)
    real = services.gateway

    class CrashAfterSend:
        def send(self, *args: Any, **kwargs: Any) -> Any:
            real.send(*args, **kwargs)
            raise RuntimeError("worker died after ACS accepted the call")

    services.__dict__["gateway"] = CrashAfterSend()
    with pytest.raises(RuntimeError):
        dispatch(services, job)
    services.__dict__["gateway"] = real
    dispatch(services, job, attempt=2)  # the queue redelivers the job
    assert len(emulator.state.inbox(to)) == 1
    msg = get_message(services.messages, entry.id)
    assert msg.status == MessageStatus.SENT
    assert msg.provider_message_id == emulator.state.inbox(to)[0]["messageId"]
    assert len(emulator.state.requests()) == 2  # the resend reached ACS and was de-duplicated


def test_429_from_acs_delays_the_job_but_loses_nothing(
        azurite_connection_string: str, emulator: AcsEmulator) -> None:
    sender = "+18005550199"
    services = queue_every_send(
        make_services(azurite_connection_string, emulator, SMS_DEFAULT_FROM=sender))
    emulator.state.throttle_next(sender, calls=1, retry_after_s=1)
    to = new_number()
    (entry,) = send(services, to=to, message="Patience").messages
    (job,) = take_jobs(services)
    result = dispatch(services, job)
    assert result.deferred == 1 and emulator.state.inbox(to) == []
    assert [r["status"] for r in emulator.state.requests()] == [429]
    assert status(services, entry.id) == MessageStatus.QUEUED
    run_all_jobs(services)
    assert len(emulator.state.inbox(to)) == 1
    assert status(services, entry.id) == MessageStatus.SENT


def test_unreachable_number_ends_failed_with_the_acs_reason(
        services: Services, emulator: AcsEmulator, azurite_connection_string: str,
        dlr_queue_name: str) -> None:
    (entry,) = send(services, to="+14255550000", message="Anyone there?").messages
    run_all_jobs(services)
    apply_reports(services, azurite_connection_string, dlr_queue_name, 1)
    msg = get_message(services.messages, entry.id)
    assert msg.status == MessageStatus.FAILED
    assert msg.error and msg.error.startswith("4006")


def test_per_recipient_failure_in_a_202_is_recorded(
        services: Services, emulator: AcsEmulator) -> None:
    from localdev.acs_emulator import Outcome

    bad, good = new_number(), new_number()
    emulator.state.set_outcome(bad, Outcome.from_json(
        {"sendError": {"httpStatusCode": 400, "errorMessage": "Invalid To phone number."}}))
    resp = send(services, to=[bad, good], message="Mixed")
    run_all_jobs(services)
    assert status(services, resp.messages[0].id) == MessageStatus.FAILED
    assert get_message(services.messages, resp.messages[0].id).error == "Invalid To phone number."
    assert status(services, resp.messages[1].id) == MessageStatus.SENT


def test_scheduled_message_waits_for_send_at(
        services: Services, emulator: AcsEmulator) -> None:
    to = new_number()
    send_at = datetime.now(UTC) + timedelta(seconds=scaled(2))  # still ahead once accepted
    (entry,) = send(services, to=to, message="Later", sendAt=send_at.isoformat()).messages
    assert entry.status == MessageStatus.SCHEDULED
    assert take_jobs(services) == []  # invisible until it is due
    run_all_jobs(services)
    assert len(emulator.state.inbox(to)) == 1
    msg = get_message(services.messages, entry.id)
    assert msg.status == MessageStatus.SENT and msg.sent_at and msg.sent_at >= send_at


def test_a_stale_write_is_re_decided_against_the_current_state(services: Services) -> None:
    from sms_core.models.records import Change
    from sms_core.models.records import split_message_id as split

    (entry,) = send(services, to=new_number(), message="Race").messages
    batch, index = split(entry.id)
    stale = services.messages.load(batch, [index])
    # A delivery report wins the race and makes the message final...
    services.messages.apply(batch, [index], lambda r: Change(status=MessageStatus.DELIVERED))
    decisions = []

    def mark_failed(r: Any) -> Change | None:
        decisions.append(r.status)
        return Change(status=MessageStatus.FAILED) if r.status == MessageStatus.QUEUED else None

    # ...so the dispatcher's write, decided on the stale copy, is refused and decided again.
    (after,) = services.messages.apply(batch, [index], mark_failed, preloaded=stale)
    assert decisions == [MessageStatus.QUEUED, MessageStatus.DELIVERED]
    assert after.status == MessageStatus.DELIVERED
    history = get_message(services.messages, entry.id).history
    assert [h.status for h in history] == ["queued", "delivered"]
