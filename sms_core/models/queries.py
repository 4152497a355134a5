"""Typed read requests: what a `GET` asks for, parsed at the HTTP edge (`sms_http.requests`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sms_core.models.records import MemberRecord

MAX_PAGE_SIZE = 200  # items in one page of any listing


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
class AudienceUpload:
    """`POST /api/audiences`: a name and the members, however they were uploaded."""

    name: str
    members: list[MemberRecord]
