"""Stored records as the domain sees them: messages and the changes made to them.

Adapters map them to and from storage entities; use cases read and decide on them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sms_core.errors import NotFound
from sms_core.models.events import DeliveryReport
from sms_core.models.messages import MessageStatus


def new_batch_id() -> str:
    """A fresh, roughly time-ordered batch id."""
    return datetime.now(UTC).strftime(BATCH_TIME_FORMAT) + secrets.token_hex(6)


BATCH_TIME_FORMAT = "%Y%m%d%H%M%S"


def batch_time(batch: str) -> datetime | None:
    """The UTC time a batch id made by `new_batch_id` starts with (None for other ids)."""
    try:
        return datetime.strptime(batch[:14], BATCH_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


# A message sent this long after its batch was created is "late" (scheduled, paced, retried):
# only late ones get an `AwaitingReports` row. The expiry timer finds every other message still
# `sent` by reading the batches created in the hour before each hour it sweeps, and the margin
# to that hour (10 minutes) absorbs clock skew between the accepting and the sending process.
PROMPT_SEND = timedelta(minutes=50)
HOUR_BUCKET_FORMAT = "%Y%m%d%H"


def sent_late(batch: str, sent_at: datetime) -> bool:
    """Whether a message left more than PROMPT_SEND after its batch was created (always true
    for a batch id without a time): such a message waits for its report in `AwaitingReports`."""
    created = batch_time(batch)
    return created is None or sent_at - created > PROMPT_SEND


def hour_bucket(at: datetime) -> str:
    """The `AwaitingReports` partition of messages sent in that UTC hour (`YYYYMMDDHH`)."""
    return at.astimezone(UTC).strftime(HOUR_BUCKET_FORMAT)


def bucket_hour(bucket: str) -> datetime:
    """The UTC hour an `hour_bucket` stands for."""
    return datetime.strptime(bucket, HOUR_BUCKET_FORMAT).replace(tzinfo=UTC)


def message_id(batch: str, index: int) -> str:
    """The public message id of recipient `index` of `batch`."""
    return f"{batch}-{index:05d}"


def split_message_id(value: str) -> tuple[str, int]:
    """Inverse of `message_id`; raises NotFound for anything that is not one of ours."""
    batch, sep, idx = value.rpartition("-")
    if not sep or not batch or len(idx) != 5 or not idx.isdigit() or len(batch) > 64 \
            or not batch.isalnum():
        raise NotFound(f"No message with id '{value}'.")
    return batch, int(idx)


@dataclass
class MessageRecord:
    """A stored message as the domain sees it."""

    batch: str
    index: int
    sender: str
    to: str
    body: str
    status: MessageStatus
    initial_status: MessageStatus
    segments: int
    encoding: str
    created_at: datetime
    updated_at: datetime
    tag: str | None = None
    delivery_report: bool = True
    optout_exempt: bool = False  # the one reply allowed after a STOP: its confirmation
    cancel_requested: bool = False  # canceled while claimed: dispatch cancels it if it comes back
    error: str | None = None
    send_at: datetime | None = None
    sent_at: datetime | None = None
    provider_message_id: str | None = None
    repeatability_id: str | None = None
    first_sent: str | None = None  # RFC 1123, as ACS wants repeatabilityFirstSent
    first_sent_at: datetime | None = None  # the same moment, precisely (conversation order)
    seq: int = 0
    report_ids: list[str] = field(default_factory=list)  # non-lifecycle reports already noted
    # Kept by the store, opaque to the core: the history entries stored on the message's own row
    # (JSON), carried so that a replace keeps them.
    history: str | None = None
    # The message's own row is its outbox entry (a transaction with one pending message): see
    # `OutboxRecord.on_message`.
    outbox: bool = False
    etag: str | None = None

    @property
    def id(self) -> str:
        """The public message id."""
        return message_id(self.batch, self.index)


@dataclass
class Change:
    """What to do to one message: fields to set and, for a status change, the history event."""

    fields: dict[str, Any] = field(default_factory=dict)
    status: MessageStatus | None = None
    detail: str | None = None
    data: dict[str, Any] | None = None
    note: bool = False  # append a history entry even though the status stays the same
    noted_status: MessageStatus | None = None  # the status that entry records (else the current)
    noted_at: datetime | None = None  # when that entry's step happened (else now)


# Given the current record, return the change to make, or None to leave it alone.
Decide = Callable[[MessageRecord], Change | None]


RUN_KEY_FORMAT = "%Y%m%dT%H%M%SZ"


def new_campaign_id() -> str:
    """A fresh, time-ordered campaign id."""
    return "c" + new_batch_id()


# "c", the 14 digits of the UTC time, 12 hex digits (`new_campaign_id`).
_CAMPAIGN_ID = re.compile(r"c[0-9]{14}[0-9a-f]{12}")


def is_campaign_id(value: str) -> bool:
    """True for an id `new_campaign_id` could have made (a listing's `after` cursor is one)."""
    return _CAMPAIGN_ID.fullmatch(value) is not None


def run_key(moment: datetime) -> str:
    """The key of the run due at `moment` (UTC, to the second)."""
    return moment.astimezone(UTC).strftime(RUN_KEY_FORMAT)


def run_time(key: str) -> datetime:
    """Inverse of `run_key`."""
    return datetime.strptime(key, RUN_KEY_FORMAT).replace(tzinfo=UTC)


def run_batch(campaign_id: str, key: str) -> str:
    """The Messages batch (partition) of a run: alphanumeric, like every batch id, and starting
    with the run's UTC time as `new_batch_id`'s do, so a search by time finds its messages."""
    return f"{key.replace('T', '').replace('Z', '')}{campaign_id}"


# `<run time, 14 digits><campaign id>` (`run_batch`), and `x<block>` after it for the blocks of
# a run past its first (`RunRecord.block_batch`): the batches whose status totals are kept.
_RUN_BATCH = re.compile(r"[0-9]{14}c[0-9]{14}[0-9a-f]{12}(x[0-9]{5})?")

SNAPSHOT_BLOCK = 10_000
"""Snapshot rows per partition, and a run's messages per batch: a block of recipients.

Row `i` of a campaign snapshot lives in block `i // SNAPSHOT_BLOCK`; a run has as many message
batches as the snapshot has blocks, and deals its fan-out chunks to them in turn
(`campaign_runs._slot`), each batch holding at most SNAPSHOT_BLOCK messages (5-digit message
indices). So no partition of a 10,000,000-recipient campaign holds more than 10,000 rows."""


def is_counted_batch(batch: str) -> bool:
    """True for a campaign run's batch: its messages' status totals are kept as they change
    (`MessageStore.run_counts`) rather than counted on read."""
    return _RUN_BATCH.fullmatch(batch) is not None


def run_of_batch(batch: str) -> tuple[str, str] | None:
    """(campaign id, run key) of a campaign run's batch (`run_batch`, or one of its blocks');
    None for any other batch."""
    if _RUN_BATCH.fullmatch(batch) is None:
        return None
    digits = batch[:14]
    return batch[14:].split("x", 1)[0], f"{digits[:8]}T{digits[8:]}Z"


def legacy_run_batch(campaign_id: str, key: str) -> str:
    """The batch of a run started before runs recorded theirs (`c<campaign id>r<time>`)."""
    return f"{campaign_id}r{key.replace('T', '').replace('Z', '')}"


def token_hash(token: str) -> str:
    """The SHA-256 of a confirmation token: what is stored in its place."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class CampaignRecord:
    """A prepared campaign as stored."""

    id: str
    name: str
    sender: str
    template: str
    status: str
    created_at: datetime
    updated_at: datetime
    total: int
    valid: int
    preview: dict[str, Any]
    token_hash: str
    template_id: str | None = None
    tag: str | None = None
    delivery_report: bool = True
    schedule: dict[str, Any] | None = None
    quiet_hours: dict[str, Any] | None = None
    last_run: str | None = None
    next_run_at: datetime | None = None
    runs: int = 0
    etag: str | None = None
    layout: int = 1  # 1: snapshot in one partition (before blocks); 2: in blocks
    span: int = 0  # snapshot row indices lie in [0, span); 0: in [0, total)
    preparation: dict[str, Any] | None = None  # the plan of a background preparation

    @property
    def rows_span(self) -> int:
        """How many snapshot row indices there are (rows dropped by a filter leave gaps when
        the preparation ran in the background)."""
        return self.span or self.total

    @property
    def blocks(self) -> int:
        """How many snapshot blocks (and message batches per run) the campaign has."""
        return 1 if self.layout == 1 else max(1, -(-self.rows_span // SNAPSHOT_BLOCK))

    def token_matches(self, token: str) -> bool:
        """Constant-time check of a confirmation token against the prepared snapshot's."""
        return hmac.compare_digest(self.token_hash, token_hash(token))


@dataclass(frozen=True, slots=True)
class RecipientRecord:
    """One row of a campaign's prepared snapshot."""

    index: int
    to: str
    verdict: str  # valid | invalid | duplicate | optedOut
    body: str = ""
    segments: int = 0
    encoding: str = "GSM-7"
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    """A number a snapshot row would send to, as a background preparation's chunk found it:
    the bucket job that holds every claim of that number keeps the first and marks the rest
    duplicates. It carries what the preview needs of a message that is sent."""

    to: str
    index: int
    segments: int
    encoding: str
    ucs2: str = ""  # the characters that forced UCS-2, in order of first appearance
    place: int = 0  # the row's place among the selected rows of its chunk


@dataclass
class RunRecord:
    """One delivery of a campaign: its message batch and fan-out progress."""

    campaign_id: str
    key: str
    chunks: int
    status: str  # sending | completed | canceled
    started_at: datetime
    finished_at: datetime | None = None
    etag: str | None = None
    done_chunks: set[int] = field(default_factory=set)
    batch_id: str | None = None  # as stored with the run; None: a new run's `run_batch`
    settled_counts: dict[str, int] | None = None  # its totals once no message can change
    blocks: int = 1  # message batches: one per snapshot block (`SNAPSHOT_BLOCK`)

    @property
    def batch(self) -> str:
        """The Messages partition of this run (of its first block)."""
        return self.batch_id or run_batch(self.campaign_id, self.key)

    def block_batch(self, block: int) -> str:
        """The Messages partition of the run's messages of snapshot block `block`."""
        return self.batch if block == 0 else f"{self.batch}x{block:05d}"

    @property
    def batches(self) -> list[str]:
        """Every Messages partition of the run, first block first."""
        return [self.block_batch(b) for b in range(self.blocks)]


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One member of an audience: a number (as given) and its attributes."""

    to: str
    attributes: dict[str, str]


@dataclass(frozen=True, slots=True)
class AudienceRecord:
    """A saved audience without its members.

    `status` is `ready`, or `importing` while an uploaded file is read in the background
    (`size` then counts the members written so far), or `failed` with the line and reason of
    the row that stopped it (nothing of the file is used then).
    """

    id: str
    name: str
    size: int
    columns: list[str]
    created_at: datetime
    status: str = "ready"
    upload_id: str | None = None
    error_line: int | None = None
    error: str | None = None
    bytes_read: int = 0  # an import's position in the file: the next row starts here...
    next_line: int = 0  # ...on this physical line (0: the file was not read yet)
    header: list[str] | None = None  # the file's header and delimiter, to resume with
    delimiter: str = ","
    upload_bytes: int = 0
    etag: str | None = None
    layout: int = 2  # 1: members in one partition (audiences saved before blocks)


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """An upload of an audience file, sent in parts and then imported once."""

    id: str
    created_at: datetime
    expires_at: datetime
    audience_id: str | None = None  # the audience it became (a retried import finds it)


@dataclass(frozen=True, slots=True)
class TemplateRecord:
    """A saved template."""

    id: str
    name: str
    text: str
    variables: list[str]
    created_at: datetime


Direction = Literal["inbound", "outbound"]


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    """One message of a conversation."""

    our_number: str
    their_number: str
    direction: Direction
    message_id: str
    text: str
    at: datetime
    keyword: str | None = None
    tag: str | None = None  # outbound: the message's tag (engagement analytics)
    # The length of the text as received when `text` is cut to what storage holds, else None.
    length: int | None = None

    def row_key(self) -> str:
        """Sortable by time; unique per message."""
        return f"{self.at.strftime('%Y%m%dT%H%M%S.%fZ')}|{self.direction[:3]}|{self.message_id}"


@dataclass(frozen=True, slots=True)
class ConversationSummaryRecord:
    """A conversation in a sender's index: the person and the last message either way."""

    their_number: str
    last_message: str
    last_direction: Direction
    last_at: datetime


@dataclass(frozen=True, slots=True)
class UnmatchedReportRecord:
    """A delivery report (or invalid inbound event) kept because it matched no message yet."""

    provider_id: str
    event_id: str
    event: dict[str, Any]
    received_at: datetime | None
    report: DeliveryReport | None = None  # None: not a delivery report (an invalid inbound)


# Messages per entity-group transaction (at most 100 operations) when their outbox row rides
# along.
OUTBOX_CHUNK = 99


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """Messages of one transaction whose dispatch may not be on its way yet.

    Written in the same entity-group transaction as the messages it lists, and cleared once they
    were sent inline or their jobs are on the queue; one still there after a grace period is
    the trace of a request that died (or whose enqueue failed) half-way, and the sweeper sends
    its messages.
    """

    batch: str
    chunk: int  # the transaction's number within the batch
    indices: list[int]  # the pending messages it holds
    send_at: datetime | None
    created_at: datetime
    # True when the entry is the mark on the message's own row (a transaction with one pending
    # message writes no row of its own), False for an outbox row listing the messages.
    on_message: bool = False


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """The batch a key is bound to, and whether its acceptance already completed."""

    batch: str
    completed: bool


@dataclass(frozen=True, slots=True)
class AwaitingRecord:
    """A message still waiting for its report."""

    bucket: str
    message_id: str
