"""The conversation view (`conversation_page`): both directions, oldest first, paged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sms_core.errors import RequestInvalid
from sms_core.models.queries import ConversationQuery
from sms_core.models.records import ConversationRecord
from sms_core.use_cases.conversations import conversation_list, conversation_page
from sms_core.use_cases.inbound import receive_inbound
from sms_http.requests import conversation_list_query, conversation_query
from tests.unit.fakes import SENDER, FakeDeps
from tests.unit.use_cases.steps import ALICE, BOB, CAROL, inbound, run_jobs, send


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


def _entry(their: str, text: str, at: datetime, direction: str = "inbound",
           ours: str = SENDER) -> ConversationRecord:
    return ConversationRecord(our_number=ours, their_number=their,
                              direction=direction,  # type: ignore[arg-type]
                              message_id=f"m-{their}-{at.timestamp()}", text=text, at=at)


def test_the_conversation_list_is_newest_first_with_the_last_message_and_opt_out(
        deps: FakeDeps) -> None:
    t = datetime(2026, 3, 1, 12, tzinfo=UTC)
    deps.conversations.record([_entry(ALICE, "first", t),
                               _entry(BOB, "hello bob", t + timedelta(minutes=1), "outbound"),
                               _entry(ALICE, "latest", t + timedelta(minutes=2)),
                               _entry(CAROL, "other sender", t, ours="+18005550199")])
    deps.optouts.opt_out(SENDER, BOB, source="api")
    page = conversation_list(deps, conversation_list_query({})).public()
    assert page == {"continuationToken": None, "conversations": [
        {"number": ALICE, "lastMessage": "latest", "lastDirection": "inbound",
         "lastAt": "2026-03-01T12:02:00Z", "optedOut": False},
        {"number": BOB, "lastMessage": "hello bob", "lastDirection": "outbound",
         "lastAt": "2026-03-01T12:01:00Z", "optedOut": True}]}


def test_an_older_redelivered_entry_does_not_move_a_conversation_back(deps: FakeDeps) -> None:
    t = datetime(2026, 3, 1, 12, tzinfo=UTC)
    deps.conversations.record([_entry(ALICE, "new", t)])
    deps.conversations.record([_entry(ALICE, "old", t - timedelta(hours=1))])
    (only,) = conversation_list(deps, conversation_list_query({})).conversations
    assert only.last_message == "new"


def test_the_conversation_list_pages_each_person_once(deps: FakeDeps) -> None:
    t = datetime(2026, 3, 1, 12, tzinfo=UTC)
    people = [f"+1425555{1000 + i}" for i in range(5)]
    deps.conversations.record([_entry(p, "hi", t + timedelta(seconds=i))
                               for i, p in enumerate(people)])
    seen: list[str] = []
    token: str | None = None
    for _ in range(10):
        page = conversation_list(deps, conversation_list_query(
            {"limit": "2", **({"continuationToken": token} if token else {})}))
        seen += [c.number for c in page.conversations]
        token = page.continuation_token
        if token is None:
            break
    assert seen == list(reversed(people))


def test_a_send_and_an_inbound_keep_the_list(deps: FakeDeps) -> None:
    send(deps, to=BOB, message="Your code is 1234")
    run_jobs(deps)
    receive_inbound(deps, [inbound("thanks", their=BOB, inbound_id="in-9")])
    (convo,) = conversation_list(deps, conversation_list_query({})).conversations
    assert (convo.number, convo.last_message, convo.last_direction) == (BOB, "thanks",
                                                                         "inbound")


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "+"}, "from"), ({"limit": "0"}, "limit"), ({"limit": "201"}, "limit"),
    ({"limit": "x"}, "limit"), ({"continuationToken": "garbage"}, "continuationToken")])
def test_a_bad_list_parameter_is_a_400_naming_it(deps: FakeDeps, params: dict[str, str],
                                                 field: str) -> None:
    with pytest.raises(RequestInvalid) as exc:
        conversation_list(deps, conversation_list_query(params))
    assert [e.field for e in exc.value.errors] == [field]
