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



def test_a_priority_slot_is_now_and_pushes_the_backlog_on(azurite_connection_string: str) -> None:
    clock = [1000.0]
    pacer = SenderPacer(table(azurite_connection_string), 60, clock=lambda: clock[0])
    assert pacer.reserve("+18005550100", 300) == 1000.0  # 300 at 1/s: the TAT is at 1300
    assert pacer.reserve("+18005550100", 1, priority=True) == 1000.0  # a STOP reply: now
    assert pacer.reserve("+18005550100", 1) == 1301.0  # the bulk lane makes room for it


def test_reserve_within_reserves_nothing_when_the_slot_is_later(
        azurite_connection_string: str) -> None:
    clock = [1000.0]
    other = SenderPacer(table(azurite_connection_string), 60, clock=lambda: clock[0])
    pacer = SenderPacer(other._table, 60, clock=lambda: clock[0])
    assert pacer.reserve_within("+18005550100", 1, 0.5) == 1000.0
    assert pacer.reserve_within("+18005550100", 1, 0.5) is None  # next slot at 1001
    assert other.reserve("+18005550100", 1) == 1001.0  # nothing was taken by the refusal


def test_slots_given_back_pull_the_backlog_in(azurite_connection_string: str) -> None:
    clock = [1000.0]
    pacer = SenderPacer(table(azurite_connection_string), 60, clock=lambda: clock[0])
    pacer.reserve("+18005550100", 100)  # TAT 1100
    pacer.give_back("+18005550100", 40)  # 40 of them opted out before their slot
    assert pacer.reserve("+18005550100", 1) == 1060.0
    clock[0] = 2000.0
    pacer.give_back("+18005550100", 5)  # nothing left to give back: the TAT is past
    assert pacer.reserve("+18005550100", 1) == 2000.0
