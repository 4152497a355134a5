"""The Messages table: one partition per send request (a "batch"), history on the message row.

Keys (docs/architecture.md): PartitionKey = batch id; RowKey = the 5-digit recipient index for a
message (`00007`). A whole batch is written with entity-group transactions of up to 100
entities. A message's history is a JSON array in its own row's `History` property (entries
`{"n": seq, "s": status, "at": ISO time, "d": detail, "x": data}`), so a status change of one
message is ONE conditional single-entity update guarded by its ETag, with no transaction. An
entry that would take `History` past `_HISTORY_MAX_CHARS` goes to a row of its own,
`00007.00003` for the 3rd (as every entry did before histories moved onto the row), in the same
transaction as the update; a message and its whole history stay one single-partition range query.

The outbox (docs/architecture.md, "Nothing stranded"): a send request's transactions each carry
one more row, `~outbox.<chunk>` (after every message key), listing the chunk's pending messages;
a transaction with ONE pending message (a plain API send) instead marks that message's own row
(`Outbox: true`), so storing it is a single insert and sending it inline a single update that
takes the mark off. The entry is cleared once the messages were sent or their jobs are on the
queue. The sweeper finds those left behind with one range query over the partitions of recent
batches (batch ids start with their UTC time), from a cursor kept in the row `~outbox` / `cursor`.

Kept totals (a campaign run's batch, `is_counted_batch`): every transaction that creates
messages or changes their status also inserts one row `~delta.<random>` holding what it moved
(`{"queued": -49, "sent": 49}`), so the totals change atomically with the messages, and no two
writers ever contend for a counter row. `run_counts` reads the row `~totals` and the deltas not
folded into it yet (one range query) and folds them: one transaction that replaces `~totals`
under its ETag and deletes the deltas it added, so each delta counts exactly once.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from sms_core.adapters.azure_errors import error_code, storage_errors
from sms_core.concurrency import run_all
from sms_core.errors import NotFound, PartlyStored, StorageUnavailable
from sms_core.models.messages import PENDING_STATUSES, MessageEvent, MessageStatus
from sms_core.models.queries import (
    FIRST_SLICE_SECONDS,
    MAX_SLICE_SECONDS,
    BatchCursor,
    MessageFilter,
)
from sms_core.models.records import (
    BATCH_TIME_FORMAT,
    OUTBOX_CHUNK,
    Change,
    Decide,
    MessageRecord,
    OutboxRecord,
    batch_time,
    is_counted_batch,
    split_message_id,
)

ENTITY_GROUP_LIMIT = 100  # Azure Table entity-group transactions hold at most 100 operations.
_OUTBOX_PREFIX = "~outbox."  # '~' sorts after the digits of message and history keys
_CURSOR_KEY = ("~outbox", "cursor")  # no batch id starts with '~'
_MAX_CONFLICT_RETRIES = 8
_CREATE_TRIES = 3
_DELTA_PREFIX = "~delta."  # after every message and history key, before `~outbox.`
_TOTALS_KEY = "~totals"
_FOLD_ABOVE = 20  # deltas a read leaves unfolded
_STORAGE = storage_errors("Message")
# A string property holds 64 KiB (32K UTF-16 code units): entries past this go to rows of
# their own, so a status change of one message stays a single-entity update.
_HISTORY_MAX_CHARS = 30_000


def _row(index: int) -> str:
    return f"{index:05d}"


def _now() -> datetime:
    return datetime.now(UTC)


def _entity(record: MessageRecord) -> dict[str, Any]:
    """The Table entity for a record."""
    e: dict[str, Any] = {
        "PartitionKey": record.batch, "RowKey": _row(record.index), "Kind": "message",
        "From": record.sender, "To": record.to, "Body": record.body, "Status": str(record.status),
        "InitialStatus": str(record.initial_status), "Segments": record.segments,
        "Encoding": record.encoding, "CreatedAt": record.created_at,
        "UpdatedAt": record.updated_at, "DeliveryReport": record.delivery_report,
        "Seq": record.seq,
    }
    if record.optout_exempt:
        e["OptOutExempt"] = True
    if record.cancel_requested:
        e["CancelRequested"] = True
    if record.report_ids:
        e["ReportIds"] = json.dumps(record.report_ids)
    if record.history:
        e["History"] = record.history
    if record.outbox:
        e["Outbox"] = True
    optional = {"Tag": record.tag, "Error": record.error, "SendAt": record.send_at,
                "SentAt": record.sent_at, "ProviderMessageId": record.provider_message_id,
                "RepeatabilityId": record.repeatability_id, "FirstSent": record.first_sent,
                "FirstSentAt": record.first_sent_at}
    e.update({k: v for k, v in optional.items() if v is not None})
    return e

def _record(e: Any) -> MessageRecord:
    """A record from a Table entity (keeps its ETag for conditional updates)."""
    return MessageRecord(
        batch=e["PartitionKey"], index=int(e["RowKey"]), sender=e["From"], to=e["To"],
        body=e["Body"], status=MessageStatus(e["Status"]),
        initial_status=MessageStatus(e["InitialStatus"]), segments=int(e["Segments"]),
        encoding=e["Encoding"], created_at=e["CreatedAt"], updated_at=e["UpdatedAt"],
        tag=e.get("Tag"), delivery_report=bool(e.get("DeliveryReport", True)),
        optout_exempt=bool(e.get("OptOutExempt", False)),
        cancel_requested=bool(e.get("CancelRequested", False)),
        error=e.get("Error"), send_at=e.get("SendAt"), sent_at=e.get("SentAt"),
        provider_message_id=e.get("ProviderMessageId"),
        repeatability_id=e.get("RepeatabilityId"), first_sent=e.get("FirstSent"),
        first_sent_at=e.get("FirstSentAt"),
        seq=int(e.get("Seq", 0)),
        report_ids=json.loads(e["ReportIds"]) if e.get("ReportIds") else [],
        history=e.get("History"), outbox=bool(e.get("Outbox", False)),
        etag=e.metadata.get("etag") if hasattr(e, "metadata") else None,
    )


def _history_event(seq: int, change: Change, status: MessageStatus, at: datetime
                   ) -> dict[str, Any]:
    """One history entry as the message row keeps it (`_HISTORY_KEYS`)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    event: dict[str, Any] = {"n": seq, "s": str(status), "at": at.isoformat()}
    if change.detail:
        event["d"] = change.detail
    if change.data:
        event["x"] = change.data
    return event


def _appended(history: str | None, event: dict[str, Any]) -> str | None:
    """The row's history with `event` added (a JSON array), or None when it would not fit."""
    entry = json.dumps(event, separators=(",", ":"))
    grown = f"[{entry}]" if not history else f"{history[:-1]},{entry}]"
    return grown if len(grown) <= _HISTORY_MAX_CHARS else None


def _event_row(batch: str, index: int, event: dict[str, Any]) -> dict[str, Any]:
    """A history entry that no longer fits its message row, as a row of its own."""
    row: dict[str, Any] = {"PartitionKey": batch, "RowKey": f"{_row(index)}.{event['n']:05d}",
                           "Kind": "event", "Status": event["s"],
                           "At": datetime.fromisoformat(event["at"])}
    if "d" in event:
        row["Detail"] = event["d"]
    if "x" in event:
        row["Data"] = json.dumps(event["x"], separators=(",", ":"))
    return row


def _embedded_events(history: str | None) -> list[tuple[datetime, int, MessageEvent]]:
    return [(datetime.fromisoformat(e["at"]), int(e["n"]), MessageEvent(
        status=MessageStatus(e["s"]), at=datetime.fromisoformat(e["at"]), detail=e.get("d"),
        data=e.get("x"))) for e in json.loads(history)] if history else []


def _row_event(e: Any) -> tuple[datetime, int, MessageEvent]:
    # Rows written before histories moved onto the message row, and those that overflowed it.
    return (e["At"], int(str(e["RowKey"]).rpartition(".")[2]), MessageEvent(
        status=MessageStatus(e["Status"]), at=e["At"], detail=e.get("Detail"),
        data=json.loads(e["Data"]) if e.get("Data") else None))


def _outbox_record(e: Any) -> OutboxRecord:
    """An outbox row, or a message row marked as its own outbox entry."""
    if e.get("Kind") == "message":
        index = int(e["RowKey"])
        return OutboxRecord(batch=e["PartitionKey"], chunk=index // OUTBOX_CHUNK,
                            indices=[index], send_at=e.get("SendAt"),
                            created_at=e["CreatedAt"], on_message=True)
    return OutboxRecord(batch=e["PartitionKey"], chunk=int(e["RowKey"][len(_OUTBOX_PREFIX):]),
                        indices=[int(i) for i in json.loads(e["Indices"])],
                        send_at=e.get("SendAt"), created_at=e["CreatedAt"])


def _tally(records: Iterable[MessageRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        counts[str(r.status)] = counts.get(str(r.status), 0) + 1
    return counts


def _delta(batch: str, moved: dict[str, int]) -> tuple[str, dict[str, Any]]:
    """The insert of a counted batch's delta row (what one transaction moved)."""
    return ("create", {"PartitionKey": batch, "RowKey": f"{_DELTA_PREFIX}{uuid.uuid4().hex}",
                       "Kind": "delta", **{f"n_{k}": v for k, v in moved.items() if v}})


def _counts_of(row: Any) -> dict[str, int]:
    return {str(k)[2:]: int(v) for k, v in row.items() if str(k).startswith("n_")}


class MessageStore:
    """Reads and writes messages and their history."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    # -- writes -------------------------------------------------------------------------------

    def create_batch(self, records: Sequence[MessageRecord], *,
                     outbox: bool = False) -> list[MessageRecord]:
        """Insert the records of one batch with entity-group transactions (run in parallel).

        With `outbox`, each transaction (99 messages) also writes the outbox row of its pending
        messages. Idempotent: a chunk that already exists (a retry of the same request) is read
        back and returned as stored, so a replay answers with what was first written.
        """
        if not records:
            return []
        if outbox:
            grouped: dict[int, list[MessageRecord]] = {}
            for r in records:
                grouped.setdefault(r.index // OUTBOX_CHUNK, []).append(r)
            chunks: list[tuple[int | None, list[MessageRecord]]] = sorted(grouped.items())
        else:
            # A counted batch's transactions carry their totals' delta row too.
            size = ENTITY_GROUP_LIMIT - (1 if is_counted_batch(records[0].batch) else 0)
            chunks = [(None, list(records[i:i + size])) for i in range(0, len(records), size)]
        if not outbox:  # a campaign chunk: its job is retried whole
            results = run_all(lambda c: self._create_chunk(c[1], c[0]), chunks)
            return [r for chunk in results for r in chunk]
        tried = run_all(lambda c: self._create_chunk_or_none(c[1], c[0]), chunks)
        stored = [r for chunk in tried if chunk is not None for r in chunk]
        if all(chunk is not None for chunk in tried):
            return stored
        if not stored:
            raise StorageUnavailable(f"Message storage failed for batch {records[0].batch}")
        raise PartlyStored(f"Message storage failed for part of batch {records[0].batch}",
                           stored)

    def _create_chunk_or_none(self, chunk: Sequence[MessageRecord], outbox_chunk: int | None
                              ) -> list[MessageRecord] | None:
        # Tried again at once (a retry reads back what the first try may have written): a
        # request answers 503 only when nothing of it could be stored.
        for _ in range(_CREATE_TRIES):
            try:
                return self._create_chunk(chunk, outbox_chunk)
            except StorageUnavailable:
                continue
        return None

    def _create_chunk(self, chunk: Sequence[MessageRecord],
                      outbox_chunk: int | None) -> list[MessageRecord]:
        counted = is_counted_batch(chunk[0].batch)
        pending = [r for r in chunk if r.status in PENDING_STATUSES]
        # One pending message is its own outbox entry: a single insert, no transaction.
        marked = outbox_chunk is not None and len(pending) == 1 and not counted
        if marked:
            pending[0].outbox = True
        ops: list[Any] = [("create", _entity(r)) for r in chunk]
        if counted:
            ops.append(_delta(chunk[0].batch, _tally(chunk)))
        if outbox_chunk is not None and pending and not marked:
            ops.append(("create", {
                "PartitionKey": chunk[0].batch, "RowKey": f"{_OUTBOX_PREFIX}{outbox_chunk:05d}",
                "Kind": "outbox", "Indices": json.dumps([r.index for r in pending]),
                "CreatedAt": _now(), **({"SendAt": pending[0].send_at}
                                        if pending[0].send_at else {})}))
        with _STORAGE:
            try:
                results = ([self._table.create_entity(ops[0][1])] if len(ops) == 1
                           else self._table.submit_transaction(ops))
                # The new ETags let the sender inline change them without reading them back.
                for r, res in zip(chunk, results, strict=False):
                    r.etag = res.get("etag") if isinstance(res, dict) else None
                return list(chunk)
            except TableTransactionError as exc:
                if error_code(exc) != "EntityAlreadyExists":
                    raise
            except ResourceExistsError:
                pass
        stored = {r.index: r for r in self.load(chunk[0].batch,
                                                [r.index for r in chunk])}
        missing = [r for r in chunk if r.index not in stored]
        if missing:  # part of the chunk exists: insert the rest one by one
            for r in missing:
                with _STORAGE:
                    try:
                        if counted:
                            self._table.submit_transaction([("create", _entity(r)),
                                                            _delta(r.batch, _tally([r]))])
                        else:
                            self._table.create_entity(_entity(r))
                        stored[r.index] = r
                    except (HttpResponseError, TableTransactionError) as exc:
                        if getattr(exc, "status_code", None) != 409 and \
                                error_code(exc) != "EntityAlreadyExists":
                            raise
                        stored.update({x.index: x for x in self.load(r.batch, [r.index])})
        return [stored[r.index] for r in chunk]

    def apply(self, batch: str, indices: Iterable[int], decide: Decide,
              preloaded: Sequence[MessageRecord] | None = None, *,
              clear_outbox: bool = False) -> list[MessageRecord]:
        """Apply `decide` to each message of the batch, atomically per message and ETag-guarded.

        On a concurrent change (412) the affected messages are reloaded and decided again, so a
        delivery report racing the dispatcher can never be overwritten by a stale write.
        Returns the records as they are after the change (changed or not). With
        `clear_outbox`, the outbox entries of `indices` are cleared too: a mark on a message row
        with that message's write, an outbox row in the first transaction when it has room (an
        inline send: one write for the status and the outbox), else after.
        """
        wanted = sorted(set(indices))
        current = list(preloaded) if preloaded is not None else self.load(batch, wanted)
        outbox: list[str] = []
        if clear_outbox:
            marked = {r.index // OUTBOX_CHUNK for r in current if r.outbox}
            outbox = self._outbox_keys(i for i in wanted if i // OUTBOX_CHUNK not in marked)
        done = self._apply(batch, wanted, decide, current, outbox, clear_outbox)
        if outbox:  # not folded into a transaction (no room, or nothing changed)
            self._delete_outbox_rows(batch, outbox)
        if clear_outbox and (still := [r.index for r in done if r.outbox]):
            self._unmark(batch, still)  # nothing changed them, so no write carried the mark off
        return done

    def _apply(self, batch: str, wanted: list[int], decide: Decide,
               preloaded: Sequence[MessageRecord], outbox: list[str], unmark: bool
               ) -> list[MessageRecord]:
        current = {r.index: r for r in preloaded}
        result: dict[int, MessageRecord] = {}
        pending = [i for i in wanted if i in current]
        for _ in range(_MAX_CONFLICT_RETRIES):
            conflicted: list[int] = []
            plan: list[tuple[MessageRecord, Change]] = []
            for i in pending:
                rec = current[i]
                change = decide(rec)
                if change is None:
                    result[i] = rec
                else:
                    plan.append((rec, change))
            per_tx = (ENTITY_GROUP_LIMIT - 1) // 2  # message update + history event (+ delta)
            for start in range(0, len(plan), per_tx):
                part = plan[start:start + per_tx]
                ok = self._commit(batch, part, outbox, unmark)
                for rec, _change in part:
                    if ok:
                        result[rec.index] = ok[rec.index]
                    else:
                        conflicted.append(rec.index)
            if not conflicted:
                return [result[i] for i in wanted if i in result]
            current = {r.index: r for r in self.load(batch, conflicted)}
            pending = [i for i in conflicted if i in current]
        raise StorageUnavailable(f"Messages of batch {batch} kept changing; giving up for now")

    def _outbox_keys(self, indices: Iterable[int]) -> list[str]:
        return [f"{_OUTBOX_PREFIX}{c:05d}" for c in sorted({i // OUTBOX_CHUNK for i in indices})]

    def _commit(self, batch: str, part: Sequence[tuple[MessageRecord, Change]],
                outbox: list[str], unmark: bool) -> dict[int, MessageRecord] | None:
        """One transaction for `part`; also deletes the `outbox` rows when they fit (and then
        empties the list). None when a message changed meanwhile."""
        ops, updated = self._ops(batch, part, unmark)
        if outbox and len(ops) + len(outbox) <= ENTITY_GROUP_LIMIT:
            with_outbox = ops + [("delete", {"PartitionKey": batch, "RowKey": k})
                                 for k in outbox]
            if self._submit(updated, with_outbox):
                outbox.clear()
                return updated
            # A row gone (the sweeper cleared it) fails the whole transaction like a message
            # that changed: try without the outbox rows, which are then deleted on their own.
        return updated if self._submit(updated, ops) else None

    def _ops(self, batch: str, part: Sequence[tuple[MessageRecord, Change]], unmark: bool
             ) -> tuple[list[Any], dict[int, MessageRecord]]:
        now = _now()
        ops: list[Any] = []
        updated: dict[int, MessageRecord] = {}
        for rec, change in part:
            new = MessageRecord(**{**rec.__dict__})
            for k, v in change.fields.items():
                setattr(new, k, v)
            new.updated_at = now
            if unmark:
                new.outbox = False
            if change.status is not None or change.note:
                new.status = change.status or rec.status
                new.seq = rec.seq + 1
                event = _history_event(new.seq, change, change.noted_status or new.status,
                                       change.noted_at or now)
                history = _appended(rec.history, event)
                if history is not None:
                    new.history = history
                else:  # the row's history is full: an event row of its own
                    ops.append(("create", _event_row(batch, rec.index, event)))
            ops.append(("update", _entity(new),
                        {"mode": UpdateMode.REPLACE, "etag": rec.etag,
                         "match_condition": MatchConditions.IfNotModified}))
            updated[rec.index] = new
        if is_counted_batch(batch):
            moved: dict[str, int] = {}
            for rec, _change in part:
                if updated[rec.index].status != rec.status:
                    moved[str(rec.status)] = moved.get(str(rec.status), 0) - 1
                    new_status = str(updated[rec.index].status)
                    moved[new_status] = moved.get(new_status, 0) + 1
            if any(moved.values()):
                ops.append(_delta(batch, moved))
        return ops, updated

    def _submit(self, updated: dict[int, MessageRecord], ops: list[Any]) -> bool:
        """Submit the operations; False when a message changed meanwhile (or a row to delete is
        gone). On success the updated records carry their new ETags."""
        with _STORAGE:
            try:
                results = (self._single_update(ops[0]) if len(ops) == 1
                           else self._table.submit_transaction(ops))
            except ResourceModifiedError:
                return False
            except TableTransactionError as exc:
                if error_code(exc) in ("UpdateConditionNotSatisfied", "EntityAlreadyExists",
                                       "ResourceNotFound"):
                    return False
                raise
        # Keep the new ETags so the caller can chain another conditional change.
        by_row = {}
        for (_, entity, *_rest), res in zip(ops, results, strict=True):
            by_row[entity["RowKey"]] = res.get("etag") if isinstance(res, dict) else None
        for rec in updated.values():
            rec.etag = by_row.get(_row(rec.index)) or rec.etag
        return True

    def _single_update(self, op: Any) -> list[Any]:
        # A lone conditional update needs no transaction; azure-core would build two thread
        # pools for the batch request, which costs more than the storage call itself.
        _, entity, options = op
        return [self._table.update_entity(entity, **options)]

    # -- the outbox ---------------------------------------------------------------------------

    def clear_outbox(self, batch: str, indices: Iterable[int], *,
                     on_messages: bool = False) -> None:
        """These messages are on their way: delete their transactions' outbox rows, or with
        `on_messages` the marks on their own rows."""
        if on_messages:
            self._unmark(batch, list(indices))
        else:
            self._delete_outbox_rows(batch, self._outbox_keys(indices))

    def _unmark(self, batch: str, indices: Sequence[int]) -> None:
        for i in indices:
            # A merge of the one property: no ETag needed, nothing else changes.
            with _STORAGE, contextlib.suppress(ResourceNotFoundError):
                self._table.update_entity({"PartitionKey": batch, "RowKey": _row(i),
                                           "Outbox": False}, mode=UpdateMode.MERGE)

    def _delete_outbox_rows(self, batch: str, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), ENTITY_GROUP_LIMIT):
            part = keys[start:start + ENTITY_GROUP_LIMIT]
            with _STORAGE:
                try:
                    if len(part) == 1:
                        self._table.delete_entity(batch, part[0])
                    else:
                        self._table.submit_transaction(
                            [("delete", {"PartitionKey": batch, "RowKey": k}) for k in part])
                    continue
                except TableTransactionError as exc:
                    if error_code(exc) != "ResourceNotFound":
                        raise
            # One of them was cleared already (the sweeper, a retry): the rest one by one.
            for k in part:
                with _STORAGE:
                    self._table.delete_entity(batch, k)  # a missing entity is no error here

    def stranded(self, since: datetime, until: datetime) -> list[OutboxRecord]:
        """Outbox rows written before `until` in batches created from `since` on."""
        with _STORAGE:
            try:
                # The SDK substitutes a parameter only as a word of its own: spaced brackets.
                rows = list(self._table.query_entities(
                    "PartitionKey ge @lo and PartitionKey lt @hi and ( ( RowKey ge @rlo and "
                    "RowKey lt @rhi ) or Outbox eq true )",
                    parameters={"lo": since.strftime(BATCH_TIME_FORMAT),
                                "hi": until.strftime(BATCH_TIME_FORMAT) + "~",
                                "rlo": _OUTBOX_PREFIX, "rhi": _OUTBOX_PREFIX + "~"}))
            except ResourceNotFoundError:  # no table yet: nothing was ever sent
                return []
        return [_outbox_record(e) for e in rows if e["CreatedAt"] < until]

    def outbox_cursor(self) -> datetime | None:
        """Up to when the sweeper last found every outbox row (None before its first run)."""
        with _STORAGE:
            try:
                return self._table.get_entity(*_CURSOR_KEY)["Until"]  # type: ignore[no-any-return]
            except ResourceNotFoundError:
                return None

    def move_outbox_cursor(self, until: datetime) -> None:
        """Remember that every outbox row written before `until` was handled."""
        with _STORAGE:
            self._table.upsert_entity({"PartitionKey": _CURSOR_KEY[0], "RowKey": _CURSOR_KEY[1],
                                       "Until": until}, mode=UpdateMode.REPLACE)

    # -- reads --------------------------------------------------------------------------------

    def load(self, batch: str, indices: Sequence[int] | None = None) -> list[MessageRecord]:
        """The messages of a batch (only those in `indices` if given), one partition query; one
        point read for a single message (a single-recipient job)."""
        if indices and len(set(indices)) == 1:
            return self._one(batch, indices[0])
        filt = "PartitionKey eq @pk and Kind eq 'message'"
        params: dict[str, Any] = {"pk": batch}
        if indices:
            filt += " and RowKey ge @lo and RowKey le @hi"
            params.update(lo=_row(min(indices)), hi=_row(max(indices)))
        with _STORAGE:
            rows = [_record(e) for e in
                    self._table.query_entities(filt, parameters=params)]
        if indices:
            keep = set(indices)
            rows = [r for r in rows if r.index in keep]
        return rows

    def _one(self, batch: str, index: int) -> list[MessageRecord]:
        """The message at `index` of a batch, as a list of it or of nothing: one point read
        (cheaper than any query: Azurite scans its whole table for one, and the service
        serves a point read from its index)."""
        with _STORAGE:
            try:
                e = self._table.get_entity(batch, _row(index))
            except ResourceNotFoundError:  # no such message, or no table yet
                return []
        return [_record(e)] if e.get("Kind") == "message" else []

    def find_recipient(self, batch: str, first: int, last: int, to: str
                       ) -> MessageRecord | None:
        """The message to `to` among indices `first`..`last` of a batch: one range query over
        at most one send call's rows (a number appears once in a batch); a point read when the
        call had one recipient."""
        if first == last:
            return next((r for r in self._one(batch, first) if r.to == to), None)
        with _STORAGE:
            try:
                rows = [_record(e) for e in self._table.query_entities(
                    "PartitionKey eq @pk and RowKey ge @lo and RowKey le @hi and "
                    "Kind eq 'message' and To eq @to",
                    parameters={"pk": batch, "lo": _row(first), "hi": _row(last), "to": to})]
            except ResourceNotFoundError:  # no table yet
                return None
        return rows[0] if rows else None

    def pending(self, batch: str) -> list[MessageRecord]:
        """The messages of a batch still queued or scheduled (one partition query)."""
        with _STORAGE:
            return [_record(e) for e in self._table.query_entities(
                "PartitionKey eq @pk and Kind eq 'message' and "
                "(Status eq 'queued' or Status eq 'scheduled')", parameters={"pk": batch})]

    def status_counts(self, batch: str) -> dict[str, int]:
        """How many messages of a batch are in each status (reads only the Status column)."""
        counts: dict[str, int] = {}
        with _STORAGE:
            for e in self._table.query_entities("PartitionKey eq @pk and Kind eq 'message'",
                                                parameters={"pk": batch}, select=["Status"]):
                counts[e["Status"]] = counts.get(e["Status"], 0) + 1
        return counts

    def run_counts(self, batch: str) -> dict[str, int]:
        """The kept status totals of a counted batch: `~totals` plus the deltas not folded yet
        (one range query), folded when there are more than a few (best effort: a fold that
        loses a race leaves them for the next read)."""
        with _STORAGE:
            try:
                rows = list(self._table.query_entities(
                    "PartitionKey eq @pk and RowKey ge @lo and RowKey le @hi",
                    parameters={"pk": batch, "lo": _DELTA_PREFIX, "hi": _TOTALS_KEY}))
            except ResourceNotFoundError:
                rows = []
        totals = next((r for r in rows if r["RowKey"] == _TOTALS_KEY), None)
        deltas = [r for r in rows if str(r["RowKey"]).startswith(_DELTA_PREFIX)]
        counts = _counts_of(totals) if totals is not None else {}
        for d in deltas:
            for name, value in _counts_of(d).items():
                counts[name] = counts.get(name, 0) + value
        if len(deltas) > _FOLD_ABOVE:
            self._fold(batch, totals, deltas)
        return {k: v for k, v in counts.items() if v}

    def _fold(self, batch: str, totals: Any, deltas: list[Any]) -> None:
        """Add deltas into `~totals` and delete them, in transactions of 99 (each ETag-guarded
        on `~totals`, so a delta is folded once or not at all)."""
        counts = _counts_of(totals) if totals is not None else {}
        etag: str | None = totals.metadata["etag"] if totals is not None else None
        for start in range(0, len(deltas), ENTITY_GROUP_LIMIT - 1):
            part = deltas[start:start + ENTITY_GROUP_LIMIT - 1]
            for d in part:
                for name, value in _counts_of(d).items():
                    counts[name] = counts.get(name, 0) + value
            row = {"PartitionKey": batch, "RowKey": _TOTALS_KEY, "Kind": "totals",
                   **{f"n_{k}": v for k, v in counts.items()}}
            head: Any = (("update", row, {"mode": UpdateMode.REPLACE, "etag": etag,
                                          "match_condition": MatchConditions.IfNotModified})
                         if etag is not None else ("create", row))
            # A delta already deleted (folded by another read) fails the whole transaction.
            ops = [head, *(("delete", {"PartitionKey": batch, "RowKey": d["RowKey"]})
                           for d in part)]
            try:
                results = self._table.submit_transaction(ops)
            except (TableTransactionError, AzureError):
                # Another read folded first, or the call failed (a POST whose connection
                # dropped is not retried by azure-core): the deltas stay for the next read,
                # which counts them as they are. A read never fails because of its fold.
                return
            etag = results[0].get("etag") if isinstance(results[0], dict) else None
            if etag is None:
                return  # no ETag to guard the next part by: the next read folds the rest

    def by_ids(self, public_ids: Sequence[str]) -> dict[str, MessageRecord]:
        """The messages of these ids that exist: one range query per batch, concurrently."""
        wanted: dict[str, list[int]] = {}
        for public_id in public_ids:
            batch, index = split_message_id(public_id)
            wanted.setdefault(batch, []).append(index)
        found = run_all(lambda item: self.load(item[0], item[1]), list(wanted.items()))
        return {r.id: r for records in found for r in records}

    def recent(self, since: datetime, until: datetime, match: MessageFilter, limit: int,
               after: BatchCursor | None) -> tuple[list[MessageRecord], BatchCursor | None]:
        """Messages of the batches created in [since, until], newest batch first, walking back
        in time slices: each slice is one PartitionKey range query over batch ids (they start
        with their UTC time), its filters applied by the service; a slice that leaves the page
        short is followed by one twice as long. A campaign run's batch starts with its time as
        well; the outbox cursor (`~outbox`) and runs started before runs recorded their batch
        (`c...`) sort after every batch id and fall outside the ranges."""
        found: list[MessageRecord] = []
        step = after.slice_seconds if after else FIRST_SLICE_SECONDS
        top = batch_time(after.batch) if after else until
        assert top is not None  # decode_search_cursor accepts batch ids with a time only
        # The SDK substitutes a parameter only as a word of its own: hence the spaced brackets.
        upper = ("( PartitionKey lt @pk or ( PartitionKey eq @pk and RowKey gt @rk ) )", {
            "pk": after.batch, "rk": _row(after.index)}) if after else (
            "PartitionKey lt @pk", {"pk": until.strftime(BATCH_TIME_FORMAT) + "~"})
        while True:
            low = max(since, top - timedelta(seconds=step))
            rows = self._slice(low.strftime(BATCH_TIME_FORMAT), upper, match)
            # Newest batch first; a batch's messages in request order (they share one time).
            rows.sort(key=lambda r: r.index)
            rows.sort(key=lambda r: r.batch, reverse=True)
            room = limit - len(found)
            found += rows[:room]
            if len(rows) > room or (len(found) == limit and low > since):
                # Full: the next page starts after the last one returned (possibly empty, when
                # the full page ended exactly at the end of the window's messages).
                last = found[-1]
                return found, BatchCursor(last.batch, last.index, step)
            if low <= since:
                return found, None
            top, step = low, min(step * 2, MAX_SLICE_SECONDS)
            upper = ("PartitionKey lt @pk", {"pk": low.strftime(BATCH_TIME_FORMAT)})

    def awaiting_report(self, since: datetime, until: datetime) -> list[MessageRecord]:
        """Messages still `sent` that asked for a delivery report, in the batches created in
        [since, until): one PartitionKey range query with the status filtered by the service
        (the expiry timer's read of the messages that have no `AwaitingReports` row)."""
        found = self._slice(since.strftime(BATCH_TIME_FORMAT),
                            ("PartitionKey lt @pk", {"pk": until.strftime(BATCH_TIME_FORMAT)}),
                            MessageFilter(status=MessageStatus.SENT))
        return [r for r in found if r.delivery_report]

    def _slice(self, low_key: str, upper: tuple[str, dict[str, Any]],
               match: MessageFilter) -> list[MessageRecord]:
        """The messages matching `match` in the batches from `low_key` up to `upper`."""
        query = f"PartitionKey ge @low and {upper[0]} and Kind eq 'message'"
        params: dict[str, Any] = {"low": low_key, **upper[1]}
        for column, name, value in (("From", "sender", match.sender),
                                    ("Status", "status", match.status and str(match.status)),
                                    ("Tag", "tag", match.tag)):
            if value is not None:
                query += f" and {column} eq @{name}"
                params[name] = value
        with _STORAGE:
            try:
                return [_record(e) for e in self._table.query_entities(query, parameters=params)]
            except ResourceNotFoundError:  # no table yet: nothing was ever sent
                return []

    def with_history(self, public_id: str) -> tuple[MessageRecord, list[MessageEvent]]:
        """One message and the events of its history, oldest first (one range query);
        NotFound when there is no such message."""
        batch, index = split_message_id(public_id)
        with _STORAGE:
            try:
                entities = list(self._table.query_entities(
                    "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                    parameters={"pk": batch, "lo": _row(index), "hi": _row(index) + "/"}))
            except ResourceNotFoundError:  # no table yet: no such message
                entities = []
        msg = next((e for e in entities if e.get("Kind") == "message"), None)
        if msg is None:
            raise NotFound(f"No message with id '{public_id}'.")
        # In time order: a step recorded late (`Change.noted_at`) sits where it happened.
        events = [*_embedded_events(msg.get("History")),
                  *(_row_event(e) for e in entities if e.get("Kind") == "event")]
        events.sort(key=lambda item: item[:2])
        return _record(msg), [event for _at, _seq, event in events]
