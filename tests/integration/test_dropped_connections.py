"""Storage connections that drop under a request (a keep-alive closed by the server as the
request left, a reset): azure-core retries reads and single-entity writes itself, not the
entity-group transactions (POSTs), so the stores that repeat them are tested here through the
proxy, which drops the connection without an answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localdev.acs_emulator import AcsEmulator
from localdev.storage_proxy import Fault, RequestInfo, StorageProxy
from sms_core.adapters.storage import AUDIENCES_TABLE
from sms_core.models.records import MemberRecord
from tests.integration.conftest import make_services, new_number, storage_endpoints


@pytest.fixture
def proxy(azurite_connection_string: str) -> Iterator[StorageProxy]:
    with StorageProxy(storage_endpoints(azurite_connection_string)) as running:
        yield running


def test_deleting_an_audience_survives_connections_dropped_under_its_transactions(
        proxy: StorageProxy, emulator: AcsEmulator) -> None:
    """azure-core does not retry a transaction (a POST) whose connection dropped: the member
    rows' deletes retry it themselves, and a retry that finds rows gone is no error."""
    services = make_services(proxy.connection_string(), emulator)
    info = services.audiences.create("dropped", [MemberRecord(new_number(), {"n": str(i)})
                                                 for i in range(250)])
    dropped: list[int] = []

    def drop_first_two(request: RequestInfo) -> Fault | None:
        if request.kind != "batch" or len(dropped) >= 2:
            return None
        dropped.append(1)
        return Fault(drop=True)

    proxy.fault = drop_first_two
    services.audiences.delete(info.id)
    proxy.fault = None
    assert len(dropped) == 2
    members = services.storage.table(AUDIENCES_TABLE).query_entities(
        "PartitionKey ge @lo and PartitionKey lt @hi",
        parameters={"lo": f"{info.id}", "hi": f"{info.id}~"}, select=["RowKey"])
    assert list(members) == []
