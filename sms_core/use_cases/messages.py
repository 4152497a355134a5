"""Reading messages: `GET /api/messages/{id}`, the message with its full history; the search
`GET /api/messages`; and the segment counter of a draft (`POST /api/segments`)."""

from __future__ import annotations

from typing import Protocol

from sms_core.logs import concern
from sms_core.models.messages import (
    MessageEvent,
    MessageListPublic,
    MessagePublic,
    MessageSummaryPublic,
    SegmentsPublic,
    parse_sender,
)
from sms_core.models.queries import (
    BatchCursor,
    ConversationCursor,
    MessageSearchQuery,
    SearchCursor,
    encode_search_cursor,
)
from sms_core.models.records import MessageRecord
from sms_core.rules.segments import count_segments
from sms_core.settings import Settings
from sms_core.use_cases.ports import Messages, MessageSearch, OutboundIndex


def get_message(messages: Messages, message_id: str) -> MessagePublic:
    """The message, its status and every event of its history; NotFound for unknown ids."""
    concern(messageId=message_id)
    rec, events = messages.with_history(message_id)
    concern(batch=rec.batch)
    # The history starts with the status the message was accepted in.
    history = [MessageEvent(status=rec.initial_status, at=rec.created_at), *events]
    return MessagePublic(
        id=rec.id, from_=rec.sender, to=rec.to, message=rec.body, status=rec.status,
        error=rec.error, tag=rec.tag, segments=rec.segments, encoding=rec.encoding,
        delivery_report=rec.delivery_report, provider_message_id=rec.provider_message_id,
        created_at=rec.created_at, updated_at=rec.updated_at, send_at=rec.send_at,
        sent_at=rec.sent_at, history=history)


def segment_count(text: str) -> SegmentsPublic:
    """What sending `text` costs: its characters (code points), segments, encoding and the
    distinct characters forcing UCS-2 in first-seen order (the rules a send and a campaign
    preview apply, `sms_core.rules.segments`)."""
    info = count_segments(text)
    return SegmentsPublic(characters=len(text), segments=info.segments, encoding=info.encoding,
                          ucs2_characters=list(info.ucs2_characters))


class SearchDeps(Protocol):
    """The ports the message search needs."""

    @property
    def settings(self) -> Settings: ...
    @property
    def messages(self) -> MessageSearch: ...
    @property
    def conversations(self) -> OutboundIndex: ...


def search_messages(deps: SearchDeps, query: MessageSearchQuery) -> MessageListPublic:
    """One page of messages, newest first: with `to`, that person's conversation with our
    number (its outbound rows, then those messages); without, the batches of the time window.
    Both are partition-bounded reads; the continuation token says where the page stopped."""
    records: list[MessageRecord]
    cursor: SearchCursor | None
    if query.to is not None:
        records, cursor = _by_recipient(deps, query, query.to)
    else:
        assert query.since is not None and query.until is not None  # set by the edge
        after = query.cursor if isinstance(query.cursor, BatchCursor) else None
        records, cursor = deps.messages.recent(query.since, query.until, query.filter,
                                               query.limit, after)
    return MessageListPublic(messages=[_summary(r) for r in records],
                             continuation_token=encode_search_cursor(cursor))


def _by_recipient(deps: SearchDeps, query: MessageSearchQuery, to: str
                  ) -> tuple[list[MessageRecord], ConversationCursor | None]:
    """Walk the conversation's outbound rows newest first, a page's worth at a time, keeping
    the messages the status matches (the one filter the conversation rows cannot apply)."""
    sender = query.filter.sender or parse_sender(deps.settings.default_from)
    before = query.cursor.row_key if isinstance(query.cursor, ConversationCursor) else None
    found: list[MessageRecord] = []
    while True:
        refs = deps.conversations.outbound_before(sender, to, query.since, query.until,
                                                  query.filter.tag, query.limit, before)
        stored = deps.messages.by_ids([message_id for _, message_id in refs])
        for row_key, message_id in refs:
            before = row_key
            rec = stored.get(message_id)
            if rec is not None and query.filter.status in (None, rec.status):
                found.append(rec)
                if len(found) == query.limit:
                    return found, ConversationCursor(row_key)
        if len(refs) < query.limit:  # the conversation has no older outbound row
            return found, None


def _summary(rec: MessageRecord) -> MessageSummaryPublic:
    return MessageSummaryPublic(
        id=rec.id, from_=rec.sender, to=rec.to, message=rec.body, status=rec.status,
        tag=rec.tag, segments=rec.segments, encoding=rec.encoding, error=rec.error,
        created_at=rec.created_at, updated_at=rec.updated_at, sent_at=rec.sent_at)
