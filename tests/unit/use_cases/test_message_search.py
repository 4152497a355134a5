"""`GET /api/messages`: the search by time window or by recipient (`search_messages`) and the
parsing of its query (`message_search_query`), on the fakes."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sms_core.errors import RequestInvalid
from sms_core.models.messages import MessageStatus
from sms_core.models.queries import (
    BatchCursor,
    ConversationCursor,
    decode_search_cursor,
    encode_search_cursor,
)
from sms_core.models.records import BATCH_TIME_FORMAT, ConversationRecord, MessageRecord
from sms_core.use_cases.messages import get_message, search_messages
from sms_http.requests import message_search_query
from tests.unit.fakes import SENDER, FakeDeps
from tests.unit.use_cases.steps import ALICE, BOB, CAROL

NOW = datetime.now(UTC).replace(microsecond=0)
OTHER_SENDER = "+18005550199"


def stored(deps: FakeDeps, at: datetime, recipients: list[str], *, suffix: str = "aaaaaaaaaaaa",
           status: MessageStatus = MessageStatus.SENT, tag: str | None = None,
           sender: str = SENDER) -> list[MessageRecord]:
    """A batch created at `at` (its id starts with that time), one message per recipient; each
    sent one also gets its outbound conversation row, as dispatch writes it."""
    batch = at.strftime(BATCH_TIME_FORMAT) + suffix
    records = [MessageRecord(batch=batch, index=i, sender=sender, to=to, body=f"hi {i}",
                             status=status, initial_status=MessageStatus.QUEUED, segments=1,
                             encoding="GSM-7", created_at=at, updated_at=at, tag=tag)
               for i, to in enumerate(recipients)]
    deps.messages.create_batch(records)
    deps.conversations.record(ConversationRecord(
        our_number=sender, their_number=r.to, direction="outbound", message_id=r.id,
        text=r.body, at=at + timedelta(microseconds=r.index), tag=tag) for r in records)
    return records


def search(deps: FakeDeps, **params: str) -> dict[str, Any]:
    return search_messages(deps, message_search_query(params)).public()


def ids(page: dict[str, Any]) -> list[str]:
    return [m["id"] for m in page["messages"]]


def all_pages(deps: FakeDeps, **params: str) -> list[str]:
    seen: list[str] = []
    token: str | None = None
    for _ in range(50):
        page = search(deps, **params, **({"continuationToken": token} if token else {}))
        seen += ids(page)
        token = page["continuationToken"]
        if token is None:
            return seen
    raise AssertionError("the pages never ended")


def test_the_last_day_newest_batch_first_in_request_order_within_a_batch(deps: FakeDeps) -> None:
    old = stored(deps, NOW - timedelta(days=2), [ALICE], suffix="000000000001")
    earlier = stored(deps, NOW - timedelta(hours=3), [ALICE, BOB], suffix="000000000002")
    latest = stored(deps, NOW - timedelta(minutes=1), [CAROL, ALICE], suffix="000000000003")
    page = search(deps)
    assert ids(page) == [r.id for r in latest + earlier]
    assert page["continuationToken"] is None
    assert old[0].id not in ids(page)


def test_a_summary_has_the_fields_of_a_message_without_its_history(deps: FakeDeps) -> None:
    (rec,) = stored(deps, NOW - timedelta(minutes=5), [ALICE], tag="welcome")
    (summary,) = search(deps)["messages"]
    assert summary == {
        "id": rec.id, "from": SENDER, "to": ALICE, "message": "hi 0", "status": "sent",
        "tag": "welcome", "segments": 1, "encoding": "GSM-7", "error": None,
        "createdAt": zulu(rec.created_at), "updatedAt": zulu(rec.updated_at), "sentAt": None}
    # The same field meanings and forms as GET /api/messages/{id}.
    full = get_message(deps.messages, rec.id).public()
    assert {k: full[k] for k in summary} == summary


def zulu(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_since_and_until_bound_the_window_to_the_second(deps: FakeDeps) -> None:
    at = NOW - timedelta(days=10)
    before = stored(deps, at - timedelta(seconds=1), [ALICE], suffix="000000000001")
    inside = stored(deps, at, [BOB], suffix="000000000002")
    after = stored(deps, at + timedelta(hours=1, seconds=1), [CAROL], suffix="000000000003")
    page = search(deps, since=at.isoformat(), until=(at + timedelta(hours=1)).isoformat())
    assert ids(page) == [inside[0].id]
    assert before[0].id not in ids(page) and after[0].id not in ids(page)


def test_status_tag_and_sender_filter_the_window(deps: FakeDeps) -> None:
    t = NOW - timedelta(minutes=30)
    delivered = stored(deps, t, [ALICE], suffix="000000000001", status=MessageStatus.DELIVERED,
                       tag="promo")
    stored(deps, t, [BOB], suffix="000000000002", status=MessageStatus.FAILED, tag="promo")
    stored(deps, t, [CAROL], suffix="000000000003", status=MessageStatus.DELIVERED, tag="otp")
    other = stored(deps, t, [ALICE], suffix="000000000004", status=MessageStatus.DELIVERED,
                   tag="promo", sender=OTHER_SENDER)
    assert ids(search(deps, status="delivered", tag="promo", **{"from": SENDER})) == [
        delivered[0].id]
    assert ids(search(deps, **{"from": OTHER_SENDER})) == [other[0].id]
    assert len(ids(search(deps, status="delivered"))) == 3


def test_paging_the_window_returns_each_message_once(deps: FakeDeps) -> None:
    made = [r for i in range(4) for r in stored(
        deps, NOW - timedelta(minutes=10 * i), [ALICE, BOB, CAROL], suffix=f"{i:012d}")]
    assert sorted(all_pages(deps, limit="2")) == sorted(r.id for r in made)
    assert len(all_pages(deps, limit="2")) == 12


def test_with_to_the_conversation_newest_first_and_not_other_peoples(deps: FakeDeps) -> None:
    first = stored(deps, NOW - timedelta(days=40), [ALICE, BOB], suffix="000000000001")
    second = stored(deps, NOW - timedelta(days=1, hours=2), [ALICE], suffix="000000000002",
                    status=MessageStatus.DELIVERED, tag="t")
    third = stored(deps, NOW - timedelta(minutes=2), [BOB, ALICE], suffix="000000000003")
    theirs = stored(deps, NOW, [ALICE], suffix="000000000004", sender=OTHER_SENDER)
    assert ids(search(deps, to=ALICE)) == [third[1].id, second[0].id, first[0].id]
    assert ids(search(deps, to=ALICE, status="delivered")) == [second[0].id]
    assert ids(search(deps, to=ALICE, tag="t")) == [second[0].id]
    assert ids(search(deps, to=ALICE, since=(NOW - timedelta(days=2)).isoformat(),
                      until=(NOW - timedelta(days=1)).isoformat())) == [second[0].id]
    assert ids(search(deps, to=ALICE, **{"from": OTHER_SENDER})) == [theirs[0].id]


def test_paging_a_conversation_returns_each_message_once_even_when_filtered(
        deps: FakeDeps) -> None:
    made = [stored(deps, NOW - timedelta(minutes=i), [ALICE], suffix=f"{i:012d}",
                   status=MessageStatus.DELIVERED if i % 2 else MessageStatus.FAILED)[0]
            for i in range(7)]
    assert all_pages(deps, to=ALICE, limit="2") == [r.id for r in made]
    assert all_pages(deps, to=ALICE, limit="2", status="delivered") == [
        r.id for r in made if r.status == MessageStatus.DELIVERED]


def test_nothing_found_is_an_empty_page_without_a_token(deps: FakeDeps) -> None:
    assert search(deps) == {"messages": [], "continuationToken": None}
    assert search(deps, to=ALICE) == {"messages": [], "continuationToken": None}


@pytest.mark.parametrize("cursor", [BatchCursor("20260101000000abcdef012345", 7, 600),
                                    ConversationCursor(
                                        "20260101T000000.000001Z|out|20260101000000ab-00007")])
def test_a_token_is_the_cursor_it_was_made_from(cursor: BatchCursor | ConversationCursor
                                                ) -> None:
    token = encode_search_cursor(cursor)
    assert token is not None and decode_search_cursor(token) == cursor


def _token(body: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode()


B = "20260101000000abcdef012345"
BATCH_TOKEN = encode_search_cursor(BatchCursor(B, 7, 600)) or ""
CONVERSATION_TOKEN = encode_search_cursor(
    ConversationCursor("20260101T000000.000001Z|out|20260101000000ab-00007")) or ""


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": "0"}, "limit"), ({"limit": "201"}, "limit"), ({"limit": "ten"}, "limit"),
    ({"limit": "-1"}, "limit"), ({"limit": "\u0661"}, "limit"),
    ({"status": "sending"}, "status"), ({"status": "SENT"}, "status"),
    ({"tag": "x" * 257}, "tag"),
    ({"since": "yesterday"}, "since"), ({"since": "2026-01-01T00:00:00"}, "since"),
    ({"until": "2026-13-01T00:00:00Z"}, "until"),
    ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
    ({"since": "1500-01-01T00:00:00Z"}, "since"),
    ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
    ({"to": ALICE, "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
    ({"since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:01Z"}, "since"),
    ({"to": "not a number"}, "to"), ({"to": "+1"}, "to"), ({"from": "+"}, "from"),
    ({"continuationToken": "garbage"}, "continuationToken"),
    ({"continuationToken": "\u00e9"}, "continuationToken"),
    ({"continuationToken": _token({"b": B, "i": 1})}, "continuationToken"),
    ({"continuationToken": _token({"b": "nottime", "i": 1, "s": 300})}, "continuationToken"),
    ({"continuationToken": _token({"b": B, "i": "1", "s": 300})}, "continuationToken"),
    ({"continuationToken": _token({"b": B, "i": 1, "s": 1})}, "continuationToken"),
    ({"continuationToken": _token({"b": B, "i": True, "s": 300})}, "continuationToken"),
    ({"continuationToken": _token({"b": B, "i": 100_000, "s": 300})}, "continuationToken"),
    ({"continuationToken": _token({"c": "x"})}, "continuationToken"),
    ({"continuationToken": _token([1])}, "continuationToken"),
    ({"continuationToken": _token({"c": "20260101T000000.000001Z|in|a-00001"})},
     "continuationToken"),
    ({"to": ALICE, "continuationToken": BATCH_TOKEN}, "continuationToken"),
    ({"continuationToken": CONVERSATION_TOKEN}, "continuationToken"),
])
def test_a_bad_parameter_is_a_400_naming_it(params: dict[str, str], field: str) -> None:
    with pytest.raises(RequestInvalid) as exc:
        message_search_query(params)
    assert [e.field for e in exc.value.errors] == [field]


def test_the_default_window_is_the_last_day_and_a_recipient_search_has_none() -> None:
    q = message_search_query({})
    assert q.until is not None and q.since is not None
    assert q.until - q.since == timedelta(hours=24)
    assert (q.limit, q.cursor, q.to) == (50, None, None)
    by_to = message_search_query({"to": ALICE})
    assert (by_to.since, by_to.until, by_to.to) == (None, None, ALICE)
    long_ago = message_search_query({"to": ALICE, "since": "2020-01-01T00:00:00Z"})
    assert long_ago.since == datetime(2020, 1, 1, tzinfo=UTC) and long_ago.until is None
