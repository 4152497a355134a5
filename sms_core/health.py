"""Health: does storage answer?"""

from __future__ import annotations

from azure.core.exceptions import AzureError

from sms_core.app import Services
from sms_core.errors import StorageUnavailable
from sms_core.storage import MESSAGES_TABLE


def check_health(services: Services) -> dict[str, str]:
    """`{"status": "ok"}` when Table storage answers; raises StorageUnavailable otherwise."""
    try:
        next(iter(services.storage.table(MESSAGES_TABLE).query_entities(
            "PartitionKey eq 'health'", results_per_page=1)), None)
    except AzureError as exc:
        raise StorageUnavailable(f"Storage does not answer: {type(exc).__name__}") from exc
    return {"status": "ok"}
