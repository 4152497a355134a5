"""Idempotency keys for `POST /api/messages`, a claim ledger (`adapters.claim_ledger`).

Table `IdempotencyKeys`: PartitionKey = SHA-256 of the key (keys may hold characters that Table
keys forbid), RowKey = "". The row binds the key to the request's fingerprint and to the batch
id chosen when the key was first claimed (a fresh, time-ordered one, so the outbox sweeper finds
its partition): a retry after a crash re-runs the same deterministic acceptance into that batch
and finishes what the first attempt started, and a completed one is answered from the stored
messages without sending anything.
"""

from __future__ import annotations

import hashlib

from azure.data.tables import TableClient

from sms_core.adapters.claim_ledger import ClaimLedger
from sms_core.errors import Conflict
from sms_core.models.records import IdempotencyClaim, new_batch_id


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class IdempotencyStore:
    """Binds Idempotency-Key values to requests."""

    def __init__(self, table: TableClient) -> None:
        self._ledger = ClaimLedger(table, "Idempotency", done_field="Completed")

    def claim(self, key: str, fingerprint: str) -> IdempotencyClaim:
        """Bind `key` to this request, or return the existing binding; 409 on another body."""
        pk = _digest(key)
        fp = _digest(fingerprint)
        claim = self._ledger.claim(pk, {"Fingerprint": fp, "Batch": new_batch_id()})
        if claim.fields["Fingerprint"] != fp:
            raise Conflict("This Idempotency-Key was already used with a different request "
                           "body; use a new key for a new request.")
        return IdempotencyClaim(str(claim.fields["Batch"]), claim.completed)

    def complete(self, key: str) -> None:
        """Mark the key's acceptance as complete (everything written and enqueued)."""
        self._ledger.complete(_digest(key))
