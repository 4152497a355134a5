"""The opt-out state as the rest of the app sees it: records, the global scope, the sources.

No I/O here: `optout_store.store` keeps them in Table storage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

GLOBAL_SENDER = "global"


Source = Literal["keyword", "api", "carrier", "admin"]


@dataclass(frozen=True, slots=True)
class OptOutStateRecord:
    """The current opt-out state of one (sender, recipient) pair."""

    sender: str
    recipient: str
    opted_out: bool
    updated_at: datetime
    source: str | None = None
    keyword: str | None = None


@dataclass(frozen=True, slots=True)
class OptOutHistoryRecord:
    """One row of the append-only history."""

    sender: str
    recipient: str
    action: Literal["opt-out", "opt-in"]
    at: datetime
    source: str
    keyword: str | None = None
    text: str | None = None
    inbound_message_id: str | None = None
    reason: str | None = None
