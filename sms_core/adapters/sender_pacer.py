"""Per-sender pacing shared by every dispatcher instance (a GCRA on one Table entity).

Each sender has a "theoretical arrival time" (TAT): the moment its next message may go.
Reserving n messages moves the TAT forward by n * (60 / rate) seconds with an ETag-guarded
update, so concurrent instances never hand out the same slot. A dispatcher whose slot is more
than a moment away puts its job back on the queue with that delay instead of sleeping.

Within one process, reservations for a sender are serialised and the last TAT and ETag are kept,
so a reservation is usually one conditional write; another instance's write shows up as a 412,
after which the entity is read again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from sms_core.adapters.azure_errors import storage_errors
from sms_core.errors import StorageUnavailable

_ROW = "pace"
# Another instance moved the sender's entity first: `reserve` reads it again and retries.
_CONFLICTS = (ResourceExistsError, ResourceModifiedError)


class SenderPacer:
    """Hands out send slots per sender at `rate_per_minute`."""

    def __init__(self, table: TableClient, rate_per_minute: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._interval = 60.0 / rate_per_minute
        self._clock = clock
        self._known: dict[str, tuple[float, str]] = {}  # sender -> (TAT, ETag) last written
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock_for(self, sender: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(sender, threading.Lock())

    def reserve(self, sender: str, count: int) -> float:
        """Reserve `count` messages for `sender`; returns the epoch second they may be sent."""
        with self._lock_for(sender):
            for _ in range(50):
                try:
                    return self._try_reserve(sender, count)
                except _CONFLICTS:
                    self._known.pop(sender, None)  # another instance moved it: read again
                except StorageUnavailable:
                    self._known.pop(sender, None)  # the write may have happened: read again
                    raise
        raise StorageUnavailable(f"Could not reserve a send slot for {sender}: too much contention")

    @storage_errors("Pacing", keep=_CONFLICTS)
    def _try_reserve(self, sender: str, count: int) -> float:
        now = self._clock()
        known = self._known.get(sender)
        if known is None:
            try:
                entity = self._table.get_entity(sender, _ROW)
            except ResourceNotFoundError:
                meta = self._table.create_entity({"PartitionKey": sender, "RowKey": _ROW,
                                                  "Tat": now + count * self._interval})
                self._remember(sender, now + count * self._interval, meta)
                return now
            known = (float(entity["Tat"]), str(entity.metadata["etag"]))
        tat, etag = known
        start = max(tat, now)
        new_tat = start + count * self._interval
        meta = self._table.update_entity(
            {"PartitionKey": sender, "RowKey": _ROW, "Tat": new_tat}, mode=UpdateMode.REPLACE,
            etag=etag, match_condition=MatchConditions.IfNotModified)
        self._remember(sender, new_tat, meta)
        return start

    def _remember(self, sender: str, tat: float, meta: Any) -> None:
        etag = meta.get("etag") if isinstance(meta, dict) else None
        if etag:
            self._known[sender] = (tat, str(etag))
        else:
            self._known.pop(sender, None)
