"""Typed read requests: what a `GET` asks for, parsed at the HTTP edge (`sms_http.requests`)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sms_core.errors import FieldError, RequestInvalid
from sms_core.models.messages import MessageStatus
from sms_core.models.records import MemberRecord, batch_time

MAX_PAGE_SIZE = 200  # items in one page of any listing
DEFAULT_SEARCH_WINDOW = timedelta(hours=24)
MAX_SEARCH_WINDOW = timedelta(days=31)
# A time-window search walks back through the Messages partitions in slices of time: the first
# slice is short (a busy service fills a page from the last minutes), each empty or short one
# twice as long as the last (a quiet day is crossed in a handful of queries).
FIRST_SLICE_SECONDS = 300
MAX_SLICE_SECONDS = int(MAX_SEARCH_WINDOW.total_seconds())


@dataclass(frozen=True, slots=True)
class AnalyticsQuery:
    """`GET /api/analytics?from=&to=[&sender=][&tag=]`: both days included."""

    start: date
    end: date
    sender: str | None
    tag: str | None


@dataclass(frozen=True, slots=True)
class OptOutPairQuery:
    """`GET /api/optouts/history?from=&to=`: one sender/recipient pair."""

    sender: str
    recipient: str


@dataclass(frozen=True, slots=True)
class PageQuery:
    """`?limit=&after=`: a page of a listing, after the last id the client saw."""

    limit: int
    after: str | None


@dataclass(frozen=True, slots=True)
class ConversationQuery:
    """`GET /api/conversations/{number}`: our number (None: SMS_DEFAULT_FROM) and theirs."""

    sender: str | None
    their_number: str
    limit: int
    continuation: str | None


@dataclass(frozen=True, slots=True)
class ConversationListQuery:
    """`GET /api/conversations?from=&limit=&continuationToken=` (sender None: the default)."""

    sender: str | None
    limit: int
    continuation: str | None


@dataclass(frozen=True, slots=True)
class AudienceUpload:
    """`POST /api/audiences`: a name and the members, however they were uploaded, or the
    upload whose file they are in (and how many parts it was sent in)."""

    name: str
    members: list[MemberRecord]
    upload_id: str | None = None
    parts: int = 0


@dataclass(frozen=True, slots=True)
class BatchCursor:
    """Where a time-window search stopped: the message last returned (its batch and index) and
    the length of the time slice the search was walking."""

    batch: str
    index: int
    slice_seconds: int


@dataclass(frozen=True, slots=True)
class ConversationCursor:
    """Where a search by recipient stopped: the conversation row last examined."""

    row_key: str


SearchCursor = BatchCursor | ConversationCursor


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """What a message must match besides its time: our number, its status, its tag."""

    sender: str | None = None
    status: MessageStatus | None = None
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class MessageSearchQuery:
    """`GET /api/messages?from=&to=&status=&tag=&since=&until=&limit=&continuationToken=`.

    With `to`, one conversation (our number `filter.sender`, None: SMS_DEFAULT_FROM) and the
    window only if given; without, the window is always set (default the last 24 hours)."""

    to: str | None
    filter: MessageFilter
    since: datetime | None
    until: datetime | None
    limit: int
    cursor: SearchCursor | None


# The conversation row key `ConversationRecord.row_key` writes for an outbound message.
_CONVERSATION_KEY = re.compile(r"[0-9]{8}T[0-9]{6}\.[0-9]{6}Z\|out\|[A-Za-z0-9]{1,64}-[0-9]{5}")


def encode_search_cursor(cursor: SearchCursor | None) -> str | None:
    """The opaque continuation token of a cursor (None: there is no next page)."""
    if cursor is None:
        return None
    body: dict[str, Any] = ({"c": cursor.row_key} if isinstance(cursor, ConversationCursor)
                            else {"b": cursor.batch, "i": cursor.index,
                                  "s": cursor.slice_seconds})
    return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()


def _bad_token() -> RequestInvalid:
    return RequestInvalid("The continuation token is not valid.",
                          [FieldError("continuationToken", "not a token from this API")])


def _is_batch(value: Any) -> bool:
    return (isinstance(value, str) and len(value) <= 64 and value.isascii()
            and value.isalnum() and batch_time(value) is not None)


def decode_search_cursor(token: str) -> SearchCursor:
    """The cursor inside a token `encode_search_cursor` made, or a 400 naming
    `continuationToken`: any other value would restart the listing or skip messages unseen."""
    try:
        body = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise _bad_token() from None
    if isinstance(body, dict) and set(body) == {"c"} and isinstance(body["c"], str) \
            and _CONVERSATION_KEY.fullmatch(body["c"]):
        return ConversationCursor(body["c"])
    if isinstance(body, dict) and set(body) == {"b", "i", "s"} and _is_batch(body["b"]) \
            and type(body["i"]) is int and 0 <= body["i"] <= 99_999 \
            and type(body["s"]) is int and FIRST_SLICE_SECONDS <= body["s"] <= MAX_SLICE_SECONDS:
        return BatchCursor(body["b"], body["i"], body["s"])
    raise _bad_token()
