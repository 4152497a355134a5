"""The conversation view (`conversation_page`): both directions, oldest first, paged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sms_core.errors import RequestInvalid
from sms_core.models.queries import ConversationQuery
from sms_core.use_cases.conversations import conversation_page
from sms_core.use_cases.inbound import receive_inbound
from sms_http.requests import conversation_query
from tests.unit.fakes import SENDER, FakeDeps
from tests.unit.use_cases.steps import ALICE, BOB, inbound, run_jobs, send


def test_both_directions_oldest_first(deps: FakeDeps) -> None:
    earlier = datetime.now(UTC) - timedelta(minutes=5)
    receive_inbound(deps, [inbound("Is the shop open?", inbound_id="in-1", at=earlier)])
    (reply,) = send(deps, to=ALICE, message="Yes, until 6").messages
    run_jobs(deps)
    send(deps, to=BOB, message="Not in Alice's conversation")
    run_jobs(deps)
    page = conversation_page(deps, conversation_query("+1 425 555 0101", {})).public()
    assert page["continuationToken"] is None
    assert [(m["direction"], m["from"], m["to"], m["message"]) for m in page["messages"]] == [
        ("inbound", ALICE, SENDER, "Is the shop open?"),
        ("outbound", SENDER, ALICE, "Yes, until 6")]
    assert page["messages"][1]["id"] == reply.id


def test_a_keyword_message_shows_its_keyword(deps: FakeDeps) -> None:
    receive_inbound(deps, [inbound("stop")])
    first = conversation_page(deps, conversation_query(ALICE, {})).public()["messages"][0]
    assert first["keyword"] == "STOP"


def test_pages_follow_the_continuation_token(deps: FakeDeps) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    receive_inbound(deps, [inbound(f"note {n}", at=start + timedelta(minutes=n))
                           for n in range(5)])
    seen: list[str] = []
    token: str | None = None
    for _ in range(5):
        page = conversation_page(deps, ConversationQuery(None, ALICE, 2, token)).public()
        seen += [m["message"] for m in page["messages"]]
        token = page["continuationToken"]
        if token is None:
            break
    assert seen == [f"note {n}" for n in range(5)]


def test_another_of_our_numbers_is_another_conversation(deps: FakeDeps) -> None:
    receive_inbound(deps, [inbound("hello", ours="+18005550199")])
    assert conversation_page(deps, conversation_query(ALICE, {})).public()["messages"] == []
    other = conversation_page(deps, conversation_query(ALICE, {"from": "+18005550199"})).public()
    assert [m["message"] for m in other["messages"]] == ["hello"]


def test_without_a_default_sender_our_number_is_required() -> None:
    deps = FakeDeps.build(SMS_DEFAULT_FROM="")
    with pytest.raises(RequestInvalid) as exc:
        conversation_page(deps, conversation_query(ALICE, {})).public()
    assert [e.field for e in exc.value.errors] == ["from"]
