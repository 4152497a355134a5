"""`GET /api/messages` against Azurite: the time-window search reads PartitionKey ranges of the
Messages table only (never a scan), skips history and outbox rows, walks back across slices and
pages each message once; the recipient search reads one conversation partition."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sms_core.bootstrap import Services
from sms_core.models.messages import MessageStatus
from sms_core.models.records import BATCH_TIME_FORMAT, Change, ConversationRecord, MessageRecord
from sms_core.use_cases.messages import search_messages
from sms_http.requests import message_search_query
from tests.integration.conftest import SENDER, new_number

# Far from the time other tests send at, and each test's own tag: nobody else's messages match.
BASE = datetime(2011, 6, 15, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def tag() -> str:
    return f"search-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def filters(services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every filter the message and conversation tables are queried with."""
    seen: list[str] = []
    for table in (services.messages._table, services.conversations._table):
        original = table.query_entities

        def spy(query_filter: str, *args: Any, _original: Any = original,
                **kwargs: Any) -> Any:
            seen.append(query_filter)
            return _original(query_filter, *args, **kwargs)

        monkeypatch.setattr(table, "query_entities", spy)
    yield seen


def batch(services: Services, at: datetime, count: int, tag: str, *,
          status: MessageStatus = MessageStatus.QUEUED, sender: str = SENDER,
          to: list[str] | None = None) -> list[MessageRecord]:
    """A send request's batch created at `at`, with its outbox row, and conversation rows."""
    batch_id = at.strftime(BATCH_TIME_FORMAT) + uuid.uuid4().hex[:12]
    numbers = to or [new_number() for _ in range(count)]
    records = [MessageRecord(batch=batch_id, index=i, sender=sender, to=n, body=f"m{i}",
                             status=status, initial_status=status, segments=1,
                             encoding="GSM-7", created_at=at, updated_at=at, tag=tag)
               for i, n in enumerate(numbers)]
    stored = services.messages.create_batch(records, outbox=True)
    services.conversations.record(ConversationRecord(
        our_number=sender, their_number=r.to, direction="outbound", message_id=r.id,
        text=r.body, at=at + timedelta(microseconds=r.index), tag=tag) for r in stored)
    return stored


def search(services: Services, **params: str) -> dict[str, Any]:
    return search_messages(services, message_search_query(params)).public()


def every_page(services: Services, **params: str) -> list[str]:
    seen: list[str] = []
    token: str | None = None
    for _ in range(100):
        page = search(services, **params, **({"continuationToken": token} if token else {}))
        seen += [m["id"] for m in page["messages"]]
        token = page["continuationToken"]
        if token is None:
            return seen
    raise AssertionError("the pages never ended")


def window(start: datetime, end: datetime) -> dict[str, str]:
    return {"since": start.isoformat(), "until": end.isoformat()}


def test_the_window_reads_partition_ranges_only_and_skips_history_and_outbox_rows(
        services: Services, tag: str, filters: list[str]) -> None:
    inside = batch(services, BASE, 3, tag)
    # A status change writes a history row beside the message; it is not a second message.
    services.messages.apply(inside[0].batch, [0], lambda r: Change(status=MessageStatus.SENT))
    before = batch(services, BASE - timedelta(hours=2), 2, tag)
    after = batch(services, BASE + timedelta(hours=2), 2, tag)
    filters.clear()  # the writes' own reads
    page = search(services, tag=tag, **window(BASE - timedelta(hours=1),
                                              BASE + timedelta(hours=1)))
    assert [m["id"] for m in page["messages"]] == [r.id for r in inside]
    assert page["messages"][0]["status"] == "sent"
    assert not {r.id for r in before + after} & {m["id"] for m in page["messages"]}
    assert filters and all("PartitionKey ge @low" in f and "PartitionKey lt @pk" in f
                           for f in filters), filters


def test_paging_across_slices_returns_each_message_once_newest_first(
        services: Services, tag: str) -> None:
    # Spread over 20 days: the walk crosses empty slices, doubling them, between the batches.
    made = [batch(services, BASE + timedelta(days=d, minutes=m), 3, tag)
            for d, m in ((0, 0), (0, 1), (3, 0), (9, 30), (19, 59))]
    expected = [r.id for b in reversed(made) for r in b]
    found = every_page(services, tag=tag, limit="2",
                       **window(BASE - timedelta(days=1), BASE + timedelta(days=20)))
    assert found == expected
    assert every_page(services, tag=tag, limit="200",
                      **window(BASE - timedelta(days=1), BASE + timedelta(days=20))) == expected


def test_status_and_sender_filters_apply_in_the_query(services: Services, tag: str) -> None:
    sent = batch(services, BASE + timedelta(days=40), 2, tag, status=MessageStatus.SENT)
    batch(services, BASE + timedelta(days=40, seconds=1), 2, tag, status=MessageStatus.FAILED)
    other = batch(services, BASE + timedelta(days=40, seconds=2), 1, tag,
                  status=MessageStatus.SENT, sender="+18005550188")
    span = window(BASE + timedelta(days=39), BASE + timedelta(days=41))
    assert [m["id"] for m in search(services, tag=tag, status="sent", **{"from": SENDER},
                                    **span)["messages"]] == [r.id for r in sent]
    assert [m["id"] for m in search(services, tag=tag, **{"from": "+18005550188"},
                                    **span)["messages"]] == [other[0].id]


def test_a_recipient_search_reads_one_conversation_and_pages_it(
        services: Services, tag: str, filters: list[str]) -> None:
    person, someone_else = new_number(), new_number()
    mine = [batch(services, BASE + timedelta(days=60, minutes=i), 1, tag, to=[person])[0]
            for i in range(5)]
    batch(services, BASE + timedelta(days=60, minutes=9), 1, tag, to=[someone_else])
    filters.clear()
    assert every_page(services, to=person, limit="2") == [r.id for r in reversed(mine)]
    convo = [f for f in filters if "Direction eq 'outbound'" in f]
    assert convo and all(f.startswith("PartitionKey eq @pk") for f in convo)
    assert all("PartitionKey eq @pk" in f for f in filters), filters
