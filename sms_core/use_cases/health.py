"""Health: does storage answer?"""

from __future__ import annotations

from sms_core.use_cases.ports import StorageProbe


def check_health(storage: StorageProbe) -> dict[str, str]:
    """`{"status": "ok"}` when storage answers; raises StorageUnavailable (503) otherwise."""
    storage.probe()
    return {"status": "ok"}
