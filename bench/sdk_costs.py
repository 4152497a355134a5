"""`python -m bench.sdk_costs`: the client CPU one Table request costs, by kind, against Azurite.

What bounds the whole-path figure (8) on this machine: every storage request our path makes
costs the Python client (azure-data-tables on azure-core) this much CPU, and an entity-group
transaction several times more, because azure-core builds and parses its multipart body with
the `email` package on short-lived threads. Prints CPU and wall milliseconds per request for
300 requests of each kind, one at a time, after 20 warm-ups.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient

from localdev.azurite import start_azurite

REQUESTS = 300


def _kinds(table: TableClient) -> dict[str, Callable[[int], object]]:
    def point_read_404(i: int) -> object:
        try:
            return table.get_entity(f"absent{i}", "x")
        except ResourceNotFoundError:
            return None

    return {
        "insert one entity": lambda i: table.create_entity(
            {"PartitionKey": f"p{i}", "RowKey": "a", "X": 1}),
        "point read (404)": point_read_404,
        "transaction of 2 inserts": lambda i: table.submit_transaction(
            [("create", {"PartitionKey": f"t{i}", "RowKey": "a", "X": 1}),
             ("create", {"PartitionKey": f"t{i}", "RowKey": "b", "X": 1})]),
    }


def main() -> int:
    """Measure and print; 0 on success."""
    azurite = start_azurite()
    try:
        service = TableServiceClient.from_connection_string(azurite.connection_string)
        table = service.create_table("Costs" + uuid.uuid4().hex[:8])
        for name, request in _kinds(table).items():
            for i in range(20):
                request(-1 - i)
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(REQUESTS):
                request(i)
            cpu_ms = 1000 * (time.process_time() - cpu) / REQUESTS
            wall_ms = 1000 * (time.perf_counter() - wall) / REQUESTS
            print(f"{name:26s} {cpu_ms:5.2f} ms CPU  {wall_ms:5.2f} ms wall per request")
    finally:
        azurite.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
