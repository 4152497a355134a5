"""The sender's conversation index against Azurite: written with the conversation rows without
reading first, listed newest first with each person once at their last message (never moved
back by an old event), paged, and compacted to one listing row per person as it is read;
`GET /api/conversations` over it with the opt-out state."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from azure.data.tables import TableClient, TableServiceClient

from sms_core.adapters import conversation_store
from sms_core.adapters.conversation_store import ConversationStore
from sms_core.bootstrap import Services
from sms_core.concurrency import run_all
from sms_core.errors import RequestInvalid
from sms_core.models.records import ConversationRecord
from sms_core.use_cases.conversations import backfill_conversations, conversation_list
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
    services.optouts.opt_out(ours, bob, source="api")
    page = conversation_list(services, conversation_list_query({"from": ours})).public()
    assert page["continuationToken"] is None
    assert [(c["number"], c["lastMessage"], c["lastDirection"], c["optedOut"])
            for c in page["conversations"]] == [(alice, "latest", "inbound", False),
                                                (bob, "to bob", "outbound", True)]
    # Alice's first message no longer has a row of its own once the list was read.
    assert len(listing_rows(services, ours)) == 2


def test_concurrent_messages_of_one_person_leave_one_row_with_the_newest(
        services: Services) -> None:
    ours, person = new_number(), new_number()
    entries = [entry(ours, person, f"m{i}", T + timedelta(seconds=i)) for i in range(12)]
    run_all(lambda e: services.conversations.record([e]), reversed(entries))
    (convo,) = conversation_list(services, conversation_list_query({"from": ours})
                                 ).conversations
    assert convo.last_message == "m11"
    (row,) = listing_rows(services, ours)
    assert row.endswith(person)


def test_writers_queued_behind_an_index_write_share_one_transaction_and_all_are_listed(
        services: Services) -> None:
    ours = new_number()
    people = [new_number() for _ in range(20)]
    store = ConversationStore(services.conversations._table)
    table = store._table
    started, release = threading.Event(), threading.Event()
    transactions: list[int] = []
    real_submit = table.submit_transaction

    def held_submit(ops: list[object]) -> object:
        transactions.append(len(ops))
        if len(transactions) == 1:
            started.set()
            assert release.wait(60)
        return real_submit(ops)  # type: ignore[arg-type]

    store._table = SimpleNamespace(submit_transaction=held_submit,  # type: ignore[assignment]
                                   upsert_entity=table.upsert_entity)
    first = threading.Thread(target=store.record, args=([entry(ours, people[0], "first", T)],))
    first.start()
    assert started.wait(60)
    writers = [threading.Thread(target=store.record, args=(
        [entry(ours, p, f"to {i}", T + timedelta(seconds=i), "outbound")],))
        for i, p in enumerate(people[1:], start=1)]
    for w in writers:
        w.start()
    deadline = time.monotonic() + 60
    while store._together.waiting(ours) < len(writers):  # the queue, from inside
        assert time.monotonic() < deadline, "the writers never queued"
        time.sleep(0.01)
    release.set()
    for w in [first, *writers]:
        w.join(60)

    # The first alone, then all the others: each a conversation row, a listing and a person row.
    assert transactions == [3, 3 * len(writers)]
    listed = conversation_list(services, conversation_list_query({"from": ours, "limit": "50"})
                               ).conversations
    assert sorted(c.number for c in listed) == sorted(people)


def test_a_person_with_many_older_messages_does_not_hide_the_others(services: Services) -> None:
    """Pages stay full and each person is listed once, however many rows the index holds."""
    ours, chatty = new_number(), new_number()
    quiet = [new_number() for _ in range(3)]
    services.conversations.record(entry(ours, q, f"hi {i}", T + timedelta(seconds=i))
                                  for i, q in enumerate(quiet))
    services.conversations.record(entry(ours, chatty, f"c{i}", T + timedelta(minutes=1 + i))
                                  for i in range(120))
    seen: list[tuple[str, str]] = []
    token: str | None = None
    for _ in range(10):
        page = conversation_list(services, conversation_list_query(
            {"from": ours, "limit": "2", **({"continuationToken": token} if token else {})}))
        seen += [(c.number, c.last_message) for c in page.conversations]
        token = page.continuation_token
        if token is None:
            break
    assert seen == [(chatty, "c119"), (quiet[2], "hi 2"), (quiet[1], "hi 1"),
                    (quiet[0], "hi 0")]


def test_a_batch_of_one_job_is_indexed_with_each_person_at_their_message(
        services: Services) -> None:
    """A campaign job's rows (many people, one sender) go in whole transactions."""
    ours = new_number()
    people = [new_number() for _ in range(130)]
    services.conversations.record(entry(ours, p, f"to {i}", T + timedelta(milliseconds=i),
                                        "outbound") for i, p in enumerate(people))
    listed = conversation_list(services, conversation_list_query(
        {"from": ours, "limit": "100"}))
    assert [c.number for c in listed.conversations] == list(reversed(people))[:100]
    rest = conversation_list(services, conversation_list_query(
        {"from": ours, "limit": "100", "continuationToken": listed.continuation_token}))
    assert [c.number for c in rest.conversations] == list(reversed(people))[100:]
    assert rest.continuation_token is None


def test_a_token_not_handed_out_is_a_400_naming_it(services: Services) -> None:
    for token in ("garbage!", base64.urlsafe_b64encode(b"p|+1206|1").decode(), "dA=="):
        with pytest.raises(RequestInvalid) as caught:
            conversation_list(services, conversation_list_query(
                {"from": new_number(), "continuationToken": token}))
        assert caught.value.errors[0].field == "continuationToken"


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


def _earlier_layout_row(table: TableClient, e: ConversationRecord) -> None:
    """A conversation row as versions before the sender partition wrote it: its own
    partition per conversation, no index rows."""
    table.upsert_entity({"PartitionKey": f"{e.our_number}|{e.their_number}",
                         "RowKey": e.row_key(), "Direction": e.direction,
                         "MessageId": e.message_id, "Text": e.text, "At": e.at,
                         **({"Tag": e.tag} if e.tag else {})})


def _texts(store: ConversationStore, ours: str, their: str, limit: int) -> list[str]:
    """The whole conversation, read in pages of `limit`."""
    texts: list[str] = []
    token: str | None = None
    for _ in range(20):
        entries, token = store.page(ours, their, limit, token)
        texts += [e.text for e in entries]
        if token is None:
            return texts
    raise AssertionError("the pages never ended")


def test_conversations_of_the_earlier_layout_are_read_and_then_copied_by_the_backfill(
        azurite_connection_string: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upgrade: conversation rows of the earlier layout (a partition per conversation, no
    index rows) are read beside the new rows until the timer has copied them, a few pages a
    run; then they are listed, and read from the sender's partition alone."""
    name = f"Backfill{uuid.uuid4().hex[:12]}"
    table = TableServiceClient.from_connection_string(
        azurite_connection_string).create_table(name)
    store = ConversationStore(table)
    ours, people = new_number(), [new_number() for _ in range(4)]
    for i, person in enumerate(people):
        for j in range(3):
            _earlier_layout_row(table, entry(ours, person, f"{i}.{j}",
                                             T + timedelta(minutes=i, seconds=j), "outbound"))
    # After the upgrade, the first person replies: a row of the new layout.
    store.record([entry(ours, people[0], "0.reply", T + timedelta(hours=1))])

    assert _texts(store, ours, people[0], 2) == ["0.0", "0.1", "0.2", "0.reply"]
    assert _texts(store, ours, people[1], 50) == ["1.0", "1.1", "1.2"]
    last = store.last_outbound(ours, people[2], T, T + timedelta(hours=2))
    assert last is not None and last.text == "2.2"
    assert [m for _, m in store.outbound_before(ours, people[3], None, None, None, 2, None)
            ] == [f"m{int((T + timedelta(minutes=3, seconds=s)).timestamp() * 1e6)}"
                  for s in (2, 1)]
    assert [c.their_number for c in store.recent(ours, 10, None)[0]] == [people[0]]

    deps = SimpleNamespace(conversations=store)
    # Pages of 2 rows, 5 pages a run: a conversation's rows span pages and runs.
    monkeypatch.setattr(conversation_store, "_BACKFILL_PAGE", 2)
    copied = [backfill_conversations(deps) for _ in range(3)]
    assert copied == [10, 2, 0]  # 12 rows: done in the second run
    listed, token = store.recent(ours, 10, None)
    assert token is None
    assert [(c.their_number, c.last_message) for c in listed] == [
        (people[0], "0.reply"), (people[3], "3.2"), (people[2], "2.2"), (people[1], "1.2")]

    # Copied: a new instance reads the sender's partition only, each message once.
    for e in table.query_entities("PartitionKey lt '~'"):
        table.delete_entity(e["PartitionKey"], e["RowKey"])
    fresh = ConversationStore(table)
    assert _texts(fresh, ours, people[0], 3) == ["0.0", "0.1", "0.2", "0.reply"]
    assert _texts(fresh, ours, people[2], 1) == ["2.0", "2.1", "2.2"]
    last = fresh.last_outbound(ours, people[2], T, T + timedelta(hours=2))
    assert last is not None and last.text == "2.2"
    # Done is remembered: a later run reads one row and copies nothing.
    assert fresh.backfill(5) == (0, True)


def test_a_conversation_page_token_not_handed_out_is_a_400(services: Services) -> None:
    ours, their = new_number(), new_number()
    services.conversations.record([entry(ours, their, f"m{i}", T + timedelta(seconds=i))
                                   for i in range(3)])
    _, token = services.conversations.page(ours, their, 2)
    assert token is not None
    for bad in ("garbage!", "e30=", base64.urlsafe_b64encode(b"t|1|+1206").decode(),
                base64.urlsafe_b64encode(b"20260301T120000.000000Z|inb|m1\x00").decode(),
                base64.urlsafe_b64encode(b"20260301T120000.000000Z|inb|" + b"m" * 300).decode(),
                base64.urlsafe_b64encode(b"20260301T120000.000000Z|inb|m1' or '1'").decode()):
        with pytest.raises(RequestInvalid) as caught:
            services.conversations.page(ours, their, 2, bad)
        assert caught.value.errors[0].field == "continuationToken"
