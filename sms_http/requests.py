"""Parsing HTTP requests into typed requests: query strings, bodies and content types.

Everything a route reads from the wire is turned into a model here, at the edge, so use cases
receive typed values and never see bytes, headers or query dicts. Errors are `RequestInvalid`
naming the field (a query parameter or a body member), like every validation error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sms_core.errors import FieldError, RequestInvalid
from sms_core.models.campaigns import (
    MAX_NAME_CHARS,
    AudienceRequest,
    CampaignRequest,
    SendConfirmation,
    TemplateRequest,
    csv_audience_rows,
    invalid_field,
)
from sms_core.models.messages import (
    MAX_TAG_CHARS,
    MessageStatus,
    parse_model,
    parse_recipient,
    parse_sender,
)
from sms_core.models.queries import (
    DEFAULT_SEARCH_WINDOW,
    MAX_PAGE_SIZE,
    MAX_SEARCH_WINDOW,
    AnalyticsQuery,
    AudienceUpload,
    ConversationCursor,
    ConversationListQuery,
    ConversationQuery,
    MessageFilter,
    MessageSearchQuery,
    OptOutPairQuery,
    PageQuery,
    decode_search_cursor,
)
from sms_core.models.records import MemberRecord
from sms_core.rules.analytics import parse_date_range
from sms_core.rules.times import EARLIEST_STORABLE


def analytics_query(params: Mapping[str, str]) -> AnalyticsQuery:
    """The analytics query: a date range of at most 366 days, optionally a sender and a tag."""
    start, end = parse_date_range(params)
    sender = parse_sender(params["sender"], "sender") if params.get("sender") else None
    return AnalyticsQuery(start, end, sender, params.get("tag") or None)


def optout_pair_query(params: Mapping[str, str]) -> OptOutPairQuery:
    """`?from=<our number>&to=<recipient>` of the opt-out history."""
    return OptOutPairQuery(parse_sender(params.get("from")), parse_recipient(params.get("to")))


def sender_query(params: Mapping[str, str]) -> str:
    """`?from=<our number>` (required)."""
    return parse_sender(params.get("from"))


# Query parameters of a `text/csv` campaign upload, and where each goes in the JSON body.
_UPLOAD_PARAMS = {"name": ("name",), "from": ("from",), "template": ("template",),
                  "templateId": ("templateId",), "tag": ("tag",),
                  "filter": ("audience", "filter"), "sendAt": ("schedule", "sendAt"),
                  "cron": ("schedule", "cron"), "timezone": ("schedule", "timezone"),
                  "quietStart": ("quietHours", "start"), "quietEnd": ("quietHours", "end")}


def is_csv(content_type: str | None) -> bool:
    """True for a `text/csv` (or `application/csv`) body."""
    return (content_type or "").split(";")[0].strip().lower() in ("text/csv", "application/csv")


def csv_text(body: bytes | str | None) -> str:
    """An uploaded CSV as text (UTF-8, with or without a byte-order mark), or a 400."""
    if isinstance(body, str):
        return body
    try:
        return (body or b"").decode("utf-8-sig")
    except UnicodeDecodeError:
        raise invalid_field("body", "the CSV must be UTF-8 text") from None


def _upload_as_json(body: bytes | str | None, params: dict[str, str]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(_UPLOAD_PARAMS) - {"code"})
    if unknown:
        raise invalid_field(unknown[0], "unknown query parameter for a CSV upload (use one of "
                                   + ", ".join(_UPLOAD_PARAMS) + ")")
    out: dict[str, Any] = {"audience": {"csv": csv_text(body)}}
    for name, path in _UPLOAD_PARAMS.items():
        if params.get(name):
            target = out
            for key in path[:-1]:
                target = target.setdefault(key, {})
            target[path[-1]] = params[name]
    return out


def campaign_request(body: bytes | str | None, content_type: str | None,
                     params: Mapping[str, str]) -> CampaignRequest:
    """`POST /api/campaigns`: the JSON request, or a `text/csv` audience whose other fields
    are query parameters (`name`, `from`, `template`/`templateId`, `tag`, `filter`, `sendAt`,
    `cron`, `timezone`, `quietStart`, `quietEnd`)."""
    if is_csv(content_type):
        body = json.dumps(_upload_as_json(body, dict(params)))
    request: CampaignRequest = parse_model(CampaignRequest, body)
    return request


def send_confirmation(body: bytes | str | None) -> SendConfirmation:
    """`POST /api/campaigns/{id}/send`: `{"confirmationToken"}`."""
    confirmation: SendConfirmation = parse_model(SendConfirmation, body)
    return confirmation


def limit_query(params: Mapping[str, str], *, default: int = 50,
                most: int = MAX_PAGE_SIZE) -> int:
    """`?limit=` of a listing: 1 to `most`."""
    raw = params.get("limit") or str(default)
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= most:
        raise invalid_field("limit", f"a whole number from 1 to {most}")
    return int(raw)


def page_query(params: Mapping[str, str], *, default: int = 50,
               most: int = MAX_PAGE_SIZE) -> PageQuery:
    """`?limit=&after=` of a listing."""
    return PageQuery(limit_query(params, default=default, most=most),
                     params.get("after") or None)


def _moment(params: Mapping[str, str], name: str) -> datetime | None:
    """An ISO 8601 date-time with a UTC offset, in UTC, or a 400 naming the parameter."""
    raw = params.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
        if value.tzinfo is None:
            raise ValueError
        value = value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise invalid_field(name, "an ISO 8601 date-time with a UTC offset, e.g. "
                                  "2026-01-31T09:00:00Z") from None
    if value < EARLIEST_STORABLE:
        raise invalid_field(name, "must be after 1601-01-01")
    return value


def _search_window(params: Mapping[str, str], bounded: bool
                   ) -> tuple[datetime | None, datetime | None]:
    """`since` <= `until`; for a time-window search (`bounded`) both are set (default the last
    24 hours, `until` defaulting to now) and at most 31 days apart."""
    since, until = _moment(params, "since"), _moment(params, "until")
    if bounded:
        until = until or datetime.now(UTC)
        since = since or until - DEFAULT_SEARCH_WINDOW
        if until - since > MAX_SEARCH_WINDOW:
            raise invalid_field("since", "at most 31 days before until (give to= to search one "
                                         "recipient's messages without a window)")
    if since is not None and until is not None and since > until:
        raise invalid_field("since", "must not be after until")
    return since, until


def message_search_query(params: Mapping[str, str]) -> MessageSearchQuery:
    """`GET /api/messages?from=&to=&status=&tag=&since=&until=&limit=&continuationToken=`."""
    sender = parse_sender(params["from"]) if params.get("from") else None
    to = parse_recipient(params["to"]) if params.get("to") else None
    status = params.get("status") or None
    if status is not None and status not in set(MessageStatus):
        raise invalid_field("status", "one of " + ", ".join(MessageStatus))
    tag = params.get("tag") or None
    if tag is not None and len(tag) > MAX_TAG_CHARS:
        raise invalid_field("tag", f"at most {MAX_TAG_CHARS} characters")
    since, until = _search_window(params, bounded=to is None)
    token = params.get("continuationToken")
    cursor = decode_search_cursor(token) if token else None
    if cursor is not None and isinstance(cursor, ConversationCursor) != (to is not None):
        # A token of the other kind of search would restart it or skip messages unseen.
        raise invalid_field("continuationToken", "not a token of this search (with or without to)")
    return MessageSearchQuery(
        to=to, filter=MessageFilter(sender, MessageStatus(status) if status else None, tag),
        since=since, until=until, limit=limit_query(params), cursor=cursor)


def audience_upload(body: bytes | str | None, content_type: str | None,
                    params: Mapping[str, str]) -> AudienceUpload:
    """`POST /api/audiences`: JSON (`recipients`, `csv`, or `uploadId` and `parts`), or a
    `text/csv` body with `?name=`."""
    if is_csv(content_type):
        name = (params.get("name") or "").strip()
        if not name or len(name) > MAX_NAME_CHARS:
            raise RequestInvalid("A CSV upload names its audience with ?name=.",
                                 [FieldError("name", "required query parameter (1-200 chars)")])
        rows = csv_audience_rows(csv_text(body))
        return AudienceUpload(name, [MemberRecord(r.to, r.attributes) for r in rows])
    request: AudienceRequest = parse_model(AudienceRequest, body)
    if request.upload_id is not None:
        return AudienceUpload(request.name, [], request.upload_id, request.parts or 0)
    if request.csv is not None:
        members = [MemberRecord(r.to, r.attributes) for r in csv_audience_rows(request.csv, "csv")]
    else:
        members = [MemberRecord(r.to, r.attributes()) for r in request.recipients or []]
    return AudienceUpload(request.name, members)


def audience_filter_query(params: Mapping[str, str]) -> str | None:
    """`?filter=<rule>` of an audience count (None when absent or empty: every member)."""
    # The rule's own checks (length, syntax, columns) run with the audience in the use case.
    return params.get("filter") or None


def template_request(body: bytes | str | None) -> TemplateRequest:
    """`POST /api/templates`: `{"name", "text"}`."""
    request: TemplateRequest = parse_model(TemplateRequest, body)
    return request


def conversation_query(number: str, params: Mapping[str, str]) -> ConversationQuery:
    """`GET /api/conversations/{number}?from=&limit=&continuationToken=`."""
    sender = parse_sender(params["from"]) if params.get("from") else None
    page = page_query(params)
    return ConversationQuery(sender, parse_recipient(number, "number"), page.limit,
                             params.get("continuationToken") or None)


def conversation_list_query(params: Mapping[str, str]) -> ConversationListQuery:
    """`GET /api/conversations?from=&limit=&continuationToken=`."""
    sender = parse_sender(params["from"]) if params.get("from") else None
    return ConversationListQuery(sender, limit_query(params),
                                 params.get("continuationToken") or None)
