"""Delivery reports, the expiry sweep and reconciliation (`sms_core.use_cases.delivery_reports`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sms_core.adapters.event_grid import delivery_reports
from sms_core.models.messages import MessageStatus
from sms_core.use_cases.delivery_reports import (
    REPORT_RETRY_DELAYS_S,
    apply_delivery_reports,
    expire_overdue,
    reconcile_reports,
)
from sms_core.use_cases.inbound import receive_inbound
from sms_core.use_cases.messages import get_message
from tests.unit.fakes import SENDER, FakeDeps
from tests.unit.use_cases.steps import ALICE, BOB, accepted_ago, inbound, report, send, sent

OPTED_OUT_4007 = "4007: The Destination/To number has opted out of receiving messages from you."
TOLL_FREE_4010 = "4010: Message was blocked due to the toll-free number not being verified."


def status_events(deps: FakeDeps, status: str) -> list[str]:
    return [e["id"] for e in deps.app_events.of_type("sms.status")
            if e["data"]["status"] == status]


def test_delivered_moves_a_sent_message_to_delivered(deps: FakeDeps) -> None:
    msg = sent(deps, tag="welcome")
    assert apply_delivery_reports(deps, [report(msg.provider_message_id, "Delivered")]) == 1
    view = get_message(deps.messages, msg.id)
    assert view.status == MessageStatus.DELIVERED and view.error is None
    last = view.history[-1]
    assert last.detail == "delivery report: Delivered (No error.)"
    assert last.data is not None and last.data["deliveryStatus"] == "Delivered"
    assert status_events(deps, "delivered") == [f"status-{msg.id}-delivered"]
    assert deps.analytics.totals(tag="welcome")["delivered"] == 1
    assert msg.id not in deps.awaiting_reports.waiting()


def test_failed_keeps_acs_reason_as_the_error(deps: FakeDeps) -> None:
    msg = sent(deps)
    apply_delivery_reports(deps, [report(msg.provider_message_id, "Failed",
                                         "4006: Destination unreachable")])
    record = deps.messages.record(msg.id)
    assert record.status == MessageStatus.FAILED
    assert record.error == "4006: Destination unreachable"
    assert deps.analytics.totals()["failed"] == 1


def test_a_terminal_state_never_regresses(deps: FakeDeps) -> None:
    msg = sent(deps)
    apply_delivery_reports(deps, [report(msg.provider_message_id, "Delivered")])
    history = get_message(deps.messages, msg.id).history
    assert apply_delivery_reports(deps, [report(msg.provider_message_id, "Failed",
                                                "late failure")]) == 0
    assert get_message(deps.messages, msg.id).status == MessageStatus.DELIVERED
    assert get_message(deps.messages, msg.id).history == history
    assert deps.analytics.totals()["failed"] == 0
    assert status_events(deps, "failed") == []


def test_a_report_for_an_unknown_acs_id_is_kept_for_reconciliation(deps: FakeDeps) -> None:
    stranger = report("Outgoing_stranger", "Delivered", event_id="dlr-x")
    assert apply_delivery_reports(deps, [stranger]) == 0
    (kept,) = deps.provider_ids.unmatched()
    assert (kept.provider_id, kept.event_id) == ("Outgoing_stranger", "dlr-x")
    assert kept.report == stranger
    assert deps.app_events.published == [] and deps.analytics.fact_ids == []


def test_a_report_that_overtook_its_message_is_put_back_and_applied_once_known(
        deps: FakeDeps) -> None:
    msg = sent(deps)
    assert msg.provider_message_id is not None
    # A message sent before tags carried the route: found through the ACS-id index, which the
    # report read before the dispatcher wrote it.
    early = report(msg.provider_message_id, "Delivered", event_id="dlr-early", routed=False)
    assert apply_delivery_reports(deps, [early]) == 0
    ((retry, delay),) = deps.report_retries.texts()
    assert delay == REPORT_RETRY_DELAYS_S[0] == 1
    deps.provider_ids.record([(msg.provider_message_id, msg.id)])  # the write lands
    (again,) = delivery_reports(retry)
    assert again.retry == 1 and again.event_id == "dlr-early"
    assert apply_delivery_reports(deps, [again]) == 1
    assert get_message(deps.messages, msg.id).status == MessageStatus.DELIVERED
    assert deps.provider_ids.unmatched() == []  # nothing left for the reconcile timer
    assert status_events(deps, "delivered") == [f"status-{msg.id}-delivered"]


def test_a_report_for_a_stranger_stops_being_put_back_after_the_last_delay(
        deps: FakeDeps) -> None:
    body = report("Outgoing_nobody", "Delivered")
    for attempt in range(1, len(REPORT_RETRY_DELAYS_S) + 1):
        apply_delivery_reports(deps, [body])
        ((text, delay),) = deps.report_retries.texts()
        deps.report_retries.enqueued.clear()
        (body,) = delivery_reports(text)
        assert (body.retry, delay) == (attempt, REPORT_RETRY_DELAYS_S[attempt - 1])
    apply_delivery_reports(deps, [body])
    assert deps.report_retries.enqueued == []  # left to the reconcile timer
    assert len(deps.provider_ids.unmatched()) == 1


def test_a_redelivered_report_changes_nothing(deps: FakeDeps) -> None:
    msg = sent(deps)
    delivered = report(msg.provider_message_id, "Delivered")
    apply_delivery_reports(deps, [delivered])
    history = get_message(deps.messages, msg.id).history
    apply_delivery_reports(deps, [delivered])
    assert get_message(deps.messages, msg.id).history == history
    assert deps.analytics.totals()["delivered"] == 1
    assert set(status_events(deps, "delivered")) == {f"status-{msg.id}-delivered"}


def test_a_status_acs_adds_later_is_noted_once_and_leaves_the_lifecycle(deps: FakeDeps) -> None:
    msg = sent(deps)
    odd = report(msg.provider_message_id, "Buffered", "queued at the carrier")
    assert apply_delivery_reports(deps, [odd]) == 0
    apply_delivery_reports(deps, [odd])  # redelivered
    view = get_message(deps.messages, msg.id)
    assert view.status == MessageStatus.SENT
    notes = [e for e in view.history if e.detail and "Buffered" in e.detail]
    assert len(notes) == 1 and notes[0].status == MessageStatus.SENT
    apply_delivery_reports(deps, [report(msg.provider_message_id, "Delivered")])
    assert get_message(deps.messages, msg.id).status == MessageStatus.DELIVERED


def test_carrier_code_4007_opts_the_recipient_out_and_tells_the_app_once(
        deps: FakeDeps) -> None:
    msg = sent(deps, to=BOB)
    failed = report(msg.provider_message_id, "Failed", OPTED_OUT_4007)
    apply_delivery_reports(deps, [failed])
    apply_delivery_reports(deps, [failed])  # redelivered
    assert deps.messages.record(msg.id).status == MessageStatus.FAILED
    assert deps.optouts.is_opted_out(SENDER, BOB)
    change = deps.optouts.history(SENDER, BOB)[0]
    assert (change.action, change.source) == ("opt-out", "carrier")
    assert "4007" in (change.reason or "")
    (event,) = deps.app_events.of_type("optout.changed")
    assert event["id"] == f"optout-carrier-{msg.id}"
    assert event["data"] == {"from": SENDER, "to": BOB, "optedOut": True, "scope": "sender",
                             "source": "carrier", "reason": OPTED_OUT_4007}
    assert deps.analytics.totals()["optOuts"] == 1
    (entry,) = send(deps, to=BOB, message="Still there?").messages
    assert entry.status == MessageStatus.BLOCKED


def test_a_redelivered_4007_report_does_not_undo_a_later_opt_in(deps: FakeDeps) -> None:
    msg = sent(deps, to=BOB)
    failed = report(msg.provider_message_id, "Failed", OPTED_OUT_4007)
    apply_delivery_reports(deps, [failed])
    receive_inbound(deps, [inbound("START", their=BOB)])  # Bob opts back in himself
    assert not deps.optouts.is_opted_out(SENDER, BOB)
    apply_delivery_reports(deps, [failed])  # the queue hands the old report over again
    assert not deps.optouts.is_opted_out(SENDER, BOB)
    assert [e["data"]["optedOut"] for e in deps.app_events.of_type("optout.changed")] == [
        True, False]


def test_a_redelivered_4007_report_leaves_one_entry_in_the_opt_out_history(
        deps: FakeDeps) -> None:
    msg = sent(deps, to=BOB)
    failed = report(msg.provider_message_id, "Failed", OPTED_OUT_4007)
    apply_delivery_reports(deps, [failed])
    apply_delivery_reports(deps, [failed])
    assert [(e.action, e.source) for e in deps.optouts.history(SENDER, BOB)] == [
        ("opt-out", "carrier")]


def test_carrier_code_4010_counts_an_unverified_toll_free_failure(deps: FakeDeps) -> None:
    msg = sent(deps)
    failed = report(msg.provider_message_id, "Failed", TOLL_FREE_4010)
    apply_delivery_reports(deps, [failed])
    apply_delivery_reports(deps, [failed])
    totals = deps.analytics.totals()
    assert (totals["failed"], totals["unverifiedTollFree"]) == (1, 1)
    assert not deps.optouts.is_opted_out(SENDER, ALICE)


def test_expiry_expires_only_what_is_still_sent(deps: FakeDeps) -> None:
    waiting = sent(deps, to=ALICE)
    delivered = sent(deps, to=BOB)
    apply_delivery_reports(deps, [report(delivered.provider_message_id, "Delivered")])
    assert delivered.sent_at is not None
    deps.awaiting_reports.add([(delivered.id, delivered.sent_at)])  # its removal was lost
    later = datetime.now(UTC) + timedelta(hours=deps.settings.dlr_timeout_hours + 2)
    result = expire_overdue(deps, now=later)
    assert result.expired == 1
    record = deps.messages.record(waiting.id)
    assert record.status == MessageStatus.EXPIRED
    assert record.error == "no delivery report within 72 hours"
    assert deps.messages.record(delivered.id).status == MessageStatus.DELIVERED
    assert status_events(deps, "expired") == [f"status-{waiting.id}-expired"]
    assert deps.analytics.totals()["expired"] == 1
    assert deps.awaiting_reports.waiting() == set()
    again = expire_overdue(deps, now=later)
    assert (again.buckets, again.expired) == (0, 0)


def test_expiry_leaves_messages_younger_than_the_timeout(deps: FakeDeps) -> None:
    msg = sent(deps)
    hours = deps.settings.dlr_timeout_hours
    soon = datetime.now(UTC) + timedelta(hours=hours - 1)
    assert expire_overdue(deps, now=soon).expired == 0
    assert deps.messages.record(msg.id).status == MessageStatus.SENT
    # The sweep that passed its send hour did not lose it: the next due one expires it.
    assert expire_overdue(deps, now=soon + timedelta(hours=3)).expired == 1
    assert deps.messages.record(msg.id).status == MessageStatus.EXPIRED


def test_a_message_sent_long_after_its_request_expires_by_its_send_time(
        deps: FakeDeps, monkeypatch: pytest.MonkeyPatch) -> None:
    accepted_ago(monkeypatch, timedelta(hours=3))
    late = sent(deps)  # accepted 3 hours ago, sent now: an `AwaitingReports` row
    assert deps.awaiting_reports.waiting() == {late.id}
    hours = deps.settings.dlr_timeout_hours
    # Its request's hour is swept, but it has been sent for less than the timeout.
    assert expire_overdue(deps, now=datetime.now(UTC) + timedelta(hours=hours - 0.5)).expired == 0
    assert deps.messages.record(late.id).status == MessageStatus.SENT
    assert expire_overdue(deps, now=datetime.now(UTC) + timedelta(hours=hours + 2)).expired == 1
    assert deps.messages.record(late.id).status == MessageStatus.EXPIRED
    assert deps.awaiting_reports.waiting() == set()


@pytest.mark.parametrize("age_min", [0, 25, 49])
def test_a_message_sent_promptly_expires_within_two_hours_after_the_timeout_never_before(
        deps: FakeDeps, monkeypatch: pytest.MonkeyPatch, age_min: int) -> None:
    accepted_ago(monkeypatch, timedelta(minutes=age_min))  # then paced that long
    msg = sent(deps)
    assert deps.awaiting_reports.waiting() == set()
    timeout = timedelta(hours=deps.settings.dlr_timeout_hours)
    sent_at = deps.messages.record(msg.id).sent_at
    assert sent_at is not None
    due = sent_at + timeout
    for minutes in range(-24 * 60, 3 * 60, 10):  # the hourly timer, early and late in the hour
        at = due + timedelta(minutes=minutes)
        expire_overdue(deps, now=at)
        status = deps.messages.record(msg.id).status
        if at < due:
            assert status == MessageStatus.SENT, f"expired {at - sent_at} after sending"
        elif at >= due + timedelta(hours=2):
            assert status == MessageStatus.EXPIRED, f"still sent {at - sent_at} after sending"
    assert deps.messages.record(msg.id).status == MessageStatus.EXPIRED


def test_reconcile_applies_a_kept_report_once_its_message_is_known(deps: FakeDeps) -> None:
    msg = sent(deps)
    provider_id = msg.provider_message_id
    assert provider_id is not None
    # An unrouted report (sent before tags carried the route) overtook the index write.
    apply_delivery_reports(deps, [report(provider_id, "Delivered", routed=False)])
    assert deps.messages.record(msg.id).status == MessageStatus.SENT
    deps.provider_ids.record([(provider_id, msg.id)])
    result = reconcile_reports(deps)
    assert (result.applied, result.unmatched) == (1, 0)
    assert deps.messages.record(msg.id).status == MessageStatus.DELIVERED
    assert deps.provider_ids.unmatched() == []
    assert reconcile_reports(deps).applied == 0
    assert deps.analytics.totals()["delivered"] == 1


def test_reconcile_reports_what_still_matches_nothing(deps: FakeDeps) -> None:
    apply_delivery_reports(deps, [report("Outgoing_never", "Delivered")])
    deps.provider_ids.keep_unmatched("invalid-inbound", "ev-1", {"data": {}})
    result = reconcile_reports(deps)
    assert (result.applied, result.unmatched, result.invalid_inbound) == (0, 1, 1)
    assert result.oldest_unmatched is not None
    assert len(deps.provider_ids.unmatched()) == 2  # nothing forgotten


def test_reconcile_keeps_a_kept_event_it_cannot_read_back(deps: FakeDeps) -> None:
    # A row cut at the 30,000 characters a Table property holds no longer decodes.
    deps.provider_ids.keep_unmatched("Outgoing_cut", "dlr-cut", {"eventType": 7})
    result = reconcile_reports(deps)
    assert (result.applied, result.invalid_inbound) == (0, 1)
    assert [k.event_id for k in deps.provider_ids.unmatched()] == ["dlr-cut"]  # never forgotten
