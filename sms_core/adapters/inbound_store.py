"""Inbound messages seen, so that an Event Grid redelivery is processed once.

Table `InboundMessages`: PartitionKey = the ACS inbound message id (hashed if it holds a
character Table keys forbid), RowKey = "". `Done` turns true when every step of processing
finished; a redelivery of an unfinished message runs the (idempotent) steps again.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, UpdateMode

from sms_core.adapters.azure_errors import storage_errors

_STORAGE = storage_errors("Inbound")
_FORBIDDEN = set('/\\#?') | {chr(c) for c in range(32)} | {chr(127)}


def _key(inbound_id: str) -> str:
    if len(inbound_id) <= 200 and not (set(inbound_id) & _FORBIDDEN):
        return inbound_id
    return "h-" + hashlib.sha256(inbound_id.encode()).hexdigest()


class InboundStore:
    """Remembers which inbound messages were processed."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    @_STORAGE
    def claim(self, inbound_id: str, fields: dict[str, Any]) -> bool:
        """Record the message; False when it was already fully processed (skip it)."""
        try:
            self._table.create_entity({"PartitionKey": _key(inbound_id), "RowKey": "",
                                       "Done": False, "SeenAt": datetime.now(UTC), **fields})
            return True
        except ResourceExistsError:
            existing = self._table.get_entity(_key(inbound_id), "", select=["Done"])
            return not bool(existing.get("Done"))

    @_STORAGE
    def complete(self, inbound_id: str) -> None:
        """Mark the message fully processed."""
        self._table.update_entity({"PartitionKey": _key(inbound_id), "RowKey": "",
                                   "Done": True}, mode=UpdateMode.MERGE)
