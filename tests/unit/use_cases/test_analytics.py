"""Counting inbound messages and responses (`count_inbound`) and the analytics report."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from sms_core.errors import RequestInvalid
from sms_core.models.queries import AnalyticsQuery
from sms_core.models.records import ConversationRecord
from sms_core.use_cases.analytics import analytics_report, count_inbound
from sms_core.use_cases.delivery_reports import apply_delivery_reports
from sms_http.requests import analytics_query
from tests.unit.fakes import SENDER, FakeDeps
from tests.unit.use_cases.steps import ALICE, BOB, report, run_jobs, send

SENT_AT = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)


def we_sent(deps: FakeDeps, to: str, message_id: str, at: datetime = SENT_AT,
            tag: str | None = "promo") -> None:
    deps.conversations.record([ConversationRecord(
        our_number=SENDER, their_number=to, direction="outbound", message_id=message_id,
        text="Sale!", at=at, tag=tag)])


def test_an_inbound_message_counts_on_the_day_it_arrived(deps: FakeDeps) -> None:
    at = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
    count_inbound(deps, "in-1", SENDER, ALICE, at, None)
    count_inbound(deps, "in-1", SENDER, ALICE, at, None)  # redelivered
    report_ = deps.analytics.query(date(2026, 3, 2), date(2026, 3, 2))
    assert report_.totals["inbound"] == 1
    assert deps.analytics.totals()["responses"] == 0


def test_keyword_messages_count_opt_outs_and_opt_ins(deps: FakeDeps) -> None:
    now = datetime.now(UTC)
    count_inbound(deps, "in-1", SENDER, ALICE, now, "opt_out")
    count_inbound(deps, "in-2", SENDER, ALICE, now, "opt_in")
    count_inbound(deps, "in-3", SENDER, ALICE, now, "help")
    totals = deps.analytics.totals(sender=SENDER)
    assert (totals["inbound"], totals["optOuts"], totals["optIns"]) == (3, 1, 1)


def test_a_reply_within_24_hours_is_a_response_on_the_day_and_tag_of_our_message(
        deps: FakeDeps) -> None:
    we_sent(deps, ALICE, "m-1")
    count_inbound(deps, "in-1", SENDER, ALICE, SENT_AT + timedelta(hours=23), None)
    day = deps.analytics.query(SENT_AT.date(), SENT_AT.date(), tag="promo")
    assert day.totals["responses"] == 1
    assert deps.analytics.totals(tag=None)["inbound"] == 1


def test_two_replies_to_one_message_are_one_response(deps: FakeDeps) -> None:
    we_sent(deps, ALICE, "m-1")
    count_inbound(deps, "in-1", SENDER, ALICE, SENT_AT + timedelta(minutes=5), None)
    count_inbound(deps, "in-2", SENDER, ALICE, SENT_AT + timedelta(minutes=6), None)
    assert deps.analytics.totals()["responses"] == 1


def test_the_reply_counts_for_our_latest_message_only(deps: FakeDeps) -> None:
    we_sent(deps, ALICE, "m-1", tag="first")
    we_sent(deps, ALICE, "m-2", at=SENT_AT + timedelta(hours=1), tag="second")
    count_inbound(deps, "in-1", SENDER, ALICE, SENT_AT + timedelta(hours=2), None)
    assert deps.analytics.totals(tag="second")["responses"] == 1
    assert deps.analytics.totals(tag="first")["responses"] == 0


def test_a_late_reply_or_one_from_someone_else_is_no_response(deps: FakeDeps) -> None:
    we_sent(deps, ALICE, "m-1")
    count_inbound(deps, "in-1", SENDER, ALICE, SENT_AT + timedelta(hours=25), None)
    count_inbound(deps, "in-2", SENDER, BOB, SENT_AT + timedelta(hours=1), None)
    count_inbound(deps, "in-3", "+18005550199", ALICE, SENT_AT + timedelta(hours=1), None)
    totals = deps.analytics.totals()
    assert (totals["inbound"], totals["responses"]) == (3, 0)


def test_the_report_gives_every_day_with_counts_and_rates(deps: FakeDeps) -> None:
    send(deps, to=[ALICE, BOB], message="Hi", tag="t")
    run_jobs(deps)
    (alice, _bob) = deps.messages.all()
    assert alice.provider_message_id is not None
    apply_delivery_reports(deps, [report(alice.provider_message_id, "Delivered")])
    today = datetime.now(UTC).date()
    query = analytics_query({"from": (today - timedelta(days=1)).isoformat(),
                             "to": today.isoformat(), "tag": "t"})
    result = analytics_report(deps.analytics, query).public()
    assert [d["date"] for d in result["days"]] == [
        (today - timedelta(days=1)).isoformat(), today.isoformat()]
    assert result["days"][0]["sent"] == 0 and result["days"][0]["deliveryRate"] is None
    totals = result["totals"]
    assert (totals["sent"], totals["delivered"], totals["segments"]) == (2, 1, 2)
    assert totals["deliveryRate"] == 1.0 and totals["responseRate"] == 0.0
    other_tag = analytics_report(deps.analytics, analytics_query(
        {"from": today.isoformat(), "to": today.isoformat(), "tag": "other"}))
    assert other_tag.totals["sent"] == 0


def test_a_range_the_report_cannot_give_is_a_400(deps: FakeDeps) -> None:
    with pytest.raises(RequestInvalid) as exc:
        analytics_report(deps.analytics,
                         AnalyticsQuery(date(2026, 3, 2), date(2026, 3, 1), None, None))
    assert [e.field for e in exc.value.errors] == ["from"]
    with pytest.raises(RequestInvalid) as exc:
        analytics_report(deps.analytics,
                         AnalyticsQuery(date(2025, 1, 1), date(2026, 3, 1), None, None))
    assert [e.field for e in exc.value.errors] == ["to"]
