"""Inbound messages seen, so that an Event Grid redelivery is processed once (a claim ledger).

Table `InboundMessages`: PartitionKey = the ACS inbound message id (hashed if it holds a
character Table keys forbid), RowKey = "". `Done` turns true when every step of processing
finished; a redelivery of an unfinished message runs the (idempotent) steps again.
"""

from __future__ import annotations

from typing import Any

from azure.data.tables import TableClient

from sms_core.adapters.claim_ledger import ClaimLedger, table_key


class InboundStore:
    """Remembers which inbound messages were processed."""

    def __init__(self, table: TableClient) -> None:
        self._ledger = ClaimLedger(table, "Inbound")

    def claim(self, inbound_id: str, fields: dict[str, Any]) -> bool:
        """Record the message; False when it was already fully processed (skip it)."""
        return not self._ledger.claim(table_key(inbound_id), fields).completed

    def complete(self, inbound_id: str) -> None:
        """Mark the message fully processed."""
        self._ledger.complete(table_key(inbound_id))
