"""Health: does storage answer?"""

from __future__ import annotations

from sms_core.adapters.storage import StorageClients


def check_health(storage: StorageClients) -> dict[str, str]:
    """`{"status": "ok"}` when storage answers; raises StorageUnavailable (503) otherwise."""
    storage.probe()
    return {"status": "ok"}
