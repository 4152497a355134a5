"""Two-way conversations: both directions between one of our numbers and one person.

Table `Conversations`: PartitionKey = `<our number>|<their number>`, RowKey =
`<UTC time, sortable>|<in|out>|<message id>`. A conversation is one partition read in time order,
paged with the Table service's continuation token (passed to clients as an opaque string).
Writes are idempotent upserts (a redelivered event rewrites the same row).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from sms_core.adapters.azure_errors import storage_errors
from sms_core.concurrency import run_all
from sms_core.errors import FieldError, RequestInvalid
from sms_core.models.queries import MAX_PAGE_SIZE
from sms_core.models.records import ConversationRecord

if TYPE_CHECKING:
    pass

_STORAGE = storage_errors("Conversation")


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
        """Upsert entries (concurrently: each conversation is its own partition)."""
        def put(e: ConversationRecord) -> None:
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
        with _STORAGE:
            try:
                rows = list(next(pages, []))
            except HttpResponseError as exc:
                if exc.status_code == 400:  # the service refused the token we passed on
                    raise RequestInvalid("The continuation token is not valid.",
                                         [FieldError("continuationToken", "not valid")]
                                         ) from None
                raise
        entries = [ConversationRecord(our_number=our_number, their_number=their_number,
                                     direction=r["Direction"], message_id=r["MessageId"],
                                     text=r["Text"], at=r["At"], keyword=r.get("Keyword"),
                                     length=r.get("TextLength"))
                   for r in rows]
        return entries, _encode_token(getattr(pages, "continuation_token", None))


