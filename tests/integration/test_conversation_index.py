"""The sender's conversation index against Azurite: written with the conversation rows, one
listing row per person moved to the last message (never back), read newest first and paged;
`GET /api/conversations` over it with the opt-out state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sms_core.bootstrap import Services
from sms_core.concurrency import run_all
from sms_core.models.records import ConversationRecord
from sms_core.use_cases.conversations import conversation_list
from sms_http.requests import conversation_list_query
from tests.integration.conftest import new_number

T = datetime(2026, 3, 1, 12, tzinfo=UTC)


def entry(ours: str, their: str, text: str, at: datetime,
          direction: str = "inbound") -> ConversationRecord:
    return ConversationRecord(our_number=ours, their_number=their,
                              direction=direction,  # type: ignore[arg-type]
                              message_id=f"m{int(at.timestamp() * 1e6)}", text=text, at=at)


def listing_rows(services: Services, ours: str) -> list[str]:
    return [str(e["RowKey"]) for e in services.conversations._table.query_entities(
        "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
        parameters={"pk": f"~index|{ours}", "lo": "t|", "hi": "t|~"})]


def test_one_row_per_person_moved_to_the_last_message_newest_first(services: Services) -> None:
    ours, alice, bob = new_number(), new_number(), new_number()
    services.conversations.record([entry(ours, alice, "first", T)])
    services.conversations.record([entry(ours, bob, "to bob", T + timedelta(minutes=1),
                                         "outbound")])
    services.conversations.record([entry(ours, alice, "latest", T + timedelta(minutes=2))])
    services.conversations.record([entry(ours, alice, "redelivered old", T)])
    services.conversations.record([entry(new_number(), alice, "another sender", T)])
    assert len(listing_rows(services, ours)) == 2
    services.optouts.opt_out(ours, bob, source="api")
    page = conversation_list(services, conversation_list_query({"from": ours})).public()
    assert page["continuationToken"] is None
    assert [(c["number"], c["lastMessage"], c["lastDirection"], c["optedOut"])
            for c in page["conversations"]] == [(alice, "latest", "inbound", False),
                                                (bob, "to bob", "outbound", True)]


def test_concurrent_messages_of_one_person_leave_one_row_with_the_newest(
        services: Services) -> None:
    ours, person = new_number(), new_number()
    entries = [entry(ours, person, f"m{i}", T + timedelta(seconds=i)) for i in range(12)]
    run_all(lambda e: services.conversations.record([e]), entries)
    (row,) = listing_rows(services, ours)
    (convo,) = conversation_list(services, conversation_list_query({"from": ours})
                                 ).conversations
    assert convo.last_message == "m11"
    assert row.endswith(person)


def test_paging_the_list_returns_each_person_once(services: Services) -> None:
    ours = new_number()
    people = [new_number() for _ in range(5)]
    services.conversations.record(entry(ours, p, "hi", T + timedelta(seconds=i))
                                  for i, p in enumerate(people))
    seen: list[str] = []
    token: str | None = None
    for _ in range(10):
        page = conversation_list(services, conversation_list_query(
            {"from": ours, "limit": "2", **({"continuationToken": token} if token else {})}))
        seen += [c.number for c in page.conversations]
        token = page.continuation_token
        if token is None:
            break
    assert seen == list(reversed(people))
