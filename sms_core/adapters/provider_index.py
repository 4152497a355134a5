"""ACS message id -> our message id, and delivery reports we could not match yet.

`ProviderMessageIds`: PartitionKey = ACS message id, RowKey = "" (a point read per report).
`UnmatchedReports`: PartitionKey = ACS message id, RowKey = event id: reports kept for
reconciliation instead of being poisoned or dropped.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from sms_core.adapters.azure_errors import storage_errors
from sms_core.adapters.event_grid import delivery_reports
from sms_core.concurrency import run_all
from sms_core.errors import RequestInvalid
from sms_core.models.records import UnmatchedReportRecord

_INDEX_STORAGE = storage_errors("Provider index")
_UNMATCHED_STORAGE = storage_errors("Unmatched report")


class ProviderIndex:
    """Maps ACS message ids to ours."""

    def __init__(self, index: TableClient, unmatched: TableClient) -> None:
        self._index = index
        self._unmatched = unmatched

    def record(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Store (provider id, message id) pairs; one partition each, written concurrently."""
        def put(pair: tuple[str, str]) -> None:
            self._index.upsert_entity({"PartitionKey": pair[0], "RowKey": "",
                                       "MessageId": pair[1]}, mode=UpdateMode.REPLACE)
        with _INDEX_STORAGE:
            run_all(put, pairs)

    @_INDEX_STORAGE
    def lookup(self, provider_id: str) -> str | None:
        """Our message id for an ACS message id, or None."""
        try:
            return str(self._index.get_entity(provider_id, "", select=["MessageId"])["MessageId"])
        except ResourceNotFoundError:
            return None

    @_UNMATCHED_STORAGE
    def keep_unmatched(self, provider_id: str, event_id: str, event: dict[str, Any]) -> None:
        """Keep a report whose message we do not know (yet), for reconciliation."""
        self._unmatched.upsert_entity({
            "PartitionKey": provider_id or "unknown", "RowKey": event_id,
            "Event": json.dumps(event)[:30000], "ReceivedAt": datetime.now(UTC)})

    def unmatched(self) -> list[UnmatchedReportRecord]:
        """Every kept report (the table holds only the few reports that found no message)."""
        with _UNMATCHED_STORAGE:
            rows = list(self._unmatched.list_entities())
        return [_kept(r) for r in rows]

    @_UNMATCHED_STORAGE
    def forget_unmatched(self, provider_id: str, event_id: str) -> None:
        """Delete a kept report once it has been applied."""
        with contextlib.suppress(ResourceNotFoundError):  # already gone: nothing to forget
            self._unmatched.delete_entity(provider_id, event_id)


def _kept(row: Any) -> UnmatchedReportRecord:
    """A kept row, its event decoded again (an invalid inbound SMS is kept here too)."""
    try:
        event = dict(json.loads(row["Event"]))
        reports = delivery_reports(row["Event"])
    except (ValueError, TypeError, RequestInvalid):  # cut at 30,000 characters, or not JSON
        event, reports = {"Event": str(row.get("Event", ""))}, []
    return UnmatchedReportRecord(provider_id=str(row["PartitionKey"]), event_id=str(row["RowKey"]),
                           event=event, received_at=row.get("ReceivedAt"),
                           report=reports[0] if reports else None)
