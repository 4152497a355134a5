"""The dispatcher (`dispatch`): one job from `sms-outbound` to one ACS call, and what follows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sms_core.errors import ProviderRejected, ProviderThrottled, ProviderUnavailable
from sms_core.models.messages import DispatchJob, MessageStatus, SendOutcome
from sms_core.models.records import Change
from sms_core.use_cases.delivery_reports import apply_delivery_reports, locate
from sms_core.use_cases.dispatch import MAX_ATTEMPTS, backoff_s, dispatch, repeatability_id
from sms_core.use_cases.messages import get_message
from sms_core.use_cases.sending import accept_reply
from tests.unit.fakes import SENDER, FakeDeps
from tests.unit.use_cases import steps
from tests.unit.use_cases.steps import ALICE, BOB, CAROL, run_jobs, send


def queued(deps: FakeDeps, *to: str, **body: Any) -> tuple[list[str], DispatchJob]:
    """Accept a send to `to` (the sender's pace has no room to send it inline) and take its
    (one) dispatch job off the queue."""
    deps.pacer.room_now = False
    answer = send(deps, to=list(to), message=body.pop("message", "Hello"), **body)
    ((job, _),) = deps.jobs.take(DispatchJob)
    return [m.id for m in answer.messages], job


def statuses(deps: FakeDeps, ids: list[str]) -> list[MessageStatus]:
    return [deps.messages.record(i).status for i in ids]


def test_a_job_is_one_acs_call_and_every_message_is_sent_and_routable(deps: FakeDeps) -> None:
    ids, job = queued(deps, ALICE, BOB, message="Hi", tag="welcome")
    result = dispatch(deps, job)
    assert (result.sent, result.failed, result.blocked, result.deferred) == (2, 0, 0, 0)
    (call,) = deps.gateway.calls
    assert (call.sender, call.to, call.message, call.tag, call.delivery_report) == (
        SENDER, [ALICE, BOB], "Hi", f"sms1|{job.batch}|0-1|welcome", True)
    for message_id, outbound in zip(ids, call.recipients, strict=True):
        record = deps.messages.record(message_id)
        assert record.status == MessageStatus.SENT and record.sent_at is not None
        assert record.provider_message_id is not None
        # Its report finds it by the tag (batch and index range), no ACS-id index row.
        report = steps.report(record.provider_message_id, "Delivered")
        assert locate(deps, report) == (job.batch, record.index, [record])
        assert outbound.repeatability_id == record.repeatability_id == repeatability_id(record)
        assert outbound.first_sent == record.first_sent
    assert deps.provider_ids.index == {}
    # Sent promptly: the expiry timer finds them by their batch's time, with no index row.
    assert deps.awaiting_reports.waiting() == set()
    (entry,) = deps.conversations.page(SENDER, ALICE)[0]
    assert (entry.direction, entry.message_id, entry.text, entry.tag) == (
        "outbound", ids[0], "Hi", "welcome")
    assert get_message(deps.messages, ids[0]).history[-1].detail == "accepted by ACS"


def test_a_message_sent_long_after_its_request_waits_for_its_report_in_the_index(
        deps: FakeDeps, monkeypatch: pytest.MonkeyPatch) -> None:
    steps.accepted_ago(monkeypatch, timedelta(hours=2))
    ids, job = queued(deps, ALICE, BOB)
    dispatch(deps, job)
    assert deps.awaiting_reports.waiting() == set(ids)
    alice = deps.messages.record(ids[0])
    apply_delivery_reports(deps, [steps.report(alice.provider_message_id, "Delivered")])
    assert deps.awaiting_reports.waiting() == {ids[1]}


def test_without_delivery_report_nothing_waits_for_one(deps: FakeDeps,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    steps.accepted_ago(monkeypatch, timedelta(hours=2))
    _, job = queued(deps, ALICE, deliveryReport=False)
    dispatch(deps, job)
    assert deps.gateway.calls[0].delivery_report is False
    assert deps.awaiting_reports.waiting() == set()


def test_an_opt_out_after_acceptance_blocks_the_message_before_acs(deps: FakeDeps) -> None:
    ids, job = queued(deps, ALICE, BOB)
    deps.optouts.opt_out(SENDER, BOB, source="keyword", keyword="STOP")
    result = dispatch(deps, job)
    assert (result.sent, result.blocked) == (1, 1)
    assert deps.gateway.calls[0].to == [ALICE]
    assert deps.gateway.texts_to(BOB) == []
    bob = deps.messages.record(ids[1])
    assert bob.status == MessageStatus.BLOCKED
    assert bob.error == f"{BOB} opted out of messages from {SENDER}"
    assert deps.analytics.totals()["blocked"] == 1


def test_a_job_whose_every_recipient_opted_out_calls_acs_not_at_all(deps: FakeDeps) -> None:
    ids, job = queued(deps, ALICE)
    deps.optouts.opt_out(SENDER, ALICE, source="api")
    assert dispatch(deps, job).blocked == 1
    assert deps.gateway.calls == []
    (event,) = deps.app_events.of_type("sms.status")
    assert event["data"]["status"] == "blocked" and event["data"]["id"] == ids[0]


def test_the_confirmation_of_a_stop_is_sent_although_the_person_opted_out(
        deps: FakeDeps) -> None:
    deps.optouts.opt_out(SENDER, ALICE, source="keyword", keyword="STOP")
    accept_reply(deps, SENDER, ALICE, "You are unsubscribed.", "in-1", confirms_opt_out=True)
    run_jobs(deps)
    assert deps.gateway.texts_to(ALICE) == ["You are unsubscribed."]


def test_a_redelivered_job_sends_nothing_twice(deps: FakeDeps) -> None:
    ids, job = queued(deps, ALICE, BOB)
    dispatch(deps, job)
    again = dispatch(deps, job, attempt=2)  # the queue hands the same message over again
    assert again.sent == 0
    assert len(deps.gateway.calls) == 1
    assert deps.gateway.texts_to(ALICE) == deps.gateway.texts_to(BOB) == ["Hello"]
    assert statuses(deps, ids) == [MessageStatus.SENT] * 2
    assert deps.analytics.totals()["sent"] == 2  # counted once, although announced again
    assert deps.jobs.enqueued == []


def test_a_retry_carries_the_same_repeatability_ids(deps: FakeDeps) -> None:
    ids, job = queued(deps, ALICE)
    deps.gateway.fail_next(ProviderUnavailable("connection reset"))
    dispatch(deps, job)
    ((retry, _),) = deps.jobs.take(DispatchJob)
    dispatch(deps, retry)
    first, second = deps.gateway.calls
    assert first.recipients == second.recipients  # same repeatability id and first-sent time
    assert statuses(deps, ids) == [MessageStatus.SENT]


def test_a_redelivery_after_a_crash_mid_call_is_deduplicated_by_acs(
        deps: FakeDeps, monkeypatch: pytest.MonkeyPatch) -> None:
    ids, job = queued(deps, ALICE)
    acs_send = deps.gateway.send

    def send_then_die(*args: Any, **kwargs: Any) -> list[SendOutcome]:
        acs_send(*args, **kwargs)  # ACS took the message; the worker dies before recording it
        raise RuntimeError("worker died")

    monkeypatch.setattr(deps.gateway, "send", send_then_die)
    with pytest.raises(RuntimeError):
        dispatch(deps, job)
    assert statuses(deps, ids) == [MessageStatus.QUEUED]
    monkeypatch.undo()
    assert dispatch(deps, job, attempt=2).sent == 1
    first, second = deps.gateway.calls
    assert first.recipients == second.recipients
    assert deps.gateway.texts_to(ALICE) == ["Hello"]  # one SMS on the handset
    assert get_message(deps.messages, ids[0]).history[-1].detail == (
        "accepted by ACS (duplicate of an earlier attempt)")


def test_a_pacing_slot_far_away_puts_the_job_back_with_its_slot(deps: FakeDeps) -> None:
    ids, job = queued(deps, ALICE, BOB)
    deps.pacer.wait_s = 30
    result = dispatch(deps, job)
    assert result.deferred == 2 and deps.gateway.calls == []
    ((back, delay),) = deps.jobs.decoded(DispatchJob)
    assert back.indices == [0, 1] and back.slot_at is not None
    assert 29 < delay <= 30 and abs(back.slot_at - (datetime.now(UTC).timestamp() + 30)) < 1
    assert deps.pacer.reserved == [(SENDER, 2)]
    assert statuses(deps, ids) == [MessageStatus.QUEUED] * 2


def test_a_job_with_a_slot_takes_no_new_one(deps: FakeDeps) -> None:
    _, job = queued(deps, ALICE)
    now = datetime.now(UTC).timestamp()
    dispatch(deps, job.model_copy(update={"slot_at": now}))
    assert deps.pacer.reserved == [] and len(deps.gateway.calls) == 1


def test_a_scheduled_job_that_is_not_due_goes_back_until_it_is(deps: FakeDeps) -> None:
    at = datetime.now(UTC) + timedelta(days=10)
    _, job = queued(deps, ALICE, sendAt=at.isoformat())
    assert dispatch(deps, job).deferred == 1
    ((back, delay),) = deps.jobs.decoded(DispatchJob)
    assert back == job and 10 * 86400 - 5 < delay <= 10 * 86400
    assert deps.gateway.calls == [] and deps.pacer.reserved == []


def test_acs_throttling_puts_the_recipients_back_after_retry_after(deps: FakeDeps) -> None:
    ids, job = queued(deps, ALICE, BOB)
    deps.gateway.fail_next(ProviderThrottled("ACS throttled the sender", retry_after=12))
    result = dispatch(deps, job)
    assert (result.sent, result.failed, result.deferred) == (0, 0, 2)
    assert statuses(deps, ids) == [MessageStatus.QUEUED] * 2
    ((back, delay),) = deps.jobs.decoded(DispatchJob)
    assert (back.indices, back.attempt, back.slot_at, delay) == ([0, 1], 1, None, 12)
    run_jobs(deps)
    assert statuses(deps, ids) == [MessageStatus.SENT] * 2


def test_an_acs_outage_is_retried_with_backoff_and_then_fails(deps: FakeDeps) -> None:
    ids, job = queued(deps, ALICE)
    deps.gateway.fail_next(*[ProviderUnavailable("ACS failed: 503", 503)] * MAX_ATTEMPTS)
    delays, attempts = [], []
    while True:
        dispatch(deps, job)
        back = deps.jobs.take(DispatchJob)
        if not back:
            break
        ((job, delay),) = back
        delays.append(delay)
        attempts.append(job.attempt)
        assert statuses(deps, ids) == [MessageStatus.QUEUED]
    assert attempts == list(range(2, MAX_ATTEMPTS + 1))
    assert delays == [backoff_s(n) for n in range(1, MAX_ATTEMPTS)]
    assert delays[:3] == [15, 30, 60]
    assert len(deps.gateway.calls) == MAX_ATTEMPTS
    record = deps.messages.record(ids[0])
    assert record.status == MessageStatus.FAILED and record.error == "ACS failed: 503"
    assert deps.analytics.totals()["failed"] == 1


def test_queue_redeliveries_count_as_attempts(deps: FakeDeps) -> None:
    ids, job = queued(deps, ALICE)
    deps.gateway.fail_next(ProviderUnavailable("ACS could not be reached"))
    dispatch(deps, job, attempt=MAX_ATTEMPTS)  # the host redelivered it this often
    assert deps.jobs.enqueued == []
    assert statuses(deps, ids) == [MessageStatus.FAILED]


def test_a_recipient_acs_answers_5xx_is_retried_and_the_others_are_sent(deps: FakeDeps) -> None:
    ids, job = queued(deps, ALICE, BOB)
    deps.gateway.refuse_next({BOB: (503, "Service unavailable")})
    result = dispatch(deps, job)
    assert (result.sent, result.deferred) == (1, 1)
    assert statuses(deps, ids) == [MessageStatus.SENT, MessageStatus.QUEUED]
    ((back, delay),) = deps.jobs.decoded(DispatchJob)
    assert (back.indices, back.attempt, delay) == ([1], 2, backoff_s(1))
    run_jobs(deps)
    assert statuses(deps, ids) == [MessageStatus.SENT] * 2
    assert deps.gateway.texts_to(ALICE) == ["Hello"]  # the retry did not resend to Alice


def test_a_recipient_acs_refuses_with_4xx_fails_with_its_reason(deps: FakeDeps) -> None:
    ids, job = queued(deps, ALICE, BOB)
    deps.gateway.refuse_next({BOB: (400, "Invalid destination number")})
    result = dispatch(deps, job)
    assert (result.sent, result.failed, result.deferred) == (1, 1, 0)
    bob = deps.messages.record(ids[1])
    assert bob.status == MessageStatus.FAILED and bob.error == "Invalid destination number"
    assert get_message(deps.messages, ids[1]).history[-1].detail == "ACS refused the message (400)"
    assert deps.jobs.enqueued == []
    assert bob.id not in deps.awaiting_reports.waiting()


def test_a_call_acs_rejects_fails_every_message_of_it(deps: FakeDeps) -> None:
    ids, job = queued(deps, ALICE, BOB)
    deps.gateway.fail_next(ProviderRejected("ACS rejected the request: bad sender", 400))
    result = dispatch(deps, job)
    assert (result.sent, result.failed) == (0, 2)
    assert [deps.messages.record(i).error for i in ids] == [
        "ACS rejected the request: bad sender"] * 2
    assert deps.jobs.enqueued == [] and deps.provider_ids.index == {}
    assert {e["data"]["status"] for e in deps.app_events.of_type("sms.status")} == {"failed"}


def test_a_message_whose_campaign_was_canceled_meanwhile_is_canceled_not_sent(
        deps: FakeDeps) -> None:
    ids, job = queued(deps, ALICE, BOB)
    deps.messages.apply(job.batch, [0], lambda r: Change(fields={"cancel_requested": True}))
    result = dispatch(deps, job)
    assert result.sent == 1
    assert deps.gateway.calls[0].to == [BOB]
    assert statuses(deps, ids) == [MessageStatus.CANCELED, MessageStatus.SENT]
    canceled = [e for e in deps.app_events.of_type("sms.status")
                if e["data"]["status"] == "canceled"]
    assert [e["data"]["id"] for e in canceled] == [ids[0]]


def test_one_sms_status_per_settled_message_and_facts_counted_once(deps: FakeDeps) -> None:
    ids, job = queued(deps, ALICE, BOB, CAROL, tag="promo")
    deps.gateway.refuse_next({CAROL: (400, "Invalid destination number")})
    dispatch(deps, job)
    events = deps.app_events.of_type("sms.status")
    assert sorted((e["id"], e["data"]["status"]) for e in events) == sorted([
        (f"status-{ids[0]}-sent", "sent"), (f"status-{ids[1]}-sent", "sent"),
        (f"status-{ids[2]}-failed", "failed")])
    assert all(e["data"]["tag"] == "promo" for e in events)
    dispatch(deps, job, attempt=2)  # redelivered: announced again, under the same ids
    assert {e["id"] for e in deps.app_events.of_type("sms.status")} == {e["id"] for e in events}
    totals = deps.analytics.totals(tag="promo")
    assert (totals["sent"], totals["failed"], totals["segments"]) == (2, 1, 2)


def test_personalised_bodies_in_one_job_go_as_one_call_each(deps: FakeDeps) -> None:
    deps.pacer.room_now = False
    first = send(deps, to=ALICE, message="Hi Alice").messages[0]
    batch = first.id.rsplit("-", 1)[0]
    # A campaign chunk: one batch, one sender, a rendered text per recipient.
    (record,) = deps.messages.load(batch)
    deps.messages.create_batch([replace(record, index=1, to=BOB, body="Hi Bob")])
    deps.jobs.take(DispatchJob)
    result = dispatch(deps, DispatchJob(batch=batch, indices=[0, 1]))
    assert result.sent == 2
    assert sorted((c.to[0], c.message) for c in deps.gateway.calls) == [
        (ALICE, "Hi Alice"), (BOB, "Hi Bob")]


def test_an_opted_out_recipient_gives_its_pacing_slot_back(deps: FakeDeps) -> None:
    ids, job = queued(deps, ALICE, BOB)
    deps.optouts.opt_out(SENDER, BOB, source="keyword", keyword="STOP")
    result = dispatch(deps, job)
    assert (result.sent, result.blocked) == (1, 1)
    assert deps.gateway.texts_to(ALICE) == ["Hello"] and deps.gateway.texts_to(BOB) == []
    assert statuses(deps, ids) == [MessageStatus.SENT, MessageStatus.BLOCKED]
    # One slot in the end: both reserved with one write, Bob's share given back.
    assert deps.pacer.reserved == [(SENDER, 2)] and deps.pacer.given_back == [(SENDER, 1)]


def test_an_opted_out_recipient_keeps_no_slot_while_the_job_waits_for_its_own(
        deps: FakeDeps) -> None:
    ids, job = queued(deps, ALICE, BOB)
    deps.optouts.opt_out(SENDER, BOB, source="keyword", keyword="STOP")
    deps.pacer.wait_s = 30
    result = dispatch(deps, job)
    assert (result.blocked, result.deferred) == (1, 1) and deps.gateway.calls == []
    ((back, _delay),) = deps.jobs.decoded(DispatchJob)
    assert back.indices == [0] and back.slot_at is not None  # Alice waits for the slot
    assert deps.pacer.given_back == [(SENDER, 1)]  # Bob's share is back at once
    assert statuses(deps, ids) == [MessageStatus.QUEUED, MessageStatus.BLOCKED]


def test_a_stop_while_a_job_waited_for_its_slot_gives_the_slot_back(deps: FakeDeps) -> None:
    _ids, job = queued(deps, ALICE, BOB)
    deps.pacer.wait_s = 30
    dispatch(deps, job)  # reserved 2, back on the queue until the slot
    ((woken, _),) = deps.jobs.take(DispatchJob)
    deps.optouts.opt_out(SENDER, BOB, source="keyword", keyword="STOP")
    deps.pacer.wait_s = 0
    dispatch(deps, woken.model_copy(update={"slot_at": datetime.now(UTC).timestamp()}))
    assert deps.gateway.texts_to(ALICE) == ["Hello"] and deps.gateway.texts_to(BOB) == []
    assert deps.pacer.given_back == [(SENDER, 1)]


def test_a_priority_job_takes_the_priority_lane(deps: FakeDeps) -> None:
    _ids, job = queued(deps, ALICE)
    dispatch(deps, job.model_copy(update={"priority": True}))
    assert deps.pacer.priority == [(SENDER, 1)] and deps.pacer.reserved == []


def test_a_report_that_overtook_the_send_keeps_the_acs_id_and_the_sent_count(
        deps: FakeDeps) -> None:
    ids, job = queued(deps, ALICE, tag="otp")
    real_send = deps.gateway.send

    def report_first(*args: Any, **kwargs: Any) -> list[SendOutcome]:
        outcomes = real_send(*args, **kwargs)
        batch, index = ids[0].rsplit("-", 1)
        deps.messages.apply(batch, [int(index)], lambda r: Change(
            status=MessageStatus.DELIVERED, detail="delivery report: Delivered"))
        return outcomes

    deps.gateway.send = report_first  # type: ignore[method-assign]
    assert dispatch(deps, job).sent == 1  # sent by this dispatch, whatever came back first
    record = deps.messages.record(ids[0])
    assert record.status == MessageStatus.DELIVERED
    assert record.provider_message_id and record.sent_at is not None
    assert deps.analytics.totals()["sent"] == 1 and deps.analytics.totals()["segments"] == 1
    # Its history still has the `sent` step, where it happened: before the report.
    history = get_message(deps.messages, ids[0]).public()["history"]
    assert [e["status"] for e in history] == ["queued", "sent", "delivered"]
    assert "after its delivery report" in history[1]["detail"]
    dispatch(deps, job)  # redelivered: nothing more is noted
    assert len(get_message(deps.messages, ids[0]).public()["history"]) == 3
