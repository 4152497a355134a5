"""Per-sender pacing shared by concurrent dispatchers, against Azurite."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from azure.data.tables import TableServiceClient

from sms_core.adapters.sender_pacer import SenderPacer


def table(storage: str):  # type: ignore[no-untyped-def]
    return TableServiceClient.from_connection_string(storage).create_table(
        f"Pacing{uuid.uuid4().hex[:10]}")


def test_slots_follow_the_rate(azurite_connection_string: str) -> None:
    clock = [1000.0]
    pacer = SenderPacer(table(azurite_connection_string), 60, clock=lambda: clock[0])
    assert pacer.reserve("+18005550100", 10) == 1000.0
    assert pacer.reserve("+18005550100", 1) == 1010.0  # 10 messages at 1/s
    assert pacer.reserve("+18005550101", 1) == 1000.0  # another sender has its own pace
    clock[0] = 2000.0  # idle: no credit is banked beyond now
    assert pacer.reserve("+18005550100", 1) == 2000.0


def test_concurrent_instances_never_share_a_slot(azurite_connection_string: str) -> None:
    shared = table(azurite_connection_string)
    pacers = [SenderPacer(shared, 600, clock=lambda: 5000.0) for _ in range(4)]
    with ThreadPoolExecutor(8) as pool:
        slots = list(pool.map(lambda i: pacers[i % 4].reserve("+18005550100", 1), range(40)))
    assert sorted(round(s, 6) for s in slots) == [round(5000.0 + i * 0.1, 6) for i in range(40)]

