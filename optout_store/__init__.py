"""The opt-out state: a Table-backed store with an append-only history."""

from optout_store.store import GLOBAL_SENDER, OptOutEntry, OptOutRecord, OptOutStore

__all__ = ["GLOBAL_SENDER", "OptOutEntry", "OptOutRecord", "OptOutStore"]
