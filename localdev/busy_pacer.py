"""A pacer whose bulk lane never has room right now, for tests and the bench.

`accept_send` sends a small request inline only when the sender's pace has a slot now; with
this wrapper it never has, so every accepted bulk message goes on `sms-outbound` (as when a
campaign keeps the sender busy) and the queue path can be exercised or measured on its own.
Priority reservations (keyword replies) and dispatch's own reservations are the real pacer's.
"""

from __future__ import annotations

from sms_core.use_cases.ports import Pacer


class BusyBulkLane:
    """The real pacer, except that `reserve_within` grants no bulk slot."""

    def __init__(self, pacer: Pacer) -> None:
        self._pacer = pacer

    def reserve(self, sender: str, count: int, *, priority: bool = False) -> float:
        """The real pacer's `reserve`."""
        return self._pacer.reserve(sender, count, priority=priority)

    def reserve_within(self, sender: str, count: int, within_s: float | None, *,
                       priority: bool = False) -> float | None:
        """No bulk slot now (the messages are queued); a priority one as the real pacer."""
        if not priority:
            return None
        return self._pacer.reserve_within(sender, count, within_s, priority=True)

    def give_back(self, sender: str, count: int) -> None:
        """The real pacer's `give_back`."""
        self._pacer.give_back(sender, count)
