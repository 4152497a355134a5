"""One claim/complete ledger: work keyed by an id is claimed once and marked done when finished.

A row per key (PartitionKey = the key, RowKey = ""): the first claim inserts it with the fields
the work needs to recognise itself; a later claim of the same key (a retry, a redelivery) reads
the row back instead, so the caller sees what the first claim stored and whether the work
completed. Completing is a merge of the done flag. Both the Idempotency-Key of
`POST /api/messages` and the de-duplication of inbound SMS are such ledgers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, UpdateMode

from sms_core.adapters.azure_errors import storage_errors

_FORBIDDEN = set('/\\#?') | {chr(c) for c in range(32)} | {chr(127)}


def table_key(value: str) -> str:
    """`value` itself when Table storage accepts it as a key, else `h-<its SHA-256>`."""
    if len(value) <= 200 and not (set(value) & _FORBIDDEN):
        return value
    return "h-" + hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class LedgerClaim:
    """A claim: the fields the first claim stored, whether the work completed, and if it is new."""

    fields: dict[str, Any]
    completed: bool
    new: bool


class ClaimLedger:
    """Claims and completions of one kind of work, in one table."""

    def __init__(self, table: TableClient, what: str, done_field: str = "Done") -> None:
        self._table = table
        self._done = done_field
        self._storage = storage_errors(what)

    def claim(self, key: str, fields: dict[str, Any]) -> LedgerClaim:
        """Claim `key` with `fields`; a key claimed before answers with what it stored."""
        with self._storage:
            try:
                self._table.create_entity({"PartitionKey": key, "RowKey": "", self._done: False,
                                           "ClaimedAt": datetime.now(UTC), **fields})
                return LedgerClaim(dict(fields), completed=False, new=True)
            except ResourceExistsError:
                existing = self._table.get_entity(key, "")
        return LedgerClaim(dict(existing), completed=bool(existing.get(self._done)), new=False)

    def complete(self, key: str) -> None:
        """Mark the claimed work done."""
        with self._storage:
            self._table.update_entity({"PartitionKey": key, "RowKey": "", self._done: True},
                                      mode=UpdateMode.MERGE)
