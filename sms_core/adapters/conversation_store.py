"""Two-way conversations: both directions between one of our numbers and one person.

Table `Conversations`, one partition per sender of ours, `~index|<our number>` ('~' sorts after
every number; the name is from when the partition held the index alone). It holds three kinds
of rows, all written together in one entity-group transaction per sender (up to 33 messages,
three operations each: the service takes 100; concurrent writers for one sender in this
instance share it, through `sms_core.concurrency.GroupCommit`), without reading anything first:

- a conversation row per message, `c|<their number>|<UTC time, sortable>|<in|out>|<message id>`,
  so a conversation is one range of one partition read in time order, paged by its row key;
- a listing row `t|<inverted time>|<their number>` with the message, so a plain ascending read
  meets the newest conversation first;
- a person row `p|<their number>|<inverted time>`, so the person's newest entry is the first
  row of a short range.

A message is thus one transaction shared with the sender's other messages of the moment, where
an earlier layout (a partition per conversation, `<our number>|<their number>`, keyed by the
row key's part after `c|<their number>|`) wrote its row on its own and the index in a second
request. The timer `backfill_conversations` copies rows of that layout into this one (a few
pages a run); until it has read them all, reads look in both and merge on the row key.

Writes are idempotent upserts: a redelivered event rewrites the same rows, and an old event
never moves a conversation back, since a listing row is shown only when it is its person's
newest. Writers never contend (an earlier design moved one row per person under its ETag and
gave up when twelve messages of one person raced). Reading a page of the sender's list checks
each person met against their person rows (one top-1 query each, side by side) and deletes the
older listing and person rows it met, so the index stays about one pair of rows per person once
read.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from sms_core.adapters.azure_errors import storage_errors
from sms_core.concurrency import GroupCommit, run_all
from sms_core.errors import FieldError, RequestInvalid
from sms_core.models.queries import MAX_PAGE_SIZE
from sms_core.models.records import ConversationRecord, ConversationSummaryRecord

_STORAGE = storage_errors("Conversation")
log = logging.getLogger(__name__)


_TRANSACTION_OPS = 100  # the service's limit for one entity-group transaction
_GROUP_MESSAGES = 33  # messages written together at most: three operations each
_READ_ROUNDS = 5  # listing reads per page at most, of _READ_SIZE rows each
_READ_SIZE = 200
# Where the copy of the earlier layout's rows stands; sorts after every number and outside
# '~index|'. (`~index-backfill` was the position of an earlier pass that only indexed them.)
_BACKFILL_KEY = ("~conversations-backfill", "state")
_BACKFILL_PAGE = 1000
# How long a reader trusts "the copy is not finished" before reading the position again.
_BACKFILL_RECHECK_S = 15.0
# Microseconds since the epoch are below 10**17 until the year 5138: inverted, newest first.
_INVERT_FROM = 10**17
_MAX_TOKEN_KEY = 300
# A conversation row's key within its conversation (`ConversationRecord.row_key`).
_CONVERSATION_KEY = re.compile(r"\d{8}T\d{6}\.\d{6}Z\|(inb|out)\|[!-~]+")
_LISTING_KEY = re.compile(r"t\|\d{18}\|[!-~]+")


def _sender_partition(our_number: str) -> str:
    return f"~index|{our_number}"


def _earlier_partition(our_number: str, their_number: str) -> str:
    """The partition of a conversation in the earlier layout (one per conversation)."""
    return f"{our_number}|{their_number}"


def _conversation_prefix(their_number: str) -> str:
    return f"c|{their_number}|"


def _inverted(moment: datetime) -> str:
    micros = int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)
    return f"{_INVERT_FROM - micros:018d}"


def _row_time(moment: datetime) -> str:
    """The time prefix of a row key (`ConversationRecord.row_key`)."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _record_of(our_number: str, their_number: str, row: Any) -> ConversationRecord:
    return ConversationRecord(our_number=our_number, their_number=their_number,
                              direction=row["Direction"], message_id=row["MessageId"],
                              text=row["Text"], at=row["At"], keyword=row.get("Keyword"),
                              tag=row.get("Tag"), length=row.get("TextLength"))


def _invalid_token() -> RequestInvalid:
    return RequestInvalid("The continuation token is not valid.",
                          [FieldError("continuationToken", "not a token from this API")])


def _encode_after(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def _decode_after(value: str, shape: re.Pattern[str]) -> str:
    """The key a token handed out continues after (of that `shape`); anything else is a 400
    naming `continuationToken`."""
    try:
        key = base64.urlsafe_b64decode(value.encode()).decode()
    except (ValueError, binascii.Error):
        key = ""
    if len(key) >= _MAX_TOKEN_KEY or not shape.fullmatch(key):
        raise _invalid_token()
    return key


def _operations(write: Iterable[ConversationRecord], listed: Iterable[ConversationRecord]
                ) -> dict[tuple[str, str], Any]:
    """The upserts of the conversation rows of `write` and the listing and person rows of
    `listed`, by key: a transaction may touch a row only once (the last entry for a key wins)."""
    ops: dict[tuple[str, str], Any] = {}
    replace = {"mode": UpdateMode.REPLACE}
    for e in write:
        row: dict[str, Any] = {"PartitionKey": _sender_partition(e.our_number),
                               "RowKey": _conversation_prefix(e.their_number) + e.row_key(),
                               "Direction": e.direction, "MessageId": e.message_id,
                               "Text": e.text, "At": e.at}
        if e.keyword:
            row["Keyword"] = e.keyword
        if e.tag:
            row["Tag"] = e.tag
        if e.length is not None:
            row["TextLength"] = e.length
        ops[row["PartitionKey"], row["RowKey"]] = ("upsert", row, replace)
    for e in listed:
        pk, at = _sender_partition(e.our_number), _inverted(e.at)
        listing = f"t|{at}|{e.their_number}"
        ops[pk, listing] = ("upsert", {
            "PartitionKey": pk, "RowKey": listing, "Their": e.their_number,
            "LastMessage": e.text, "LastDirection": e.direction, "LastAt": e.at,
            "LastMessageId": e.message_id}, replace)
        person = f"p|{e.their_number}|{at}"
        ops[pk, person] = ("upsert", {"PartitionKey": pk, "RowKey": person}, replace)
    return ops


class ConversationStore:
    """Reads and writes conversation entries."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        # Concurrent writers for one sender share a transaction.
        self._together: GroupCommit[str, ConversationRecord, None] = GroupCommit(
            self._write_together, limit=_GROUP_MESSAGES)
        self._copied = False  # every row of the earlier layout is in this one (never undone)
        self._copy_checked = -_BACKFILL_RECHECK_S  # monotonic time of the last look

    def record(self, entries: Iterable[ConversationRecord]) -> None:
        """Upsert entries with their senders' listing and person rows: one transaction per
        sender and 33 entries, shared with concurrent callers (`_together`)."""
        groups: dict[str, list[ConversationRecord]] = {}
        for e in entries:
            groups.setdefault(e.our_number, []).append(e)
        with _STORAGE:
            run_all(lambda group: self._together.submit(*group), list(groups.items()))

    def _write_together(self, our_number: str, batches: list[list[ConversationRecord]]
                        ) -> list[None]:
        entries = [e for batch in batches for e in batch]
        self._submit(_operations(entries, entries))
        return [None] * len(batches)

    def _submit(self, ops: dict[tuple[str, str], Any]) -> None:
        """Write the operations: one transaction per partition and 100 operations, side by
        side, none reading first."""
        by_partition: dict[str, list[Any]] = {}
        for (pk, _), op in ops.items():
            by_partition.setdefault(pk, []).append(op)
        run_all(self._table.submit_transaction, [
            part[i:i + _TRANSACTION_OPS] for part in by_partition.values()
            for i in range(0, len(part), _TRANSACTION_OPS)])

    def _earlier_layout_read(self) -> bool:
        """Whether reads must also look in the earlier layout: until the backfill has copied
        all of it, read from its position row at most every `_BACKFILL_RECHECK_S` seconds."""
        if self._copied:
            return False
        now = time.monotonic()
        if now - self._copy_checked >= _BACKFILL_RECHECK_S:
            try:
                state = self._table.get_entity(*_BACKFILL_KEY)
            except ResourceNotFoundError:
                state = None
            self._copied = bool(state is not None and state.get("Done"))
            self._copy_checked = now
        return not self._copied

    def _range(self, pk: str, lo: str, hi: str, extra: str = "", top: int | None = None,
               select: list[str] | None = None, params: dict[str, str] | None = None
               ) -> list[Any]:
        """Rows of one partition with `lo` < RowKey < `hi` (and the filter `extra`), in key
        order, the first `top` of them when given."""
        try:
            rows = self._table.query_entities(
                "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi" + extra,
                parameters={"pk": pk, "lo": lo, "hi": hi, **(params or {})}, select=select,
                results_per_page=top)
            return list(itertools.islice(rows, top) if top is not None else rows)
        except ResourceNotFoundError:  # no table yet: nothing written
            return []

    def _conversation_rows(self, our_number: str, their_number: str, lo: str, hi: str,
                           extra: str = "", top: int | None = None,
                           select: list[str] | None = None,
                           params: dict[str, str] | None = None) -> list[tuple[str, Any]]:
        """(key, row) of one conversation with `lo` < key < `hi`, key order, where a key is
        the row key within the conversation (`ConversationRecord.row_key`): from this layout
        and, until the backfill has copied it, the earlier one, merged (a copy counts once)."""
        prefix = _conversation_prefix(their_number)
        reads: list[Callable[[], list[tuple[str, Any]]]] = [lambda: [
            (str(r["RowKey"])[len(prefix):], r) for r in self._range(
                _sender_partition(our_number), prefix + lo, prefix + hi, extra, top, select,
                params)]]
        if self._earlier_layout_read():
            reads.append(lambda: [(str(r["RowKey"]), r) for r in self._range(
                _earlier_partition(our_number, their_number), lo, hi, extra, top, select,
                params)])
        merged: dict[str, Any] = {}
        for rows in reversed(run_all(lambda read: read(), reads)):  # this layout's copy wins
            merged.update(rows)
        found = sorted(merged.items(), key=lambda item: item[0])
        return found[:top] if top is not None else found

    def backfill(self, pages: int) -> tuple[int, bool]:
        """Copy conversation rows of the earlier layout into this one, a few pages of the
        table at a time: returns how many rows were copied and whether all of them have been.

        Reads up to `pages` pages (1,000 rows each) of the earlier partitions in key order,
        from where the last call stopped (its position is kept in the row
        `~conversations-backfill`/`state`), and writes each row as a conversation row, with
        listing and person rows for each conversation's newest row of the page. Idempotent:
        a row copied twice is rewritten, and an index entry older than one already there is
        never shown (see the module docstring).
        """
        with _STORAGE:
            try:
                state = self._table.get_entity(*_BACKFILL_KEY)
            except ResourceNotFoundError:
                state = None
            if state is not None and state.get("Done"):
                self._copied = True
                return 0, True
            token = json.loads(state["Token"]) if state is not None and state.get("Token") \
                else None
            copied = 0
            for _ in range(pages):
                try:
                    page_iter = self._table.query_entities(
                        "PartitionKey lt @sender", parameters={"sender": "~"},
                        results_per_page=_BACKFILL_PAGE).by_page(continuation_token=token)
                    rows = list(next(page_iter, []))
                except ResourceNotFoundError:  # no table yet: nothing to copy
                    rows = []
                    page_iter = None
                entries: list[ConversationRecord] = []
                newest: dict[tuple[str, str], ConversationRecord] = {}
                for r in rows:  # a partition's rows come in key order: its last is its newest
                    ours, bar, theirs = str(r["PartitionKey"]).partition("|")
                    if bar:
                        entries.append(_record_of(ours, theirs, r))
                        newest[ours, theirs] = entries[-1]
                self._submit(_operations(entries, newest.values()))
                copied += len(entries)
                token = getattr(page_iter, "continuation_token", None)
                if not token:
                    break
            self._table.upsert_entity({
                "PartitionKey": _BACKFILL_KEY[0], "RowKey": _BACKFILL_KEY[1],
                "Token": json.dumps(token) if token else "", "Done": not token},
                mode=UpdateMode.REPLACE)
        self._copied = not token
        return copied, not token

    def recent(self, our_number: str, limit: int, continuation: str | None
               ) -> tuple[list[ConversationSummaryRecord], str | None]:
        """One page of the sender's conversations, newest first, and the token of the next.

        Walks the listing rows after the token's key and keeps each person's first row, when
        it is their newest: always so from the top of the list, else checked against their
        person rows. At most `_READ_ROUNDS` reads of `_READ_SIZE` rows, so a page may come
        back short (with a token) when the index holds many older rows; those are deleted as
        they are passed, so the next read is short.
        """
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        pk = _sender_partition(our_number)
        after = _decode_after(continuation, _LISTING_KEY) if continuation else "t|"
        from_top = continuation is None
        found: list[ConversationSummaryRecord] = []
        met: set[str] = set()
        stale: list[str] = []
        exhausted = passed_all = False
        with _STORAGE:
            for _ in range(_READ_ROUNDS):
                rows = self._listing_after(pk, after, _READ_SIZE)
                exhausted, i = len(rows) < _READ_SIZE, 0
                while i < len(rows) and len(found) < limit:
                    # The next rows holding as many people not met yet as the page still needs.
                    end, firsts = i, set[int]()
                    while end < len(rows) and len(firsts) < limit - len(found):
                        if (their := str(rows[end]["Their"])) not in met:
                            met.add(their)
                            firsts.add(end)
                        end += 1
                    people = [str(rows[j]["Their"]) for j in sorted(firsts)]
                    newest = {} if from_top else dict(zip(people, run_all(
                        lambda their: self._newest_of(pk, their), people), strict=True))
                    for j in range(i, end):
                        after = str(rows[j]["RowKey"])
                        their, at = str(rows[j]["Their"]), after.split("|")[1]
                        # No person rows: written before they existed, so the row stands alone.
                        if j not in firsts or newest.get(their) not in (None, at):
                            stale += [after, f"p|{their}|{at}"]
                            continue
                        found.append(ConversationSummaryRecord(
                            their_number=their, last_message=rows[j]["LastMessage"],
                            last_direction=rows[j]["LastDirection"],
                            last_at=rows[j]["LastAt"]))
                    i = end
                passed_all = i == len(rows)
                if len(found) == limit or exhausted:
                    break
        self._forget(pk, stale)
        more = not (exhausted and passed_all)
        return found, _encode_after(after) if more else None

    def _listing_after(self, pk: str, after: str, limit: int) -> list[Any]:
        return self._range(pk, after, "t|~", top=limit)

    def _newest_of(self, pk: str, their: str) -> str | None:
        """The inverted time of the person's newest entry (their first person row)."""
        prefix = f"p|{their}|"
        rows = self._range(pk, prefix, prefix + "~", top=1, select=["RowKey"])
        return str(rows[0]["RowKey"])[len(prefix):] if rows else None

    def _forget(self, pk: str, keys: list[str]) -> None:
        """Delete index rows older than their person's newest; best effort (another reader
        may delete them first, and the rows are skipped on the next read anyway)."""
        for i in range(0, len(keys), 100):
            try:
                self._table.submit_transaction(
                    [("delete", {"PartitionKey": pk, "RowKey": k}) for k in keys[i:i + 100]])
            except (TableTransactionError, AzureError) as exc:  # a dropped POST included
                log.info("conversation index rows of %s left for the next read: %s", pk, exc)

    def last_outbound(self, our_number: str, their_number: str, since: datetime,
                      until: datetime) -> ConversationRecord | None:
        """The latest message we sent this person in [since, until], if any (one range query
        of the conversation)."""
        with _STORAGE:
            rows = self._conversation_rows(our_number, their_number, _row_time(since),
                                           _row_time(until) + "|~",
                                           " and Direction eq 'outbound'")
        if not rows:
            return None
        return _record_of(our_number, their_number, rows[-1][1])

    def outbound_before(self, our_number: str, their_number: str, since: datetime | None,
                        until: datetime | None, tag: str | None, limit: int,
                        before: str | None) -> list[tuple[str, str]]:
        """Up to `limit` (row key, message id) of our messages to this person in [since, until]
        (with `tag`), before the row key `before`, newest first: one query of the
        conversation's range, reading only the keys (a conversation is read in time order, so
        its end is kept)."""
        bounds = [b for b in (until and _row_time(until) + "|~", before) if b]
        extra, params = " and Direction eq 'outbound'", dict[str, str]()
        if tag is not None:
            extra += " and Tag eq @tag"
            params["tag"] = tag
        with _STORAGE:
            rows = self._conversation_rows(
                our_number, their_number, _row_time(since) if since is not None else "",
                min(bounds) if bounds else "~", extra, select=["RowKey", "MessageId"],
                params=params)
        return [(key, str(r["MessageId"])) for key, r in reversed(rows)][:limit]

    def page(self, our_number: str, their_number: str, limit: int = 50,
             continuation: str | None = None) -> tuple[list[ConversationRecord], str | None]:
        """One page of the conversation, oldest first, and the token of the next page (the
        last key returned, ours: a token not handed out is a 400)."""
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        after = _decode_after(continuation, _CONVERSATION_KEY) if continuation else ""
        with _STORAGE:
            rows = self._conversation_rows(our_number, their_number, after, "~", top=limit + 1)
        page = rows[:limit]
        entries = [_record_of(our_number, their_number, r) for _, r in page]
        return entries, _encode_after(page[-1][0]) if len(rows) > limit else None
