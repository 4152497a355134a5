"""Idempotency keys for `POST /api/messages`.

Table `IdempotencyKeys`: PartitionKey = SHA-256 of the key (keys may hold characters that Table
keys forbid), RowKey = "". The row binds the key to the request's fingerprint and to the batch
id, which is itself derived from the key: a retry after a crash re-runs the same deterministic
acceptance and finishes what the first attempt started, and a completed one is answered from the
stored messages without sending anything.
"""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from sms_core.adapters.azure_errors import storage_errors
from sms_core.errors import Conflict
from sms_core.models.records import IdempotencyClaim

_STORAGE = storage_errors("Idempotency")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class IdempotencyStore:
    """Binds Idempotency-Key values to requests."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def claim(self, key: str, fingerprint: str) -> IdempotencyClaim:
        """Bind `key` to this request, or return the existing binding; 409 on another body."""
        pk = _digest(key)
        fp = _digest(fingerprint)
        batch = "k" + pk[:31]
        with _STORAGE:
            try:
                self._table.create_entity({"PartitionKey": pk, "RowKey": "", "Fingerprint": fp,
                                           "Batch": batch, "Completed": False,
                                           "CreatedAt": datetime.now(UTC)})
                return IdempotencyClaim(batch, False)
            except ResourceExistsError:  # a retry, or the key reused: compare the bodies
                existing = self._table.get_entity(pk, "")
        if existing["Fingerprint"] != fp:
            raise Conflict("This Idempotency-Key was already used with a different request "
                           "body; use a new key for a new request.")
        return IdempotencyClaim(str(existing["Batch"]), bool(existing["Completed"]))

    @_STORAGE
    def complete(self, key: str) -> None:
        """Mark the key's acceptance as complete (everything written and enqueued)."""
        with contextlib.suppress(ResourceNotFoundError):  # cannot happen: the claim wrote it
            self._table.update_entity({"PartitionKey": _digest(key), "RowKey": "",
                                       "Completed": True}, mode=UpdateMode.MERGE)
