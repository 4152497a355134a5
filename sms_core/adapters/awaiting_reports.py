"""Messages waiting for their delivery report, and the timers that finish what reports did not.

Table `AwaitingReports`: PartitionKey = the UTC hour the message was sent (`YYYYMMDDHH`),
RowKey = message id. A row is written when a message that asked for a delivery report is `sent`
late (more than `PROMPT_SEND` after its batch was created: scheduled, paced or retried), and
removed when its report arrives; a message sent promptly has no row, the expiry timer finds it by
its batch's time instead (`Messages.awaiting_report`). The timer reads whole hour partitions that
are older than SMS_DLR_TIMEOUT_HOURS (one partition query per hour, never a table scan) and
expires what is still `sent`. A cursor row (`_cursor`) remembers the last hour swept, so a missed
run is caught up by the next.

Reports that arrived for a message we could not find (`UnmatchedReports`, usually a report that
overtook the send result) are retried by the reconcile timer and reported when they stay unknown.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from sms_core.adapters.azure_errors import storage_errors
from sms_core.concurrency import run_all
from sms_core.errors import StorageUnavailable
from sms_core.models.records import AwaitingRecord, bucket_hour, hour_bucket

log = logging.getLogger(__name__)
_STORAGE = storage_errors("AwaitingReports")

CURSOR_PARTITION = "_cursor"
MAX_CATCH_UP = timedelta(days=30)


class AwaitingReportStore:
    """The index of sent messages without a delivery report yet."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def add(self, sent: Iterable[tuple[str, datetime]]) -> None:
        """Remember (message id, sent at) pairs; upserts, so a resend is harmless."""
        def put(item: tuple[str, datetime]) -> None:
            self._table.upsert_entity({"PartitionKey": hour_bucket(item[1]),
                                       "RowKey": item[0]}, mode=UpdateMode.REPLACE)
        with _STORAGE:
            run_all(put, sent)

    def remove(self, message_id: str, sent_at: datetime) -> None:
        """Forget a message whose report arrived (best effort: the sweep double-checks)."""
        try:
            with _STORAGE, contextlib.suppress(ResourceNotFoundError):
                self._table.delete_entity(hour_bucket(sent_at), message_id)
        except StorageUnavailable as exc:
            log.warning("could not remove %s from AwaitingReports: %s", message_id, exc.detail)

    def due_buckets(self, now: datetime, timeout: timedelta) -> list[str]:
        """Hour partitions not swept yet whose messages are all older than `timeout`."""
        last_due = hour_bucket(now - timeout - timedelta(hours=1))
        with _STORAGE:
            try:
                cursor = self._table.get_entity(CURSOR_PARTITION, "")["Last"]
                start = bucket_hour(str(cursor)) + timedelta(hours=1)
            except ResourceNotFoundError:  # never swept yet
                start = now - timeout - MAX_CATCH_UP
        start = max(start, now - timeout - MAX_CATCH_UP)
        buckets, t = [], start.replace(minute=0, second=0, microsecond=0)
        while hour_bucket(t) <= last_due:
            buckets.append(hour_bucket(t))
            t += timedelta(hours=1)
        return buckets

    @_STORAGE
    def entries(self, bucket: str) -> list[AwaitingRecord]:
        """The messages of one hour partition."""
        return [AwaitingRecord(bucket, str(e["RowKey"])) for e in self._table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": bucket}, select=["RowKey"])]

    @_STORAGE
    def finish_bucket(self, bucket: str, entries: list[AwaitingRecord]) -> None:
        """Delete a swept partition's rows and move the cursor past it."""
        for e in entries:
            with contextlib.suppress(ResourceNotFoundError):
                self._table.delete_entity(e.bucket, e.message_id)
        self._table.upsert_entity({"PartitionKey": CURSOR_PARTITION, "RowKey": "",
                                   "Last": bucket}, mode=UpdateMode.REPLACE)
