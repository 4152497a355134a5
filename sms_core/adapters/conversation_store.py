"""Two-way conversations: both directions between one of our numbers and one person.

Table `Conversations`: PartitionKey = `<our number>|<their number>`, RowKey =
`<UTC time, sortable>|<in|out>|<message id>`. A conversation is one partition read in time order,
paged with the Table service's continuation token (passed to clients as an opaque string).
Writes are idempotent upserts (a redelivered event rewrites the same row).

The index of a sender's recent conversations lives in the same table, in the partition
`~index|<our number>` ('~' sorts after every number, so no conversation partition is it). Every
conversation row adds two index rows, in one entity-group transaction per sender (up to 50
entries each; concurrent writers for one sender in this instance share it, through
`sms_core.concurrency.GroupCommit`) and without reading anything first: a listing row
`t|<inverted time>|<their number>` with the message, so a plain ascending read meets the newest
first, and a person row `p|<their number>|<inverted time>`, so the person's newest entry is the
first row of a short range. Writers never contend (an earlier design moved one row per person
under its ETag and gave up when twelve messages of one person raced), a redelivered event
rewrites the same two rows, and an old event never moves a conversation back: a listing row is
shown only when it is its person's newest. Reading a page checks each person met against their
person rows (one top-1 query each, side by side) and deletes the older rows it met, so the
index stays about one pair of rows per person once read.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from sms_core.adapters.azure_errors import storage_errors
from sms_core.concurrency import GroupCommit, run_all
from sms_core.errors import FieldError, RequestInvalid
from sms_core.models.queries import MAX_PAGE_SIZE
from sms_core.models.records import ConversationRecord, ConversationSummaryRecord

_STORAGE = storage_errors("Conversation")
log = logging.getLogger(__name__)


_INDEX_CHUNK = 50  # entries per index transaction: two operations each, 100 at most
_READ_ROUNDS = 5  # listing reads per page at most, of _READ_SIZE rows each
_READ_SIZE = 200
_BACKFILL_KEY = ("~index-backfill", "state")  # sorts after every number, outside '~index|'
_BACKFILL_PAGE = 1000
# Microseconds since the epoch are below 10**17 until the year 5138: inverted, newest first.
_INVERT_FROM = 10**17


def _index_partition(our_number: str) -> str:
    return f"~index|{our_number}"


def _inverted(moment: datetime) -> str:
    micros = int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)
    return f"{_INVERT_FROM - micros:018d}"


def _row_time(moment: datetime) -> str:
    """The time prefix of a row key (`ConversationRecord.row_key`)."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _encode_token(token: Any) -> str | None:
    if not token:
        return None
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode()


_TOKEN_KEYS = frozenset({"PartitionKey", "RowKey"})


def _is_key(value: Any) -> bool:
    return isinstance(value, str) and value.isprintable()


def _decode_token(value: str) -> Any:
    """The Table continuation token inside the opaque one we handed out.

    Anything else is a 400 naming `continuationToken`: a token of another shape would make the
    SDK start again from the first page, as if it were one, or send its keys as malformed
    headers. (The service's keys are opaque encodings, so they are checked for shape only.)
    """
    try:
        token = json.loads(base64.urlsafe_b64decode(value.encode()))
    except (ValueError, binascii.Error):
        token = None
    if not (isinstance(token, dict) and set(token) == _TOKEN_KEYS
            and _is_key(token["PartitionKey"])
            and (token["RowKey"] is None or _is_key(token["RowKey"]))):
        raise RequestInvalid("The continuation token is not valid.",
                             [FieldError("continuationToken", "not a token from this API")])
    return token


def _encode_after(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def _decode_after(value: str) -> str:
    """The listing key a token of `recent` continues after; anything else is a 400."""
    try:
        key = base64.urlsafe_b64decode(value.encode()).decode()
    except (ValueError, binascii.Error):
        key = ""
    if not (key.startswith("t|") and key.isprintable() and len(key) < 200):
        raise RequestInvalid("The continuation token is not valid.",
                             [FieldError("continuationToken", "not a token from this API")])
    return key


class ConversationStore:
    """Reads and writes conversation entries."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        # Index rows of concurrent writers for one sender share a transaction.
        self._index_together: GroupCommit[str, ConversationRecord, None] = GroupCommit(
            self._write_index, limit=_INDEX_CHUNK)

    def record(self, entries: Iterable[ConversationRecord]) -> None:
        """Upsert entries (concurrently: each conversation is its own partition), then add them
        to their senders' conversation indexes."""
        def write(e: ConversationRecord) -> None:
            row: dict[str, Any] = {"PartitionKey": f"{e.our_number}|{e.their_number}",
                                   "RowKey": e.row_key(), "Direction": e.direction,
                                   "MessageId": e.message_id, "Text": e.text, "At": e.at}
            if e.keyword:
                row["Keyword"] = e.keyword
            if e.tag:
                row["Tag"] = e.tag
            if e.length is not None:
                row["TextLength"] = e.length
            self._table.upsert_entity(row, mode=UpdateMode.REPLACE)
        batch = list(entries)
        with _STORAGE:
            run_all(write, batch)
            self._index(batch)

    def _index(self, entries: list[ConversationRecord]) -> None:
        """Add the listing and person rows of the entries, with those of concurrent callers
        for the same sender (`_index_together`)."""
        groups: dict[str, list[ConversationRecord]] = {}
        for e in entries:
            groups.setdefault(e.our_number, []).append(e)
        run_all(lambda group: self._index_together.submit(*group), list(groups.items()))

    def _write_index(self, our_number: str, batches: list[list[ConversationRecord]]
                     ) -> list[None]:
        """One sender's index rows: one transaction per 50 entries (100 operations, the
        service's limit), none reading first."""
        rows: dict[str, ConversationRecord] = {}
        for e in (e for batch in batches for e in batch):  # a transaction touches a row once
            rows[_inverted(e.at) + e.their_number] = e
        entries = list(rows.values())
        chunks = [entries[i:i + _INDEX_CHUNK] for i in range(0, len(entries), _INDEX_CHUNK)]
        pk = _index_partition(our_number)

        def submit(chunk: list[ConversationRecord]) -> None:
            ops: list[Any] = []
            for e in chunk:
                at = _inverted(e.at)
                ops.append(("upsert", {
                    "PartitionKey": pk, "RowKey": f"t|{at}|{e.their_number}",
                    "Their": e.their_number, "LastMessage": e.text,
                    "LastDirection": e.direction, "LastAt": e.at,
                    "LastMessageId": e.message_id}, {"mode": UpdateMode.REPLACE}))
                ops.append(("upsert", {"PartitionKey": pk,
                                       "RowKey": f"p|{e.their_number}|{at}"},
                            {"mode": UpdateMode.REPLACE}))
            self._table.submit_transaction(ops)
        run_all(submit, chunks)
        return [None] * len(batches)

    def backfill_index(self, pages: int) -> tuple[int, bool]:
        """Index conversations written before the index existed, a few pages of the table at a
        time: returns how many were indexed and whether the whole table has been read.

        Reads up to `pages` pages (1,000 rows each, keys and index columns only) of every
        conversation partition in key order, from where the last call stopped (its position is
        kept in the row `~index-backfill`/`state`), and adds each conversation's newest row of
        a page to the index. Idempotent: an entry indexed twice, or older than one already
        there, is never shown (see the module docstring).
        """
        with _STORAGE:
            try:
                state = self._table.get_entity(*_BACKFILL_KEY)
            except ResourceNotFoundError:
                state = None
            if state is not None and state.get("Done"):
                return 0, True
            token = json.loads(state["Token"]) if state is not None and state.get("Token") \
                else None
            indexed = 0
            for _ in range(pages):
                try:
                    page_iter = self._table.query_entities(
                        "PartitionKey lt @index", parameters={"index": "~"},
                        select=["PartitionKey", "RowKey", "Direction", "MessageId", "Text",
                                "At", "Tag"], results_per_page=_BACKFILL_PAGE
                    ).by_page(continuation_token=token)
                    rows = list(next(page_iter, []))
                except ResourceNotFoundError:  # no table yet: nothing to index
                    rows = []
                    page_iter = None
                newest: dict[str, Any] = {}
                for r in rows:  # a partition's rows come in key order: its last is its newest
                    newest[str(r["PartitionKey"])] = r
                entries = [ConversationRecord(
                    our_number=pk.partition("|")[0], their_number=pk.partition("|")[2],
                    direction=r["Direction"], message_id=r["MessageId"], text=r["Text"],
                    at=r["At"], tag=r.get("Tag")) for pk, r in newest.items() if "|" in pk]
                self._index(entries)
                indexed += len(entries)
                token = getattr(page_iter, "continuation_token", None)
                if not token:
                    break
            self._table.upsert_entity({
                "PartitionKey": _BACKFILL_KEY[0], "RowKey": _BACKFILL_KEY[1],
                "Token": json.dumps(token) if token else "", "Done": not token},
                mode=UpdateMode.REPLACE)
        return indexed, not token

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
        pk = _index_partition(our_number)
        after = _decode_after(continuation) if continuation else "t|"
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
        try:
            return list(itertools.islice(self._table.query_entities(
                "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
                parameters={"pk": pk, "lo": after, "hi": "t|~"},
                results_per_page=limit), limit))
        except ResourceNotFoundError:  # no table yet: nothing written
            return []

    def _newest_of(self, pk: str, their: str) -> str | None:
        """The inverted time of the person's newest entry (their first person row)."""
        prefix = f"p|{their}|"
        for r in self._table.query_entities(
                "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
                parameters={"pk": pk, "lo": prefix, "hi": prefix + "~"},
                select=["RowKey"], results_per_page=1):
            return str(r["RowKey"])[len(prefix):]
        return None

    def _forget(self, pk: str, keys: list[str]) -> None:
        """Delete index rows older than their person's newest; best effort (another reader
        may delete them first, and the rows are skipped on the next read anyway)."""
        for i in range(0, len(keys), 100):
            try:
                self._table.submit_transaction(
                    [("delete", {"PartitionKey": pk, "RowKey": k}) for k in keys[i:i + 100]])
            except (TableTransactionError, AzureError) as exc:  # a dropped POST included
                log.info("conversation index rows of %s left for the next read: %s", pk, exc)

    def _first_page(self, pages: Any) -> list[Any]:
        """The rows of a paged query's first page; a token the service refuses is a 400."""
        with _STORAGE:
            try:
                return list(next(pages, []))
            except ResourceNotFoundError:  # no table yet: nothing written
                return []
            except HttpResponseError as exc:
                if exc.status_code == 400:  # the service refused the token we passed on
                    raise RequestInvalid("The continuation token is not valid.",
                                         [FieldError("continuationToken", "not valid")]
                                         ) from None
                raise

    def last_outbound(self, our_number: str, their_number: str, since: datetime,
                      until: datetime) -> ConversationRecord | None:
        """The latest message we sent this person in [since, until], if any (one range query)."""
        lo, hi = _row_time(since), _row_time(until) + "|~"
        with _STORAGE:
            rows = list(self._table.query_entities(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey le @hi"
                " and Direction eq 'outbound'",
                parameters={"pk": f"{our_number}|{their_number}", "lo": lo, "hi": hi}))
        if not rows:
            return None
        r = max(rows, key=lambda row: str(row["RowKey"]))
        return ConversationRecord(our_number=our_number, their_number=their_number,
                                 direction="outbound", message_id=r["MessageId"], text=r["Text"],
                                 at=r["At"], tag=r.get("Tag"))

    def outbound_before(self, our_number: str, their_number: str, since: datetime | None,
                        until: datetime | None, tag: str | None, limit: int,
                        before: str | None) -> list[tuple[str, str]]:
        """Up to `limit` (row key, message id) of our messages to this person in [since, until]
        (with `tag`), before the row key `before`, newest first: one query of one partition,
        reading only the keys (a conversation is read in time order, so its end is kept)."""
        query = "PartitionKey eq @pk and Direction eq 'outbound'"
        params: dict[str, Any] = {"pk": f"{our_number}|{their_number}"}
        if since is not None:
            query += " and RowKey ge @lo"
            params["lo"] = _row_time(since)
        if until is not None or before is not None:
            bounds = [b for b in (until and _row_time(until) + "|~", before) if b]
            query += " and RowKey lt @hi"
            params["hi"] = min(bounds)
        if tag is not None:
            query += " and Tag eq @tag"
            params["tag"] = tag
        with _STORAGE:
            try:
                rows = [(str(r["RowKey"]), str(r["MessageId"]))
                        for r in self._table.query_entities(
                            query, parameters=params, select=["RowKey", "MessageId"])]
            except ResourceNotFoundError:  # no table yet: no conversation
                return []
        return sorted(rows, reverse=True)[:limit]

    def page(self, our_number: str, their_number: str, limit: int = 50,
             continuation: str | None = None) -> tuple[list[ConversationRecord], str | None]:
        """One page of the conversation, oldest first, and the token of the next page."""
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        pages = self._table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": f"{our_number}|{their_number}"},
            results_per_page=limit).by_page(
                continuation_token=_decode_token(continuation) if continuation else None)
        rows = self._first_page(pages)
        entries = [ConversationRecord(our_number=our_number, their_number=their_number,
                                     direction=r["Direction"], message_id=r["MessageId"],
                                     text=r["Text"], at=r["At"], keyword=r.get("Keyword"),
                                     length=r.get("TextLength"))
                   for r in rows]
        return entries, _encode_token(getattr(pages, "continuation_token", None))


