"""Per-sender pacing shared by every dispatcher instance (a GCRA on one Table entity).

Each sender has a "theoretical arrival time" (TAT): the moment its next message may go.
Reserving n messages moves the TAT forward by n * (60 / rate) seconds with an ETag-guarded
update, so concurrent instances never hand out the same slot. A dispatcher whose slot is more
than a moment away puts its job back on the queue with that delay instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from sms_core.errors import StorageUnavailable

_ROW = "pace"


class SenderPacer:
    """Hands out send slots per sender at `rate_per_minute`."""

    def __init__(self, table: TableClient, rate_per_minute: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._interval = 60.0 / rate_per_minute
        self._clock = clock

    def reserve(self, sender: str, count: int) -> float:
        """Reserve `count` messages for `sender`; returns the epoch second they may be sent."""
        for _ in range(50):
            now = self._clock()
            try:
                try:
                    entity = self._table.get_entity(sender, _ROW)
                except ResourceNotFoundError:
                    self._table.create_entity({"PartitionKey": sender, "RowKey": _ROW,
                                               "Tat": now + count * self._interval})
                    return now
                start = max(float(entity["Tat"]), now)
                entity["Tat"] = start + count * self._interval
                self._table.update_entity(entity, mode=UpdateMode.REPLACE,
                                          etag=entity.metadata["etag"],
                                          match_condition=MatchConditions.IfNotModified)
                return start
            except (ResourceExistsError, ResourceModifiedError):
                continue  # another instance took a slot first: read again
            except AzureError as exc:
                raise StorageUnavailable(f"Pacing storage failed: {exc}") from exc
        raise StorageUnavailable(f"Could not reserve a send slot for {sender}: too much contention")
