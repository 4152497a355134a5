"""Two-way conversations: both directions between one of our numbers and one person.

Table `Conversations`: PartitionKey = `<our number>|<their number>`, RowKey =
`<UTC time, sortable>|<in|out>|<message id>`. A conversation is one partition read in time order,
paged with the Table service's continuation token (passed to clients as an opaque string).
Writes are idempotent upserts (a redelivered event rewrites the same row).

The index of a sender's recent conversations lives in the same table, in the partition
`~index|<our number>` ('~' sorts after every number, so no conversation partition is it): a
listing row `t|<inverted time>|<their number>` per person with the last message, so a plain
ascending read lists the newest first, and a pointer row `p|<their number>` naming the person's
current listing row. Writing a conversation row moves the person's listing row: one point read
of the pointer, then one entity-group transaction (new listing row, old one deleted, pointer
updated under its ETag). An entry no newer than the pointer's leaves the index alone, so a
redelivered old event never moves a conversation back.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from sms_core.adapters.azure_errors import storage_errors
from sms_core.concurrency import run_all
from sms_core.errors import FieldError, RequestInvalid, StorageUnavailable
from sms_core.models.queries import MAX_PAGE_SIZE
from sms_core.models.records import ConversationRecord, ConversationSummaryRecord

if TYPE_CHECKING:
    pass

_STORAGE = storage_errors("Conversation")


_INDEX_TRIES = 5
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


class ConversationStore:
    """Reads and writes conversation entries."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def record(self, entries: Iterable[ConversationRecord]) -> None:
        """Upsert entries (concurrently: each conversation is its own partition), each also
        moving its person's row of the sender's conversation index."""
        def put(e: ConversationRecord) -> None:
            write(e)
            self._index(e)

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
        with _STORAGE:
            run_all(put, entries)

    def _index(self, e: ConversationRecord) -> None:
        """Move the person's listing row to this entry, unless the index holds a newer one."""
        pk, pointer_key = _index_partition(e.our_number), f"p|{e.their_number}"
        key = f"t|{_inverted(e.at)}|{e.their_number}"
        row = {"PartitionKey": pk, "RowKey": key, "Their": e.their_number,
               "LastMessage": e.text, "LastDirection": e.direction, "LastAt": e.at,
               "LastMessageId": e.message_id}
        for _ in range(_INDEX_TRIES):
            try:
                pointer = self._table.get_entity(pk, pointer_key)
            except ResourceNotFoundError:
                pointer = None
            if pointer is not None and str(pointer["Key"]) <= key:
                return  # the listing row is this entry's, or a newer one's (inverted times)
            ops: list[Any] = [("upsert", row, {"mode": UpdateMode.REPLACE})]
            new_pointer = {"PartitionKey": pk, "RowKey": pointer_key, "Key": key}
            if pointer is None:
                ops.append(("create", new_pointer))
            else:
                ops += [("delete", {"PartitionKey": pk, "RowKey": pointer["Key"]}),
                        ("update", new_pointer, {
                            "mode": UpdateMode.REPLACE, "etag": pointer.metadata["etag"],
                            "match_condition": MatchConditions.IfNotModified})]
            try:
                self._table.submit_transaction(ops)
                return
            except (TableTransactionError, ResourceExistsError):
                continue  # another write moved the pointer first: read it again and decide
        raise StorageUnavailable(f"the conversation index of {e.our_number} kept changing")

    def recent(self, our_number: str, limit: int, continuation: str | None
               ) -> tuple[list[ConversationSummaryRecord], str | None]:
        """One page of the sender's conversations, newest first (one range read of the index
        partition's listing rows), and the token of the next page."""
        pages = self._table.query_entities(
            "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
            parameters={"pk": _index_partition(our_number), "lo": "t|", "hi": "t|~"},
            results_per_page=max(1, min(limit, MAX_PAGE_SIZE))).by_page(
                continuation_token=_decode_token(continuation) if continuation else None)
        rows = self._first_page(pages)
        return ([ConversationSummaryRecord(
            their_number=r["Their"], last_message=r["LastMessage"],
            last_direction=r["LastDirection"], last_at=r["LastAt"]) for r in rows],
            _encode_token(getattr(pages, "continuation_token", None)))

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


