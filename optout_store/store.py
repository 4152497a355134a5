"""Opt-out state per (sender, recipient), or global, with an append-only audit history.

Tables (docs/architecture.md):

- `OptOuts`: PartitionKey = sender (E.164 or short code) or `global`; RowKey = recipient E.164.
  One row per pair ever changed; `OptedOut` says the current state. Checking one recipient is
  two point reads at most; checking many is one range query per partition (sender and global),
  never a query per recipient.
- `OptOutHistory`: PartitionKey = `<sender>|<recipient>`; RowKey = `<UTC timestamp>-<random>`.
  Insert-only; every set and clear leaves a row with keyword, raw text, source and reason.

A global opt-out always wins over a sender-level opt-in: when in doubt, do not send.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from optout_store.records import GLOBAL_SENDER, OptOutHistoryRecord, OptOutStateRecord, Source
from sms_core.adapters.azure_errors import storage_errors
from sms_core.concurrency import run_all

_STORAGE = storage_errors("Opt-out")


def _row_suffix(info: dict[str, Any]) -> str:
    inbound = info.get("inbound_message_id")
    if inbound:
        return hashlib.sha256(str(inbound).encode()).hexdigest()[:12]
    return secrets.token_hex(6)


class OptOutStore:
    """Reads and changes opt-out state. `scope` is `sender` (ACS's model) or `global`."""

    def __init__(self, state: TableClient, history: TableClient,
                 scope: Literal["sender", "global"] = "sender") -> None:
        self._state = state
        self._history = history
        self._scope = scope

    def _partition_for(self, sender: str) -> str:
        return GLOBAL_SENDER if self._scope == "global" else sender

    # -- checks -------------------------------------------------------------------------------

    def is_opted_out(self, sender: str, recipient: str) -> bool:
        """True when `recipient` opted out of `sender` or globally."""
        return recipient in self.opted_out_among(sender, [recipient])

    def opted_out_among(self, sender: str, recipients: Iterable[str]) -> set[str]:
        """The subset of `recipients` that opted out of `sender` (or globally).

        One range query per partition (the sender's and the global one, side by side: this
        read is on the way of every send to ACS), whatever the number of recipients; a single
        recipient costs point reads.
        """
        wanted = set(recipients)
        if not wanted:
            return set()
        partitions = list(dict.fromkeys((sender, GLOBAL_SENDER)))
        return set().union(*run_all(lambda p: self._opted_out_in(p, wanted), partitions))

    @_STORAGE
    def _opted_out_in(self, partition: str, wanted: set[str]) -> set[str]:
        if len(wanted) == 1:
            (only,) = wanted
            try:
                e = self._state.get_entity(partition, only, select=["OptedOut"])
            except ResourceNotFoundError:
                return set()
            return {only} if e.get("OptedOut") else set()
        rows = self._state.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey le @hi and OptedOut eq true",
            parameters={"pk": partition, "lo": min(wanted), "hi": max(wanted)},
            select=["RowKey"])
        return {str(r["RowKey"]) for r in rows} & wanted

    def get(self, sender: str, recipient: str) -> OptOutStateRecord | None:
        """The stored state of the pair in the configured scope, or None if never changed."""
        with _STORAGE:
            try:
                e = self._state.get_entity(self._partition_for(sender), recipient)
            except ResourceNotFoundError:  # never changed
                return None
        return OptOutStateRecord(sender=sender, recipient=recipient, opted_out=bool(e["OptedOut"]),
                            updated_at=e["UpdatedAt"], source=e.get("Source"),
                            keyword=e.get("Keyword"))

    # -- changes ------------------------------------------------------------------------------

    def opt_out(self, sender: str, recipient: str, *, source: Source, keyword: str | None = None,
                text: str | None = None, inbound_message_id: str | None = None,
                reason: str | None = None, at: datetime | None = None) -> bool:
        """Record an opt-out. Returns True if the state changed (False if already opted out).

        With `inbound_message_id` the history row is keyed by it, so recording the same inbound
        STOP again (a redelivery) leaves one row, not two.
        """
        return self._set(sender, recipient, True, source=source, keyword=keyword, text=text,
                         inbound_message_id=inbound_message_id, reason=reason, at=at)

    def opt_in(self, sender: str, recipient: str, *, source: Source, keyword: str | None = None,
               text: str | None = None, inbound_message_id: str | None = None,
               reason: str | None = None, at: datetime | None = None) -> bool:
        """Clear an opt-out. Returns True if the state changed (False if not opted out)."""
        return self._set(sender, recipient, False, source=source, keyword=keyword, text=text,
                         inbound_message_id=inbound_message_id, reason=reason, at=at)

    def _set(self, sender: str, recipient: str, opted_out: bool, **info: Any) -> bool:
        partition = self._partition_for(sender)
        now = info.get("at") or datetime.now(UTC)
        before = self.get(sender, recipient)
        # Never changed counts as opted in: a START from someone who never opted out is none.
        changed = (before.opted_out if before is not None else False) != opted_out
        # History first: an audit row without a state change is harmless on a retry, a state
        # change without its audit row would not be.
        entry = OptOutHistoryRecord(sender=partition, recipient=recipient,
                            action="opt-out" if opted_out else "opt-in", at=now,
                            source=str(info["source"]), keyword=info.get("keyword"),
                            text=info.get("text"),
                            inbound_message_id=info.get("inbound_message_id"),
                            reason=info.get("reason"))
        hist: dict[str, Any] = {
            "PartitionKey": f"{partition}|{recipient}",
            "RowKey": f"{now.astimezone(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}-{_row_suffix(info)}",
            "Action": entry.action, "At": now, "Source": entry.source, "Changed": changed}
        for key, value in (("Keyword", entry.keyword), ("Text", entry.text),
                           ("InboundMessageId", entry.inbound_message_id),
                           ("Reason", entry.reason)):
            if value is not None:
                hist[key] = value
        state: dict[str, Any] = {"PartitionKey": partition, "RowKey": recipient,
                                 "OptedOut": opted_out, "UpdatedAt": now,
                                 "Source": entry.source}
        if entry.keyword:
            state["Keyword"] = entry.keyword
        with _STORAGE:
            if info.get("inbound_message_id"):
                self._history.upsert_entity(hist, mode=UpdateMode.REPLACE)
            else:
                self._history.create_entity(hist)
            self._state.upsert_entity(state, mode=UpdateMode.REPLACE)
        return changed

    def list_opted_out(self, partition: str) -> list[OptOutStateRecord]:
        """Every recipient currently opted out in one partition (a sender, or `global`)."""
        with _STORAGE:
            rows = list(self._state.query_entities(
                "PartitionKey eq @pk and OptedOut eq true", parameters={"pk": partition}))
        return [OptOutStateRecord(sender=partition, recipient=str(r["RowKey"]), opted_out=True,
                             updated_at=r["UpdatedAt"], source=r.get("Source"),
                             keyword=r.get("Keyword")) for r in rows]

    # -- audit --------------------------------------------------------------------------------

    def history(self, sender: str, recipient: str) -> list[OptOutHistoryRecord]:
        """Every change of the pair (in the configured scope), oldest first."""
        partition = self._partition_for(sender)
        with _STORAGE:
            rows = list(self._history.query_entities(
                "PartitionKey eq @pk", parameters={"pk": f"{partition}|{recipient}"}))
        rows.sort(key=lambda r: str(r["RowKey"]))
        return [OptOutHistoryRecord(sender=partition, recipient=recipient, action=r["Action"],
                            at=r["At"], source=r["Source"], keyword=r.get("Keyword"),
                            text=r.get("Text"), inbound_message_id=r.get("InboundMessageId"),
                            reason=r.get("Reason")) for r in rows]
