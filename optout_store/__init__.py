"""The opt-out state: a Table-backed store with an append-only history."""

from optout_store.records import GLOBAL_SENDER, OptOutHistoryRecord, OptOutStateRecord, Source
from optout_store.store import OptOutStore

__all__ = ["GLOBAL_SENDER", "OptOutHistoryRecord", "OptOutStateRecord", "OptOutStore", "Source"]
