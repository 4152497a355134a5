"""Accepting a send request (`accept_send`, `accept_reply`) against in-memory ports."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from sms_core.errors import Conflict, ProviderThrottled, RequestInvalid, StorageUnavailable
from sms_core.models.messages import DispatchJob, MessageStatus, SendRequest, parse_model
from sms_core.models.records import ConversationRecord, MessageRecord
from sms_core.use_cases.dispatch import repeatability_id
from sms_core.use_cases.outbox import GRACE, sweep_outbox
from sms_core.use_cases.ports import Job
from sms_core.use_cases.sending import accept_reply, accept_send
from tests.unit.fakes import SENDER, FakeDeps
from tests.unit.use_cases.steps import ALICE, BOB, CAROL, run_jobs, send


@pytest.fixture
def deps() -> FakeDeps:
    """The sender's pace has no room now: accepted messages go on the queue (the inline send
    has its own tests below, on `idle`)."""
    built = FakeDeps.build()
    built.pacer.room_now = False
    return built


@pytest.fixture
def idle() -> FakeDeps:
    """A sender whose pace has room: a small request is sent before it is answered."""
    return FakeDeps.build()


def test_every_recipient_is_answered_in_request_order_and_queued_in_one_job(
        deps: FakeDeps) -> None:
    answer = send(deps, to=[ALICE, BOB, CAROL], message="Hi")
    assert [(m.to, m.status) for m in answer.messages] == [
        (ALICE, MessageStatus.QUEUED), (BOB, MessageStatus.QUEUED), (CAROL, MessageStatus.QUEUED)]
    batch = answer.messages[0].id.rsplit("-", 1)[0]
    assert [m.id for m in answer.messages] == [f"{batch}-{i:05d}" for i in range(3)]
    assert all(m.segments == 1 and m.encoding == "GSM-7" and m.error is None
               for m in answer.messages)
    assert deps.jobs.decoded(DispatchJob) == [(DispatchJob(batch=batch, indices=[0, 1, 2]), 0)]
    assert [r.to for r in deps.messages.all()] == [ALICE, BOB, CAROL]
    assert deps.gateway.calls == []  # no room in the pace: the queue sends them
    assert deps.messages.outbox_rows == {}  # their job is on the queue


def test_an_invalid_number_is_rejected_and_the_others_still_go(deps: FakeDeps) -> None:
    answer = send(deps, to=[ALICE, "12", BOB], message="Hi")
    assert [m.status for m in answer.messages] == [
        MessageStatus.QUEUED, MessageStatus.REJECTED, MessageStatus.QUEUED]
    assert answer.messages[1].to == "12" and answer.messages[1].error
    (job,) = deps.jobs.dispatch_jobs()
    assert job.indices == [0, 2]
    assert deps.analytics.totals()["rejected"] == 1
    assert deps.app_events.published == []  # stored rejected: no sms.status for it


def test_a_repeated_number_is_rejected_naming_its_first_index(deps: FakeDeps) -> None:
    answer = send(deps, to=[ALICE, BOB, "+1 (425) 555-0101"], message="Hi")
    third = answer.messages[2]
    assert third.status == MessageStatus.REJECTED and third.to == ALICE
    assert third.error == "duplicate recipient: same number as to[0]"
    (job,) = deps.jobs.dispatch_jobs()
    assert job.indices == [0, 1]
    run_jobs(deps)
    assert deps.gateway.texts_to(ALICE) == ["Hi"]  # once


def test_an_opted_out_recipient_is_blocked_up_front(deps: FakeDeps) -> None:
    deps.optouts.opt_out(SENDER, BOB, source="keyword", keyword="STOP")
    answer = send(deps, to=[ALICE, BOB], message="Sale!")
    bob = answer.messages[1]
    assert bob.status == MessageStatus.BLOCKED
    assert bob.error == f"{BOB} opted out of messages from {SENDER}"
    (job,) = deps.jobs.dispatch_jobs()
    assert job.indices == [0]
    assert deps.analytics.totals()["blocked"] == 1
    run_jobs(deps)
    assert deps.gateway.texts_to(BOB) == []


def test_an_opt_out_of_another_sender_does_not_block(deps: FakeDeps) -> None:
    deps.optouts.opt_out("+18005550199", ALICE, source="api")
    (entry,) = send(deps, to=ALICE, message="Hi").messages
    assert entry.status == MessageStatus.QUEUED


def test_send_at_in_the_future_is_scheduled_with_a_delayed_job(deps: FakeDeps) -> None:
    at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    answer = send(deps, to=[ALICE, BOB], message="Later", sendAt=at.isoformat())
    assert [m.status for m in answer.messages] == [MessageStatus.SCHEDULED] * 2
    ((job, delay),) = deps.jobs.decoded(DispatchJob)
    assert job.not_before == at and job.indices == [0, 1]
    assert 7190 < delay <= 7200
    assert deps.messages.record(answer.messages[0].id).send_at == at


def test_send_at_within_the_last_minute_is_sent_now(deps: FakeDeps) -> None:
    at = datetime.now(UTC) - timedelta(seconds=30)  # a client clock a little ahead
    (entry,) = send(deps, to=ALICE, message="Now", sendAt=at.isoformat()).messages
    assert entry.status == MessageStatus.QUEUED
    (job,) = deps.jobs.dispatch_jobs()
    assert job.not_before is None


def test_send_at_more_than_a_minute_ago_is_a_400_and_stores_nothing(deps: FakeDeps) -> None:
    at = datetime.now(UTC) - timedelta(minutes=5)
    with pytest.raises(RequestInvalid) as info:
        accept_send(deps, parse_model(SendRequest, json.dumps(
            {"to": ALICE, "message": "Late", "sendAt": at.isoformat()})))
    assert [(e.field, e.message) for e in info.value.errors] == [
        ("sendAt", "is in the past (more than 60 seconds ago)")]
    assert deps.messages.all() == [] and deps.jobs.enqueued == []


def test_a_large_request_is_cut_into_jobs_of_at_most_100(deps: FakeDeps) -> None:
    numbers = [f"+1425555{1000 + i:04d}" for i in range(250)]
    answer = send(deps, to=numbers, message="Hi all")
    jobs = deps.jobs.dispatch_jobs()
    assert [len(j.indices) for j in jobs] == [100, 100, 50]
    assert [i for j in jobs for i in j.indices] == list(range(250))
    assert {j.batch for j in jobs} == {answer.messages[0].id.rsplit("-", 1)[0]}


def test_an_idempotent_replay_answers_the_same_and_enqueues_nothing_new(
        deps: FakeDeps) -> None:
    first = send(deps, "order-42", to=[ALICE, BOB], message="Your order shipped")
    again = send(deps, "order-42", to=[ALICE, BOB], message="Your order shipped")
    assert again == first
    assert len(deps.jobs.enqueued) == 1
    assert len(deps.messages.all()) == 2
    run_jobs(deps)
    assert deps.gateway.texts_to(ALICE) == ["Your order shipped"]


def test_a_replay_after_the_messages_were_sent_still_answers_as_first(deps: FakeDeps) -> None:
    first = send(deps, "k-1", to=ALICE, message="Hi")
    run_jobs(deps)
    again = send(deps, "k-1", to=ALICE, message="Hi")
    assert again == first  # the first answer (queued), not the current status
    assert deps.jobs.enqueued == [] and len(deps.gateway.calls) == 1


class Crash(Exception):
    """The process dies here (nothing after this line runs)."""


def test_a_replay_after_a_crash_finishes_what_the_first_attempt_started(
        deps: FakeDeps, monkeypatch: pytest.MonkeyPatch) -> None:
    def die(jobs: Sequence[Job], delay_s: float = 0) -> None:
        raise Crash

    monkeypatch.setattr(deps.jobs, "enqueue_many", die)
    with pytest.raises(Crash):
        send(deps, "k-2", to=[ALICE, BOB], message="Hi")  # messages stored, no job yet
    monkeypatch.undo()
    stored = deps.messages.all()
    assert len(deps.messages.outbox_rows) == 1  # the trace the sweeper would find
    again = send(deps, "k-2", to=[ALICE, BOB], message="Hi")
    assert [m.id for m in again.messages] == [r.id for r in stored]
    assert deps.messages.all() == stored and deps.messages.outbox_rows == {}
    run_jobs(deps)
    assert deps.gateway.texts_to(ALICE) == deps.gateway.texts_to(BOB) == ["Hi"]
    assert send(deps, "k-2", to=[ALICE, BOB], message="Hi") == again
    assert deps.jobs.enqueued == []


def test_a_queue_outage_after_the_messages_are_stored_is_a_202_and_the_sweeper_sends_them(
        deps: FakeDeps, monkeypatch: pytest.MonkeyPatch) -> None:
    def queue_down(jobs: Sequence[Job], delay_s: float = 0) -> None:
        raise StorageUnavailable("Job queue sms-outbound failed")

    monkeypatch.setattr(deps.jobs, "enqueue_many", queue_down)
    answer = send(deps, to=[ALICE, BOB], message="Hi")  # no key: a retry would send twice
    assert [m.status for m in answer.messages] == [MessageStatus.QUEUED] * 2
    monkeypatch.undo()
    assert deps.jobs.enqueued == [] and len(deps.messages.outbox_rows) == 1
    assert sweep_outbox(deps) == 0  # within the grace period: the request may still be on it
    assert sweep_outbox(deps, datetime.now(UTC) + GRACE + timedelta(seconds=1)) == 2
    assert sweep_outbox(deps, datetime.now(UTC) + GRACE + timedelta(seconds=2)) == 0
    run_jobs(deps)
    assert deps.gateway.texts_to(ALICE) == deps.gateway.texts_to(BOB) == ["Hi"]
    assert deps.messages.outbox_rows == {}


def test_the_messages_failing_to_store_is_a_503_with_nothing_accepted(
        idle: FakeDeps, monkeypatch: pytest.MonkeyPatch) -> None:
    def table_down(records: Sequence[MessageRecord], *, outbox: bool = False) -> None:
        raise StorageUnavailable("Message storage failed")

    monkeypatch.setattr(idle.messages, "create_batch", table_down)
    with pytest.raises(StorageUnavailable):
        send(idle, to=ALICE, message="Hi")
    assert idle.gateway.calls == [] and idle.jobs.enqueued == []


def test_the_opt_out_state_failing_to_read_is_a_503_and_the_reserved_slot_goes_back(
        idle: FakeDeps, monkeypatch: pytest.MonkeyPatch) -> None:
    def table_down(sender: str, recipients: Iterable[str]) -> set[str]:
        raise StorageUnavailable("OptOuts storage failed")

    monkeypatch.setattr(idle.optouts, "opted_out_among", table_down)
    with pytest.raises(StorageUnavailable):
        send(idle, to=[ALICE, BOB], message="Hi")
    assert idle.pacer.reserved == idle.pacer.given_back == [(SENDER, 2)]
    assert idle.gateway.calls == [] and idle.messages.all() == []


# -- sent by the accepting request ------------------------------------------------------------


def test_recipients_who_opted_out_give_back_the_slots_reserved_while_reading_their_state(
        idle: FakeDeps) -> None:
    idle.optouts.opt_out(SENDER, BOB, source="keyword", keyword="STOP")
    alice, bob = send(idle, to=[ALICE, BOB], message="Hi").messages
    assert (alice.status, bob.status) == (MessageStatus.QUEUED, MessageStatus.BLOCKED)
    assert idle.gateway.texts_to(ALICE) == ["Hi"] and idle.gateway.texts_to(BOB) == []
    assert idle.pacer.reserved == [(SENDER, 2)] and idle.pacer.given_back == [(SENDER, 1)]
    (only,) = send(idle, to=BOB, message="Hi again").messages
    assert only.status == MessageStatus.BLOCKED and idle.gateway.texts_to(BOB) == []
    assert idle.pacer.given_back == [(SENDER, 1), (SENDER, 1)]
    assert idle.jobs.enqueued == []


def test_a_small_request_with_room_in_the_pace_reaches_acs_before_its_answer(
        idle: FakeDeps) -> None:
    (entry,) = send(idle, to=ALICE, message="Your code is 123456", tag="otp").messages
    assert entry.status == MessageStatus.QUEUED  # the answer names the accepted state
    assert idle.gateway.texts_to(ALICE) == ["Your code is 123456"]
    record = idle.messages.record(entry.id)
    assert record.status == MessageStatus.SENT and record.provider_message_id
    assert record.repeatability_id == repeatability_id(record) and record.first_sent
    assert idle.jobs.enqueued == [] and idle.messages.outbox_rows == {}
    assert idle.pacer.reserved == [(SENDER, 1)]
    assert idle.provider_ids.index == {}  # its report finds it by the tag ACS echoes
    assert [e["data"]["status"] for e in idle.app_events.published] == ["sent"]
    assert idle.analytics.totals()["sent"] == 1


def test_more_recipients_than_one_acs_call_holds_go_on_the_queue(idle: FakeDeps) -> None:
    send(idle, to=[f"+1425555{1000 + i:04d}" for i in range(101)], message="Hi all")
    assert idle.gateway.calls == [] and idle.pacer.reserved == []
    assert [len(j.indices) for j in idle.jobs.dispatch_jobs()] == [100, 1]


def test_a_scheduled_message_is_never_sent_inline(idle: FakeDeps) -> None:
    at = datetime.now(UTC) + timedelta(hours=1)
    send(idle, to=ALICE, message="Later", sendAt=at.isoformat())
    assert idle.gateway.calls == [] and len(idle.jobs.enqueued) == 1


def test_acs_throttling_an_inline_send_puts_it_on_the_queue(idle: FakeDeps) -> None:
    idle.gateway.fail_next(ProviderThrottled("busy", retry_after=3))
    (entry,) = send(idle, to=ALICE, message="Hi").messages
    ((job, delay),) = idle.jobs.decoded(DispatchJob)
    assert job.indices == [0] and delay == 3
    assert idle.messages.record(entry.id).status == MessageStatus.QUEUED
    assert idle.messages.outbox_rows == {}  # its job is on the queue
    run_jobs(idle)
    assert idle.gateway.texts_to(ALICE) == ["Hi"]


def test_a_storage_failure_after_acs_took_the_message_does_not_send_it_twice(
        idle: FakeDeps, monkeypatch: pytest.MonkeyPatch) -> None:
    real_record = idle.conversations.record

    def conversations_down(entries: Iterable[ConversationRecord]) -> None:
        raise StorageUnavailable("Conversation storage failed")

    monkeypatch.setattr(idle.conversations, "record", conversations_down)
    (entry,) = send(idle, to=ALICE, message="Hi").messages  # still a 202: the row is stored
    monkeypatch.setattr(idle.conversations, "record", real_record)
    assert idle.gateway.texts_to(ALICE) == ["Hi"]
    sweep_outbox(idle, datetime.now(UTC) + GRACE + timedelta(seconds=1))
    run_jobs(idle)
    assert len(idle.gateway.calls) == 2  # resent with the same repeatability id ...
    assert idle.gateway.texts_to(ALICE) == ["Hi"]  # ... which ACS de-duplicates
    assert idle.messages.record(entry.id).status == MessageStatus.SENT
    assert idle.analytics.totals()["sent"] == 1


def test_a_keyword_reply_overtakes_a_full_pace(deps: FakeDeps) -> None:
    reply = accept_reply(deps, SENDER, ALICE, "You are unsubscribed", "in-9",
                         confirms_opt_out=True)
    assert deps.gateway.texts_to(ALICE) == ["You are unsubscribed"]
    assert deps.pacer.priority == [(SENDER, 1)] and deps.pacer.reserved == []
    assert deps.messages.record(reply.messages[0].id).status == MessageStatus.SENT


def test_the_same_key_with_another_body_is_a_conflict(deps: FakeDeps) -> None:
    send(deps, "order-42", to=ALICE, message="Your order shipped")
    with pytest.raises(Conflict):
        send(deps, "order-42", to=ALICE, message="Something else")
    assert len(deps.jobs.enqueued) == 1
    assert len(deps.messages.all()) == 1


def test_a_bad_idempotency_key_is_a_400(deps: FakeDeps) -> None:
    with pytest.raises(RequestInvalid) as exc:
        send(deps, "has space", to=ALICE, message="Hi")
    assert [e.field for e in exc.value.errors] == ["Idempotency-Key"]
    assert deps.messages.all() == []


def test_no_sender_at_all_is_a_400_naming_from() -> None:
    deps = FakeDeps.build(SMS_DEFAULT_FROM="")
    with pytest.raises(RequestInvalid) as exc:
        send(deps, to=ALICE, message="Hi")
    assert [e.field for e in exc.value.errors] == ["from"]
    assert deps.messages.all() == [] and deps.jobs.enqueued == []


def test_the_request_sender_wins_over_the_default(deps: FakeDeps) -> None:
    (entry,) = send(deps, **{"from": "+18335550111"}, to=ALICE, message="Hi").messages
    assert deps.messages.record(entry.id).sender == "+18335550111"


def test_a_reply_reaches_an_opted_out_person_only_when_it_confirms_the_opt_out(
        deps: FakeDeps) -> None:
    deps.optouts.opt_out(SENDER, ALICE, source="keyword", keyword="STOP")
    other = accept_reply(deps, SENDER, ALICE, "Thanks for your message", "in-1")
    assert other.messages[0].status == MessageStatus.BLOCKED
    confirmation = accept_reply(deps, SENDER, ALICE, "You are unsubscribed", "in-2",
                                confirms_opt_out=True)
    assert confirmation.messages[0].status == MessageStatus.QUEUED
    run_jobs(deps)
    assert deps.gateway.texts_to(ALICE) == ["You are unsubscribed"]


def test_a_reply_is_accepted_once_per_inbound_message(deps: FakeDeps) -> None:
    first = accept_reply(deps, SENDER, ALICE, "Reply HELP for help", "in-7")
    again = accept_reply(deps, SENDER, ALICE, "Reply HELP for help", "in-7")
    assert again == first
    assert len(deps.gateway.calls) == 1 and deps.jobs.enqueued == []
    assert deps.messages.record(first.messages[0].id).tag == "auto-reply"
