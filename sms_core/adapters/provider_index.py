"""ACS message id -> our message id, and delivery reports we could not match yet.

`ProviderMessageIds`: PartitionKey = ACS message id, RowKey = "" (a point read per report).
`UnmatchedReports`: PartitionKey = ACS message id, RowKey = event id: reports kept for
reconciliation instead of being poisoned or dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from sms_core.concurrency import run_all
from sms_core.errors import StorageUnavailable
from sms_core.models.records import UnmatchedReport


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
        try:
            run_all(put, pairs)
        except AzureError as exc:
            raise StorageUnavailable(f"Provider index storage failed: {exc}") from exc

    def lookup(self, provider_id: str) -> str | None:
        """Our message id for an ACS message id, or None."""
        try:
            return str(self._index.get_entity(provider_id, "", select=["MessageId"])["MessageId"])
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageUnavailable(f"Provider index storage failed: {exc}") from exc

    def keep_unmatched(self, provider_id: str, event_id: str, event: dict[str, Any]) -> None:
        """Keep a report whose message we do not know (yet), for reconciliation."""
        try:
            self._unmatched.upsert_entity({
                "PartitionKey": provider_id or "unknown", "RowKey": event_id,
                "Event": json.dumps(event)[:30000], "ReceivedAt": datetime.now(UTC)})
        except AzureError as exc:
            raise StorageUnavailable(f"Unmatched report storage failed: {exc}") from exc

    def unmatched(self) -> list[UnmatchedReport]:
        """Every kept report (the table holds only the few reports that found no message)."""
        try:
            rows = list(self._unmatched.list_entities())
        except AzureError as exc:
            raise StorageUnavailable(f"Unmatched report storage failed: {exc}") from exc
        return [UnmatchedReport(provider_id=str(r["PartitionKey"]), event_id=str(r["RowKey"]),
                                event=dict(json.loads(r["Event"])), received_at=r.get("ReceivedAt"))
                for r in rows]

    def forget_unmatched(self, provider_id: str, event_id: str) -> None:
        """Delete a kept report once it has been applied."""
        try:
            self._unmatched.delete_entity(provider_id, event_id)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise StorageUnavailable(f"Unmatched report storage failed: {exc}") from exc
