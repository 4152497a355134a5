"""Per-sender pacing shared by every dispatcher instance (a GCRA on one Table entity).

Each sender has a "theoretical arrival time" (TAT): the moment its next message may go.
Reserving n messages moves the TAT forward by n * (60 / rate) seconds with an ETag-guarded
update, so concurrent instances never hand out the same slot. A dispatcher whose slot is more
than a moment away puts its job back on the queue with that delay instead of sleeping.

Within one process, reservations for a sender are serialised and the last TAT and ETag are kept,
so a reservation is usually one conditional write; another instance's write shows up as a 412,
after which the entity is read again.

Two lanes share the pace. A bulk reservation queues behind every slot already handed out. A
priority reservation (the reply to a recipient's keyword) takes the slot *now* and pushes the TAT
on by its share, so it overtakes a backlog while the sender's long-run rate stays the same.
Messages that were paced but then not sent (the recipient opted out meanwhile) give their share
back, which pulls the TAT in again.
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
# (TAT, now) -> (the slot handed out, the new TAT), or None to write nothing.
_Move = Callable[[float, float], "tuple[float, float] | None"]


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

    def reserve(self, sender: str, count: int, *, priority: bool = False) -> float:
        """Reserve `count` messages for `sender`; returns the epoch second they may be sent.

        `priority` takes the slot now, ahead of the bulk backlog.
        """
        slot = self.reserve_within(sender, count, None, priority=priority)
        assert slot is not None  # without a limit there is always a slot
        return slot

    def reserve_within(self, sender: str, count: int, within_s: float | None, *,
                       priority: bool = False) -> float | None:
        """`reserve`, but only if the slot is at most `within_s` seconds away; else nothing is
        reserved and None is returned (the caller queues the messages instead)."""
        def move(tat: float, now: float) -> tuple[float, float] | None:
            start = now if priority else max(tat, now)
            if within_s is not None and start - now > within_s:
                return None
            return start, max(tat, now) + count * self._interval

        return self._update(sender, move)

    def give_back(self, sender: str, count: int) -> None:
        """Return the share of `count` reserved messages that were not sent after all."""
        self._update(sender, lambda tat, now: (
            now, max(tat - count * self._interval, now)) if tat > now else None)

    def _update(self, sender: str, move: _Move) -> float | None:
        with self._lock_for(sender):
            for _ in range(50):
                try:
                    return self._try_update(sender, move)
                except _CONFLICTS:
                    self._known.pop(sender, None)  # another instance moved it: read again
                except StorageUnavailable:
                    self._known.pop(sender, None)  # the write may have happened: read again
                    raise
        raise StorageUnavailable(f"Could not reserve a send slot for {sender}: too much contention")

    @storage_errors("Pacing", keep=_CONFLICTS)
    def _try_update(self, sender: str, move: _Move) -> float | None:
        now = self._clock()
        known = self._known.get(sender)
        if known is None:
            try:
                entity = self._table.get_entity(sender, _ROW)
            except ResourceNotFoundError:
                decided = move(now, now)
                if decided is None:
                    return None
                meta = self._table.create_entity({"PartitionKey": sender, "RowKey": _ROW,
                                                  "Tat": decided[1]})
                self._remember(sender, decided[1], meta)
                return decided[0]
            known = (float(entity["Tat"]), str(entity.metadata["etag"]))
        tat, etag = known
        decided = move(tat, now)
        if decided is None:
            return None
        start, new_tat = decided
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
