"""Status changes told to the app (`sms.status`) and counted once (`status_changes`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sms_core.models.messages import MessageStatus
from sms_core.models.records import Change, MessageRecord
from sms_core.rules.analytics import utc_day
from sms_core.use_cases.status_changes import status_changes, status_fact
from tests.unit.fakes import SENDER, FakeDeps
from tests.unit.use_cases.steps import ALICE, BOB, CAROL

BATCH = "20260101000000abcdef012345"
YESTERDAY = datetime.now(UTC) - timedelta(days=1)


def record(index: int, to: str, status: MessageStatus = MessageStatus.QUEUED,
           **fields: Any) -> MessageRecord:
    return replace(MessageRecord(
        batch=BATCH, index=index, sender=SENDER, to=to, body="Hi", status=status,
        initial_status=status, segments=2, encoding="GSM-7", created_at=YESTERDAY,
        updated_at=YESTERDAY, tag="t1"), **fields)


def to_sent(r: MessageRecord) -> Change | None:
    if r.status != MessageStatus.QUEUED:
        return None
    return Change(fields={"provider_message_id": f"acs-{r.index}", "sent_at": datetime.now(UTC)},
                  status=MessageStatus.SENT, detail="accepted by ACS")


def test_messages_refused_up_front_are_counted_but_not_announced(deps: FakeDeps) -> None:
    with status_changes(deps) as changes:
        changes.create_batch([record(0, ALICE), record(1, BOB, MessageStatus.BLOCKED),
                              record(2, "12", MessageStatus.REJECTED)])
    totals = deps.analytics.totals()
    assert (totals["blocked"], totals["rejected"], totals["sent"]) == (1, 1, 0)
    assert deps.app_events.published == []


def test_changes_are_announced_together_when_the_unit_of_work_ends(deps: FakeDeps) -> None:
    deps.messages.create_batch([record(0, ALICE), record(1, BOB)])
    with status_changes(deps) as changes:
        done = changes.apply(BATCH, [0, 1], to_sent)
        assert [r.status for r in done] == [MessageStatus.SENT] * 2
        assert deps.app_events.published == []  # not yet
    events = deps.app_events.of_type("sms.status")
    assert sorted(e["id"] for e in events) == [f"status-{BATCH}-00000-sent",
                                               f"status-{BATCH}-00001-sent"]
    data = next(e["data"] for e in events if e["data"]["to"] == ALICE)
    assert (data["status"], data["from"], data["tag"], data["providerMessageId"]) == (
        "sent", SENDER, "t1", "acs-0")
    totals = deps.analytics.totals(tag="t1")
    assert (totals["sent"], totals["segments"]) == (2, 4)


def test_what_was_committed_is_announced_even_when_the_unit_of_work_fails(
        deps: FakeDeps) -> None:
    deps.messages.create_batch([record(0, ALICE)])
    with pytest.raises(RuntimeError, match="boom"), status_changes(deps) as changes:
        changes.apply(BATCH, [0], to_sent)
        raise RuntimeError("boom")
    assert [e["data"]["status"] for e in deps.app_events.of_type("sms.status")] == ["sent"]
    assert deps.analytics.totals()["sent"] == 1


def test_announcing_again_counts_nothing_twice(deps: FakeDeps) -> None:
    deps.messages.create_batch([record(0, ALICE)])
    with status_changes(deps) as changes:
        changes.apply(BATCH, [0], to_sent)
    for _ in range(2):  # a redelivered handler finds the message settled
        with status_changes(deps) as changes:
            changes.republish(deps.messages.load(BATCH))
    assert {e["id"] for e in deps.app_events.of_type("sms.status")} == {
        f"status-{BATCH}-00000-sent"}
    assert deps.analytics.totals()["sent"] == 1


def test_pending_messages_are_never_announced(deps: FakeDeps) -> None:
    deps.messages.create_batch([record(0, ALICE), record(1, BOB, MessageStatus.SCHEDULED)])
    with status_changes(deps) as changes:
        changes.republish(deps.messages.load(BATCH))
        changes.apply(BATCH, [0, 1], lambda r: Change(fields={"repeatability_id": "x"}))
    assert deps.app_events.published == [] and deps.analytics.fact_ids == []


def test_when_narrows_what_is_announced_and_extra_adds_counters(deps: FakeDeps) -> None:
    deps.messages.create_batch([record(0, ALICE), record(1, BOB, MessageStatus.FAILED),
                                record(2, CAROL)])
    with status_changes(deps) as changes:
        changes.apply(BATCH, [0, 1, 2], to_sent, extra={"unverifiedTollFree": 1},
                      when=lambda r: r.to != CAROL)
    assert sorted(e["data"]["to"] for e in deps.app_events.of_type("sms.status")) == [
        ALICE, BOB]
    totals = deps.analytics.totals()
    assert (totals["sent"], totals["failed"], totals["unverifiedTollFree"]) == (1, 1, 2)


def test_a_cancel_is_announced_but_not_counted(deps: FakeDeps) -> None:
    deps.messages.create_batch([record(0, ALICE)])
    with status_changes(deps) as changes:
        changes.apply(BATCH, [0], lambda r: Change(status=MessageStatus.CANCELED,
                                                   detail="campaign canceled"))
    assert [e["data"]["status"] for e in deps.app_events.of_type("sms.status")] == ["canceled"]
    assert deps.analytics.fact_ids == []


def test_outcomes_count_on_the_day_the_message_was_sent() -> None:
    sent_at = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
    delivered = record(0, ALICE, MessageStatus.DELIVERED, sent_at=sent_at)
    fact = status_fact(delivered)
    assert fact is not None
    assert (fact.id, fact.day, dict(fact.counts)) == (
        f"status-{BATCH}-00000-delivered", sent_at.date(), {"delivered": 1})
    never_sent = status_fact(record(1, BOB, MessageStatus.BLOCKED))
    assert never_sent is not None and never_sent.day == utc_day(YESTERDAY)
    assert status_fact(record(2, CAROL)) is None
