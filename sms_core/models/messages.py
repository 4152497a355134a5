"""Models named by role: requests in, public views out, jobs on queues."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
)

from sms_core.errors import FieldError, RequestInvalid
from sms_core.models.field_errors import field_errors
from sms_core.rules.message_text import check_text, encoding_problem
from sms_core.rules.phone import InvalidPhoneNumber, sender_to_e164_or_shortcode, to_e164
from sms_core.rules.times import check_send_at

MAX_MESSAGE_CHARS = 2048  # ACS rejects longer bodies.
MAX_RECIPIENTS_PER_REQUEST = 10_000
MAX_TAG_CHARS = 256


class MessageStatus(StrEnum):
    """Public message statuses (design.md section 5)."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"
    BLOCKED = "blocked"
    REJECTED = "rejected"
    CANCELED = "canceled"


TERMINAL_STATUSES = frozenset({MessageStatus.DELIVERED, MessageStatus.FAILED,
                               MessageStatus.EXPIRED, MessageStatus.BLOCKED,
                               MessageStatus.REJECTED, MessageStatus.CANCELED})
PENDING_STATUSES = frozenset({MessageStatus.QUEUED, MessageStatus.SCHEDULED})

# Rank in the lifecycle: a transition is allowed only forward (terminal states never regress).
STATUS_RANK: dict[MessageStatus, int] = {
    MessageStatus.SCHEDULED: 0, MessageStatus.QUEUED: 1, MessageStatus.SENT: 2,
    MessageStatus.DELIVERED: 3, MessageStatus.FAILED: 3, MessageStatus.EXPIRED: 3,
    MessageStatus.BLOCKED: 3, MessageStatus.REJECTED: 3, MessageStatus.CANCELED: 3,
}


def can_transition(current: MessageStatus, new: MessageStatus) -> bool:
    """True when moving from `current` to `new` goes forward in the lifecycle."""
    if current in TERMINAL_STATUSES:
        return False
    return STATUS_RANK[new] > STATUS_RANK[current]


class SendRequest(BaseModel):
    """Body of `POST /api/messages`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: StrictStr | None = Field(None, alias="from")
    to: StrictStr | list[StrictStr]
    message: StrictStr
    tag: StrictStr | None = Field(None, max_length=MAX_TAG_CHARS)
    delivery_report: StrictBool = Field(True, alias="deliveryReport")
    send_at: datetime | None = Field(None, alias="sendAt")

    @field_validator("to")
    @classmethod
    def _recipient_count(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list):
            if not value:
                raise ValueError("at least one recipient is required")
            if len(value) > MAX_RECIPIENTS_PER_REQUEST:
                raise ValueError(f"at most {MAX_RECIPIENTS_PER_REQUEST} recipients per request "
                                 f"(got {len(value)}); use a campaign for larger audiences")
        return value

    @field_validator("message")
    @classmethod
    def _message_text(cls, value: str) -> str:
        check_text(value)
        if len(value) > MAX_MESSAGE_CHARS:
            raise ValueError(f"message is {len(value)} characters; the maximum is "
                             f"{MAX_MESSAGE_CHARS}")
        return value

    @field_validator("send_at", mode="before")
    @classmethod
    def _send_at_text(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ValueError("sendAt must be an ISO-8601 string with a UTC offset")
        return value

    @field_validator("send_at")
    @classmethod
    def _send_at_offset(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("sendAt must include a UTC offset, for example "
                             "2030-01-31T09:00:00+01:00 or ...Z")
        # Checked, not replaced by "now": the request's fingerprint (Idempotency-Key) must not
        # depend on when it was parsed. A moment already passed is sent at once.
        check_send_at(value, datetime.now(UTC))
        return value.astimezone(UTC)

    @property
    def recipients(self) -> list[str]:
        """The recipients as a list, in request order."""
        return [self.to] if isinstance(self.to, str) else list(self.to)

    def fingerprint(self) -> str:
        """A canonical form of the request, for Idempotency-Key comparison."""
        return json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True,
                          separators=(",", ":"))


# Deeper than any body we accept (a campaign is 4 levels): a payload nested deeper is refused
# when it is decoded, so no later `json.dumps` of what we keep of it (an event's raw form) can
# run out of stack. The decoder itself raises RecursionError near 1,000 levels.
MAX_JSON_DEPTH = 32


def _depth_exceeds(data: Any, most: int) -> bool:
    # Iterative: a recursive walk would itself run out of stack on the data it checks.
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > most:
                return True
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict)
                                                  else value))
    return False


def decode_json(body: bytes | str, what: str = "The request body",
                max_depth: int | None = None) -> Any:
    """The JSON value of a request body, or a `RequestInvalid` naming `body`.

    The one place a request body is decoded: malformed text, bytes that are not UTF-8 and
    nesting too deep for the decoder (`RecursionError`) are all a 400, never a 500. With
    `max_depth`, a value nested deeper than that is refused too (for payloads kept verbatim).
    """
    too_deep = RequestInvalid(f"{what} is nested too deeply to be read.",
                              [FieldError("body", "JSON nested too deeply")])
    try:
        data = json.loads(body)
    except RecursionError:
        raise too_deep from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestInvalid(f"{what} is not valid JSON: {exc}",
                             [FieldError("body", "malformed JSON")]) from None
    if max_depth is not None and _depth_exceeds(data, max_depth):
        raise too_deep
    return data


def parse_model(model: type[BaseModel], body: bytes | str | None) -> Any:
    """Parse a JSON body into a model, or raise `RequestInvalid` naming every bad field."""
    if body is None or (isinstance(body, bytes | str) and not body.strip()):
        raise RequestInvalid("The request body is empty; a JSON object is required.",
                             [FieldError("body", "a JSON object is required")])
    # The models are strict (no free-form members), so nesting beyond their shape fails
    # validation: only the decoder's own limit needs catching here.
    data = decode_json(body)
    if not isinstance(data, dict):
        raise RequestInvalid("The request body must be a JSON object.",
                             [FieldError("body", "a JSON object is required")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(model, exc)
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        raise RequestInvalid(f"The request is invalid: {detail}", errors) from None


class RecipientResult(BaseModel):
    """One entry of the send response, in request order."""

    id: str
    to: str
    status: MessageStatus
    segments: int
    encoding: str
    error: str | None = None

    def public(self) -> dict[str, Any]:
        """The JSON shape of the response entry (no `error` key when there is none)."""
        return self.model_dump(mode="json", exclude_none=True)


class SendResponse(BaseModel):
    """Body of the 202 answer to `POST /api/messages`."""

    messages: list[RecipientResult]

    def public(self) -> dict[str, Any]:
        """The JSON shape of the response."""
        return {"messages": [m.public() for m in self.messages]}


class MessageEvent(BaseModel):
    """One entry of a message's history."""

    status: MessageStatus
    at: datetime
    detail: str | None = None
    data: dict[str, Any] | None = None


class MessagePublic(BaseModel):
    """Body of `GET /api/messages/{id}`."""

    id: str
    from_: str = Field(serialization_alias="from")
    to: str
    message: str
    status: MessageStatus
    error: str | None = None
    tag: str | None = None
    segments: int
    encoding: str
    delivery_report: bool = Field(serialization_alias="deliveryReport")
    provider_message_id: str | None = Field(None, serialization_alias="providerMessageId")
    created_at: datetime = Field(serialization_alias="createdAt")
    updated_at: datetime = Field(serialization_alias="updatedAt")
    send_at: datetime | None = Field(None, serialization_alias="sendAt")
    sent_at: datetime | None = Field(None, serialization_alias="sentAt")
    history: list[MessageEvent]

    def public(self) -> dict[str, Any]:
        """The JSON shape of the message view."""
        return self.model_dump(mode="json", by_alias=True)


class MessageSummaryPublic(BaseModel):
    """One message of `GET /api/messages`: the fields of `MessagePublic` a listing shows."""

    id: str
    from_: str = Field(serialization_alias="from")
    to: str
    message: str
    status: MessageStatus
    tag: str | None
    segments: int
    encoding: str
    error: str | None
    created_at: datetime = Field(serialization_alias="createdAt")
    updated_at: datetime = Field(serialization_alias="updatedAt")
    sent_at: datetime | None = Field(serialization_alias="sentAt")


class MessageListPublic(BaseModel):
    """Body of `GET /api/messages`: one page, newest first."""

    messages: list[MessageSummaryPublic]
    continuation_token: str | None = Field(serialization_alias="continuationToken")

    def public(self) -> dict[str, Any]:
        """The JSON shape of the page."""
        return self.model_dump(mode="json", by_alias=True)


class SegmentsRequest(BaseModel):
    """Body of `POST /api/segments`: a draft text (blank allowed: the counter starts empty)."""

    model_config = ConfigDict(extra="forbid")

    message: StrictStr = Field(max_length=MAX_MESSAGE_CHARS)

    @field_validator("message")
    @classmethod
    def _encodable(cls, value: str) -> str:
        problem = encoding_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class SegmentsPublic(BaseModel):
    """Body of the answer to `POST /api/segments`."""

    characters: int
    segments: int
    encoding: str
    ucs2_characters: list[str] = Field(serialization_alias="ucs2Characters")

    def public(self) -> dict[str, Any]:
        """The JSON shape of the count."""
        return self.model_dump(mode="json", by_alias=True)


class DispatchJob(BaseModel):
    """A message on `sms-outbound`: send the listed messages of one batch (one sender)."""

    model_config = ConfigDict(populate_by_name=True)

    v: Literal[1] = 1
    batch: str
    indices: list[int]
    not_before: datetime | None = Field(None, alias="notBefore")
    slot_at: float | None = Field(None, alias="slotAt")
    attempt: int = 1
    # A reply to a recipient's keyword: paced ahead of the sender's bulk backlog.
    priority: bool | None = None

    def encode(self) -> str:
        """The queue message text (JSON; the queue client base64-encodes it)."""
        return self.model_dump_json(by_alias=True, exclude_none=True)


def _number_param(raw: str | None, field: str, parse: Callable[[str], str]) -> str:
    if not raw:
        raise RequestInvalid(f"`{field}` is required.", [FieldError(field, "required")])
    try:
        return parse(raw)
    except InvalidPhoneNumber as exc:
        raise RequestInvalid(f"`{field}`: {exc.reason}", [FieldError(field, exc.reason)]) from None


def parse_sender(raw: str | None, field: str = "from") -> str:
    """Our number (E.164, short code or sender ID) from a request, or a 400 naming the field."""
    return _number_param(raw, field, sender_to_e164_or_shortcode)


def parse_recipient(raw: str | None, field: str = "to") -> str:
    """A person's number (E.164) from a request, or a 400 naming the field."""
    return _number_param(raw, field, to_e164)


MAX_RECIPIENTS_PER_CALL = 100  # ACS accepts at most 100 recipients in one send request.


@dataclass(frozen=True, slots=True)
class OutboundSms:
    """One recipient of a send call, with the ids that make a resend safe."""

    to: str
    repeatability_id: str
    first_sent: str  # RFC 1123, the time of the first attempt


# The tag we give ACS for a send call, which ACS echoes in each delivery report ("Tag"): it
# names the batch and the range of message indices of the call, so a report finds its message
# with one single-partition query and no ACS-id index is written at send time. The app's own
# tag follows, so ACS's logs still show it.
_REPORT_TAG = "sms1"


@dataclass(frozen=True, slots=True)
class ReportRoute:
    """Where a delivery report's message is: its batch and the index range of its send call."""

    batch: str
    first: int
    last: int


def report_tag(batch: str, indices: Sequence[int], tag: str | None) -> str:
    """The ACS tag of a send call for these messages of `batch` (see `report_route`)."""
    route = f"{_REPORT_TAG}|{batch}|{min(indices)}-{max(indices)}"
    return route if tag is None else f"{route}|{tag}"


def report_route(acs_tag: str | None) -> ReportRoute | None:
    """The route in the tag of a delivery report, or None for a tag we did not make."""
    parts = (acs_tag or "").split("|", 3)
    if len(parts) < 3 or parts[0] != _REPORT_TAG or not parts[1]:
        return None
    first, sep, last = parts[2].partition("-")
    if not (sep and first.isdigit() and last.isdigit() and int(first) <= int(last)):
        return None
    return ReportRoute(parts[1], int(first), int(last))


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What ACS said about one recipient of a call."""

    to: str
    accepted: bool
    provider_message_id: str | None
    http_status: int
    error: str | None = None
    duplicate: bool = False  # ACS had already accepted this repeatability id

    @property
    def retryable(self) -> bool:
        """True when a later attempt may succeed (throttled or a server-side failure)."""
        return not self.accepted and (self.http_status == 429 or self.http_status >= 500)


def validate_key(key: str) -> str:
    """Check an Idempotency-Key header value (1..255 visible ASCII characters)."""
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(33 <= ord(c) <= 126 for c in key):
        raise RequestInvalid(
            "The Idempotency-Key header must be 1 to 255 visible ASCII characters.",
            [FieldError("Idempotency-Key", "1 to 255 visible ASCII characters")])
    return key


MAX_KEY_LENGTH = 255


# Azure Storage queues hide a message for at most 7 days; longer waits are chained (the job
# carries `notBefore` and is put back until it is due).
MAX_VISIBILITY_S = 6 * 24 * 3600
