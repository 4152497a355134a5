"""The ports: what the use cases need from the world, as Protocols.

Use cases name these, never an adapter. The adapters in `sms_core.adapters` (and
`optout_store`) implement them; `sms_core.bootstrap` wires one of each per process; unit tests
pass the in-memory fakes of `tests/unit/fakes.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from optout_store.records import OptOutHistoryRecord, OptOutStateRecord, Source
from sms_core.models.app_events import WebhookDelivery
from sms_core.models.messages import MessageEvent, OutboundSms, SendOutcome
from sms_core.models.queries import BatchCursor, MessageFilter
from sms_core.models.records import (
    AudienceRecord,
    AwaitingRecord,
    CampaignRecord,
    ClaimRecord,
    ConversationRecord,
    ConversationSummaryRecord,
    Decide,
    IdempotencyClaim,
    MemberRecord,
    MessageRecord,
    OutboxRecord,
    RecipientRecord,
    RunRecord,
    TemplateRecord,
    UnmatchedReportRecord,
    UploadRecord,
)
from sms_core.rules.analytics import AnalyticsReport, Fact


class WebhookPoster(Protocol):
    """Anything that can POST bytes and tell the status (None: no answer)."""

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int | None:
        """POST and return the HTTP status, or None when the app could not be reached."""
        ...


class SmsGateway(Protocol):
    """Anything that can send one SMS to up to 100 recipients."""

    def send(self, sender: str, recipients: Sequence[OutboundSms], message: str, *,
             tag: str | None, delivery_report: bool) -> list[SendOutcome]:
        """Send; one outcome per recipient in order, or raise a ProviderError for the call."""
        ...


class Job(Protocol):
    """Anything that knows its queue message text (`DispatchJob`, `FanoutJob`)."""

    def encode(self) -> str:
        """The queue message text."""
        ...


class WebhookOutbox(Protocol):
    """Where a webhook post that failed waits for its next attempt."""

    def retry_later(self, delivery: WebhookDelivery, delay_s: int) -> None:
        """Try the delivery again after `delay_s` seconds."""
        ...

    def give_up(self, delivery: WebhookDelivery) -> None:
        """Keep a delivery that used all its attempts where an operator finds it."""
        ...


class Messages(Protocol):
    """The messages and their history (one partition per send request)."""

    def create_batch(self, records: Sequence[MessageRecord], *,
                     outbox: bool = False) -> list[MessageRecord]:
        """Insert the records of one batch with entity-group transactions (run in parallel);
        with `outbox`, each transaction also writes the outbox row of its pending messages."""
        ...

    def apply(self, batch: str, indices: Iterable[int], decide: Decide,
              preloaded: Sequence[MessageRecord] | None = None, *,
              clear_outbox: bool = False) -> list[MessageRecord]:
        """Apply `decide` to each message of the batch, atomically per message and ETag-guarded;
        with `clear_outbox`, also delete the outbox rows of `indices` (in the same transaction
        when it has room)."""
        ...

    def load(self, batch: str, indices: Sequence[int] | None = None) -> list[MessageRecord]:
        """The messages of a batch (only those in `indices` if given), one read."""
        ...

    def pending(self, batch: str) -> list[MessageRecord]:
        """The messages of a batch still queued or scheduled (one partition query)."""
        ...

    def find_recipient(self, batch: str, first: int, last: int, to: str
                       ) -> MessageRecord | None:
        """The message to `to` among indices `first`..`last` of a batch (one read)."""
        ...

    def status_counts(self, batch: str) -> dict[str, int]:
        """How many messages of a batch are in each status (reads only the Status column)."""
        ...

    def run_counts(self, batch: str) -> dict[str, int]:
        """The same for a campaign run's batch, from its kept totals (`is_counted_batch`):
        a few rows, however many messages it holds."""
        ...

    def with_history(self, public_id: str) -> tuple[MessageRecord, list[MessageEvent]]:
        """One message and the events of its history, oldest first; NotFound if unknown."""
        ...

    def awaiting_report(self, since: datetime, until: datetime) -> list[MessageRecord]:
        """Messages still `sent` that asked for a delivery report, in the batches created in
        [since, until) (to the second)."""
        ...



class MessageSearch(Protocol):
    """Finding messages for `GET /api/messages`, by partition-bounded queries only."""

    def recent(self, since: datetime, until: datetime, match: MessageFilter, limit: int,
               after: BatchCursor | None) -> tuple[list[MessageRecord], BatchCursor | None]:
        """Messages of the batches created in [since, until] (to the second) matching `match`,
        newest batch first and in index order within one, at most `limit`, after `after`;
        and the cursor of the next page (None when the window is exhausted)."""
        ...

    def by_ids(self, public_ids: Sequence[str]) -> dict[str, MessageRecord]:
        """The messages of these ids that exist, by id."""
        ...


class Outbox(Protocol):
    """Send requests' messages that may have no job yet (rows written with the messages)."""

    def clear_outbox(self, batch: str, indices: Iterable[int], *,
                     on_messages: bool = False) -> None:
        """These messages were sent or their jobs are on the queue: drop their outbox rows
        (with `on_messages`, the marks on their own rows: `OutboxRecord.on_message`)."""
        ...

    def stranded(self, since: datetime, until: datetime) -> list[OutboxRecord]:
        """Outbox rows written before `until` in batches created from `since` on."""
        ...

    def outbox_cursor(self) -> datetime | None:
        """Up to when every outbox row was handled (None before the first sweep)."""
        ...

    def move_outbox_cursor(self, until: datetime) -> None:
        """Remember that every outbox row written before `until` was handled."""
        ...


class OptOuts(Protocol):
    """The opt-out state per sender (or global) and its append-only history."""

    def opted_out_among(self, sender: str, recipients: Iterable[str]) -> set[str]:
        """The subset of `recipients` that opted out of `sender` (or globally)."""
        ...

    def get(self, sender: str, recipient: str) -> OptOutStateRecord | None:
        """The stored state of the pair in the configured scope, or None if never changed."""
        ...

    def opt_out(self, sender: str, recipient: str, *, source: Source,
                keyword: str | None = None, text: str | None = None,
                inbound_message_id: str | None = None, reason: str | None = None,
                at: datetime | None = None) -> bool:
        """Record an opt-out. Returns True if the state changed (False if already opted out)."""
        ...

    def opt_in(self, sender: str, recipient: str, *, source: Source,
               keyword: str | None = None, text: str | None = None,
               inbound_message_id: str | None = None, reason: str | None = None,
               at: datetime | None = None) -> bool:
        """Clear an opt-out. Returns True if the state changed (False if not opted out)."""
        ...

    def list_opted_out(self, partition: str) -> list[OptOutStateRecord]:
        """Every recipient currently opted out in one partition (a sender, or `global`)."""
        ...

    def history(self, sender: str, recipient: str) -> list[OptOutHistoryRecord]:
        """Every change of the pair (in the configured scope), oldest first."""
        ...



class IdempotencyKeys(Protocol):
    """Idempotency-Key bindings of `POST /api/messages`."""

    def claim(self, key: str, fingerprint: str) -> IdempotencyClaim:
        """Bind `key` to this request, or return the existing binding; 409 on another body."""
        ...

    def complete(self, key: str) -> None:
        """Mark the key's acceptance as complete (everything written and enqueued)."""
        ...



class Pacer(Protocol):
    """Pacing per sender number, shared by every dispatcher instance."""

    def reserve(self, sender: str, count: int, *, priority: bool = False) -> float:
        """Reserve `count` messages for `sender`; returns the epoch second they may be sent.
        `priority` (keyword replies) takes the slot now, ahead of the bulk backlog."""
        ...

    def reserve_within(self, sender: str, count: int, within_s: float | None, *,
                       priority: bool = False) -> float | None:
        """`reserve` only if the slot is at most `within_s` seconds away, else None (nothing
        reserved)."""
        ...

    def give_back(self, sender: str, count: int) -> None:
        """Return the share of `count` reserved messages that were not sent after all."""
        ...



class Jobs(Protocol):
    """A queue of jobs (`sms-outbound`, `sms-campaigns`)."""

    def enqueue(self, job: Job, delay_s: float = 0) -> None:
        """Put one job on the queue, visible after `delay_s` seconds (capped at ~6 days)."""
        ...

    def enqueue_many(self, jobs: Sequence[Job], delay_s: float = 0) -> None:
        """Put many jobs on the queue concurrently (the Queue API has no batch send)."""
        ...



class RunStatuses(Protocol):
    """Whether a campaign run was canceled: what dispatch asks before it sends a run's
    messages."""

    def run_canceled(self, campaign_id: str, key: str) -> bool:
        """True when the run exists and is canceled (one point read)."""
        ...


class Campaigns(RunStatuses, Protocol):
    """Campaigns, their runs, fan-out markers, schedule index and recipient snapshots."""

    def new_token(self) -> tuple[str, str]:
        """A fresh confirmation token and the hash that is stored in its place."""
        ...

    def create(self, campaign: CampaignRecord, rows: Sequence[RecipientRecord]) -> None:
        """Write the snapshot rows, then the campaign: a crash leaves no visible campaign."""
        ...

    def get(self, campaign_id: str) -> CampaignRecord:
        """The campaign, or NotFound."""
        ...

    def save(self, campaign: CampaignRecord) -> bool:
        """Replace the campaign if nobody changed it since it was read; False on a conflict."""
        ...

    def change(self, campaign: CampaignRecord,
               mutate: Callable[[CampaignRecord], bool]) -> CampaignRecord:
        """Apply `mutate` (False: nothing to change) and save, re-reading on an ETag conflict."""
        ...

    def page(self, limit: int, after: str | None) -> tuple[list[CampaignRecord], str | None]:
        """Campaigns in creation order, `limit` at a time, after the id `after`."""
        ...

    def with_status(self, status: str) -> list[CampaignRecord]:
        """Campaigns in one status (a read of the campaign partition; the timer's use only)."""
        ...

    def write_rows(self, campaign: CampaignRecord, rows: Sequence[RecipientRecord], *,
                   new: bool) -> None:
        """Write snapshot rows (idempotent; `new`: not written before, else they replace)."""
        ...

    def recipients(self, campaign: CampaignRecord, lo: int, hi: int) -> list[RecipientRecord]:
        """The valid rows with index in [lo, hi), a range within one block: one range query."""
        ...

    def rows(self, campaign: CampaignRecord, indices: Sequence[int]) -> list[RecipientRecord]:
        """The snapshot rows of `indices` (absent ones left out)."""
        ...

    def start_run(self, campaign_id: str, key: str, chunks: int, blocks: int = 1) -> RunRecord:
        """Create the run (or return it when it already exists: a retried start)."""
        ...

    def run(self, campaign_id: str, key: str, *, chunk: int | None = None) -> RunRecord | None:
        """One run with its done chunks, or None (with `chunk`: only whether it is done)."""
        ...

    def runs(self, campaign_id: str) -> list[RunRecord]:
        """Every run of the campaign, oldest first."""
        ...

    def mark_chunk(self, run: RunRecord, chunk: int, counts: dict[str, int]) -> None:
        """Record that a fan-out chunk is done (idempotent)."""
        ...

    def set_run_status(self, run: RunRecord, status: str) -> bool:
        """Move a run to `status` if it did not change meanwhile; False on a conflict."""
        ...

    def settle_run(self, run: RunRecord, counts: dict[str, int]) -> bool:
        """Keep a finished run's final totals on it; False on a conflict."""
        ...

    def schedule(self, campaign_id: str, due: datetime) -> None:
        """Put a run of the campaign in the schedule index (idempotent)."""
        ...

    def due(self, now: datetime) -> Iterator[tuple[str, str]]:
        """(campaign id, run key) of every schedule entry due at `now`, oldest first."""
        ...

    def unschedule(self, campaign_id: str, key: str) -> None:
        """Remove a schedule entry (a no-op when it is gone)."""
        ...



class Preparations(Protocol):
    """What a campaign's background preparation keeps between its jobs: the numbers each
    chunk found (claims, hashed into buckets) and a marker with the tally of each finished
    chunk and bucket."""

    def save_claims(self, campaign_id: str,
                    by_bucket: Mapping[int, Sequence[ClaimRecord]]) -> None:
        """Write claims into their buckets (idempotent: rewriting them is harmless)."""
        ...

    def claims(self, campaign_id: str, bucket: int) -> list[ClaimRecord]:
        """A bucket's claims ordered by number, then row index."""
        ...

    def forget_claims(self, campaign_id: str, bucket: int) -> None:
        """Delete a bucket's claims (best effort: what stays is never read again)."""
        ...

    def mark(self, campaign_id: str, stage: str, part: int, tally: dict[str, Any]) -> None:
        """Record that part `part` of `stage` (chunk, bucket) is done, with its tally."""
        ...

    def marked(self, campaign_id: str, stage: str, part: int) -> bool:
        """Whether `part` of `stage` is done (a point read)."""
        ...

    def marks(self, campaign_id: str, stage: str, *, full: bool = True
              ) -> dict[int, dict[str, Any]]:
        """The tallies of the done parts of `stage`; `full=False` reads only their counts."""
        ...



class Audiences(Protocol):
    """Saved audiences and their members."""

    def create(self, name: str, members: Sequence[MemberRecord]) -> AudienceRecord:
        """Save members, then the audience row (a crash leaves nothing visible)."""
        ...

    def get(self, audience_id: str) -> AudienceRecord:
        """The audience, or NotFound."""
        ...

    def all(self) -> list[AudienceRecord]:
        """Every saved audience, oldest first."""
        ...

    def members(self, audience_id: str) -> list[MemberRecord]:
        """All members of an audience in their saved order (one partition query)."""
        ...

    def each_member(self, audience_id: str) -> Iterator[MemberRecord]:
        """The members one at a time, in their saved order (NotFound first when none)."""
        ...

    def member_range(self, info: AudienceRecord, lo: int, hi: int
                     ) -> list[tuple[int, MemberRecord]]:
        """(index, member) with index in [lo, hi), within one block of a blocked audience."""
        ...

    def delete(self, audience_id: str) -> None:
        """Delete an audience: invisible at once, its member rows removed after."""
        ...



class AudienceImports(Protocol):
    """The audience rows an import writes: the audience while importing, then its members."""

    def get(self, audience_id: str) -> AudienceRecord:
        """The audience, or NotFound."""
        ...

    def create_importing(self, name: str, upload_id: str, upload_bytes: int) -> AudienceRecord:
        """The row of an audience an import will fill (status `importing`)."""
        ...

    def write_members(self, audience_id: str, first: int,
                      members: Sequence[MemberRecord]) -> None:
        """Write members `first`, `first + 1`, ... (rewriting them is harmless)."""
        ...

    def save(self, info: AudienceRecord) -> AudienceRecord | None:
        """Replace the audience row under its ETag; None when it changed since."""
        ...

    def drop_members(self, info: AudienceRecord) -> None:
        """Delete an audience's member rows."""
        ...


class TextLines(Protocol):
    """Lines of an uploaded file, with the byte offset after the last line handed out."""

    offset: int

    def __iter__(self) -> Iterator[str]: ...
    def __next__(self) -> str: ...


class Uploads(Protocol):
    """Audience files sent in parts, then read back as lines."""

    def create(self) -> UploadRecord:
        """A new, empty upload."""
        ...

    def get(self, upload_id: str) -> UploadRecord:
        """The upload, or NotFound (also once it expired)."""
        ...

    def put_part(self, upload_id: str, part: int, data: bytes) -> None:
        """Store part `part` (0-based); the same part again replaces it."""
        ...

    def commit(self, upload_id: str, parts: int) -> int:
        """Make parts 0..parts-1 the file (a 400 naming `parts` if one is missing); its
        size in bytes. The same commit again is the same file."""
        ...

    def claim(self, upload_id: str, audience_id: str) -> str:
        """Record the audience the upload becomes, unless it became one already: that id."""
        ...

    def lines(self, upload_id: str, start: int = 0) -> TextLines:
        """The committed file's lines from byte `start` on."""
        ...

    def delete(self, upload_id: str) -> None:
        """Remove the file (the upload's record stays)."""
        ...


class Templates(Protocol):
    """Saved templates."""

    def create(self, name: str, text: str, variables: Sequence[str]) -> TemplateRecord:
        """Save a template."""
        ...

    def get(self, template_id: str) -> TemplateRecord:
        """The template, or NotFound."""
        ...

    def all(self) -> list[TemplateRecord]:
        """Every saved template, oldest first."""
        ...

    def delete(self, template_id: str) -> None:
        """Delete a template (campaigns keep the text they were prepared with)."""
        ...



class Conversations(Protocol):
    """Both directions of every conversation."""

    def record(self, entries: Iterable[ConversationRecord]) -> None:
        """Upsert entries and their senders' conversation lists."""
        ...

    def last_outbound(
        self, our_number: str, their_number: str, since: datetime, until: datetime,
    ) -> ConversationRecord | None:
        """The latest message we sent this person in [since, until], if any (one range query)."""
        ...

    def page(
        self, our_number: str, their_number: str, limit: int = 50, continuation: str | None = None,
    ) -> tuple[list[ConversationRecord], str | None]:
        """One page of the conversation, oldest first, and the token of the next page."""
        ...



class OutboundIndex(Protocol):
    """A conversation's outbound rows: which messages we sent one person, newest first."""

    def outbound_before(self, our_number: str, their_number: str, since: datetime | None,
                        until: datetime | None, tag: str | None, limit: int,
                        before: str | None) -> list[tuple[str, str]]:
        """Up to `limit` (row key, message id) of the outbound rows in [since, until] with
        `tag` (when given) whose row key sorts before `before`, newest first."""
        ...


class ConversationIndex(Protocol):
    """A sender's recent conversations, kept as conversation rows are written."""

    def recent(self, our_number: str, limit: int, continuation: str | None
               ) -> tuple[list[ConversationSummaryRecord], str | None]:
        """One page of the sender's conversations, newest last message first, and the token
        of the next page (None on the last); a token not handed out is a 400."""
        ...


class ConversationBackfill(Protocol):
    """Bringing conversations written in an earlier layout into the current one."""

    def backfill(self, pages: int) -> tuple[int, bool]:
        """Copy up to `pages` more pages of earlier conversation rows, with their senders'
        index (from where the last call stopped); how many rows were copied, and whether all
        of them have been."""
        ...


class Analytics(Protocol):
    """Usage and engagement counters, each fact counted once."""

    def record(self, facts: Sequence[Fact]) -> int:
        """Count each fact exactly once, ever; returns how many were newly counted."""
        ...

    def query(
        self, start: date, end: date, sender: str | None = None, tag: str | None = None,
    ) -> AnalyticsReport:
        """Counters and rates per day from `start` to `end` (both included), with totals."""
        ...



class AwaitingReports(Protocol):
    """Sent messages still waiting for their delivery report."""

    def add(self, sent: Iterable[tuple[str, datetime]]) -> None:
        """Remember (message id, sent at) pairs; upserts, so a resend is harmless."""
        ...

    def remove(self, message_id: str, sent_at: datetime) -> None:
        """Forget a message whose report arrived (best effort: the sweep double-checks)."""
        ...

    def due_buckets(self, now: datetime, timeout: timedelta) -> list[str]:
        """Hour partitions not swept yet whose messages are all older than `timeout`."""
        ...

    def entries(self, bucket: str) -> list[AwaitingRecord]:
        """The messages of one hour partition."""
        ...

    def finish_bucket(self, bucket: str, entries: list[AwaitingRecord]) -> None:
        """Delete a swept partition's rows and move the cursor past it."""
        ...



class InboundLedger(Protocol):
    """Inbound messages seen: an Event Grid redelivery is processed once."""

    def claim(self, inbound_id: str, fields: dict[str, Any]) -> bool:
        """Record the message; False when it was already fully processed (skip it)."""
        ...

    def complete(self, inbound_id: str) -> None:
        """Mark the message fully processed."""
        ...



class AppEvents(Protocol):
    """Where events for the app go (`sms-events`, and the webhook outbox)."""

    def publish(
        self, event_type: str, event_id: str, data: Mapping[str, Any], at: datetime | None = None,
    ) -> dict[str, Any]:
        """Send one event to the app (queue, and webhook outbox when a webhook is set)."""
        ...

    def publish_many(self, events: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
        """Publish several events concurrently (the Queue API has no batch send)."""
        ...



class ProviderIds(Protocol):
    """ACS message id -> our message id, and the reports that matched none yet."""

    def record(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Store (provider id, message id) pairs; one partition each, written concurrently."""
        ...

    def lookup(self, provider_id: str) -> str | None:
        """Our message id for an ACS message id, or None."""
        ...

    def keep_unmatched(self, provider_id: str, event_id: str, event: dict[str, Any]) -> None:
        """Keep a report whose message we do not know (yet), for reconciliation."""
        ...

    def unmatched(self) -> list[UnmatchedReportRecord]:
        """Every kept report (the table holds only the few reports that found no message)."""
        ...

    def forget_unmatched(self, provider_id: str, event_id: str) -> None:
        """Delete a kept report once it has been applied."""
        ...



class StorageProbe(Protocol):
    """Something that tells whether storage answers."""

    def probe(self) -> None:
        """Return when storage answers; raise StorageUnavailable otherwise."""
        ...
