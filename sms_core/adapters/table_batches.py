"""Writing or deleting many rows of one partition: entity-group transactions of 100, side by side.

azure-core does not retry a POST whose connection dropped, and a transaction is a POST; every
write here is safe to repeat, so it is retried here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from azure.core.exceptions import (
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from sms_core.adapters.azure_errors import error_code
from sms_core.adapters.message_store import ENTITY_GROUP_LIMIT
from sms_core.concurrency import run_all

_ATTEMPTS = 4


def write_new_rows(table: TableClient, entities: Sequence[dict[str, Any]]) -> None:
    """Insert rows (all in one partition) that are new, with transactions of 100 in parallel.

    Inserts, not upserts: the service (and Azurite far more) does less work for an insert. Rows
    can exist only when a crashed attempt is retried with the same keys; that chunk is then
    written again as upserts, so the call stays idempotent. Azure errors propagate: the
    calling store translates them (`azure_errors.storage_errors`).
    """
    def write(chunk: Sequence[dict[str, Any]]) -> None:
        try:
            table.submit_transaction([("create", e) for e in chunk])
        except TableTransactionError as exc:
            if error_code(exc) != "EntityAlreadyExists":
                raise
            _upsert(table, chunk)

    _in_transactions(entities, write)


def upsert_rows(table: TableClient, entities: Sequence[dict[str, Any]]) -> None:
    """Replace (or insert) rows, all in one partition, with transactions of 100 in parallel."""
    _in_transactions(entities, lambda chunk: _upsert(table, chunk))


def delete_rows(table: TableClient, partition_key: str, row_keys: Sequence[str]) -> None:
    """Delete rows of one partition, with transactions of 100 in parallel; rows that are gone
    already (an earlier attempt, another deleter) are no error."""
    def delete(chunk: Sequence[dict[str, Any]]) -> None:
        try:
            table.submit_transaction([("delete", e) for e in chunk])
        except TableTransactionError as exc:
            if error_code(exc) != "ResourceNotFound":
                raise
            for e in chunk:  # one of them was gone: the transaction changed nothing
                with contextlib.suppress(ResourceNotFoundError):
                    table.delete_entity(e["PartitionKey"], e["RowKey"])

    _in_transactions([{"PartitionKey": partition_key, "RowKey": k} for k in row_keys], delete)


def _upsert(table: TableClient, chunk: Sequence[dict[str, Any]]) -> None:
    table.submit_transaction([("upsert", e, {"mode": UpdateMode.REPLACE}) for e in chunk])


def _in_transactions(entities: Sequence[dict[str, Any]],
                     write: Callable[[Sequence[dict[str, Any]]], None]) -> None:
    chunks = [entities[i:i + ENTITY_GROUP_LIMIT]
              for i in range(0, len(entities), ENTITY_GROUP_LIMIT)]

    def attempt(chunk: Sequence[dict[str, Any]]) -> None:
        for n in range(1, _ATTEMPTS + 1):
            try:
                write(chunk)
                return
            except (ServiceRequestError, ServiceResponseError):
                if n == _ATTEMPTS:
                    raise
                time.sleep(0.2 * n)

    run_all(attempt, chunks)
