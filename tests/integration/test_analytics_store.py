"""AnalyticsStore against Azurite: exact counts under redelivery and parallel ingesters."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError

from sms_core.adapters.analytics_store import AnalyticsStore
from sms_core.errors import RequestInvalid, StorageUnavailable
from sms_core.rules.analytics import COUNTERS, Fact, rates

A, B, C = "+18005550101", "+18005550102", "+18005550103"
D1, D2, D3 = date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)


def new_table(storage: str) -> TableClient:
    service = TableServiceClient.from_connection_string(storage)
    return service.create_table(f"Analytics{uuid.uuid4().hex[:10]}")


def client_for(storage: str, table: TableClient) -> TableClient:
    """Another client of the same table, as a separate function instance would have."""
    return TableClient.from_connection_string(storage, table.table_name)


@pytest.fixture
def table(azurite_connection_string: str) -> TableClient:
    return new_table(azurite_connection_string)


@pytest.fixture
def store(table: TableClient) -> AnalyticsStore:
    return AnalyticsStore(table)


def sent(mid: str, day: date, sender: str, tag: str | None, segments: int = 1) -> Fact:
    return Fact(f"status-{mid}-sent", day, sender, tag, {"sent": 1, "segments": segments})


def outcome(mid: str, status: str, day: date, sender: str, tag: str | None) -> Fact:
    return Fact(f"status-{mid}-{status}", day, sender, tag, {status: 1})


def summed(facts: Iterable[Fact]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for f in facts:
        total.update(f.counts)
    return {name: total[name] for name in COUNTERS}


def counters_of(row: Mapping[str, object]) -> dict[str, object]:
    return {name: row[name] for name in COUNTERS}


def rows_in(table: TableClient, day: date, prefix: str) -> list[str]:
    return [str(e["RowKey"]) for e in table.query_entities(
        "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
        parameters={"pk": day.isoformat(), "lo": prefix, "hi": prefix[:-1] + "}"},
        select=["RowKey"])]


# -- counting ---------------------------------------------------------------------------------


def scenario() -> list[Fact]:
    return [
        sent("m1", D1, A, "promo", 2), sent("m2", D1, A, "promo", 1), sent("m3", D1, A, None),
        sent("m4", D1, B, "promo", 3), sent("m5", D2, A, "news"),
        outcome("m1", "delivered", D1, A, "promo"), outcome("m2", "failed", D1, A, "promo"),
        outcome("m3", "expired", D1, A, None), outcome("m4", "delivered", D1, B, "promo"),
        Fact("status-m6-blocked", D1, A, "promo", {"blocked": 1}),
        Fact("status-m7-rejected", D2, B, None, {"rejected": 1}),
        Fact("inbound-i1", D1, A, "promo", {"inbound": 1, "responses": 1, "optOuts": 1}),
        Fact("inbound-i2", D2, A, None, {"inbound": 1, "optIns": 1}),
        Fact("status-m8-failed", D2, B, "news", {"failed": 1, "unverifiedTollFree": 1}),
    ]


def test_counts_per_day_sender_and_tag_with_totals(store: AnalyticsStore) -> None:
    facts = scenario()
    assert store.record(facts) == len(facts)

    report = store.query(D1, D2)
    assert [d["date"] for d in report.days] == ["2024-03-01", "2024-03-02"]
    day1 = summed(f for f in facts if f.day == D1)
    day2 = summed(f for f in facts if f.day == D2)
    assert counters_of(report.days[0]) == day1
    assert counters_of(report.days[1]) == day2
    assert day1["sent"] == 4 and day1["segments"] == 7 and day1["delivered"] == 2
    assert report.days[0]["deliveryRate"] == 0.5  # 2 delivered of 4 outcomes
    assert report.days[0]["optOutRate"] == 0.25 and report.days[0]["responseRate"] == 0.25
    assert report.days[1]["deliveryRate"] == 0.0  # m8 failed, nothing delivered
    assert counters_of(report.totals) == summed(facts)
    assert {k: report.totals[k] for k in rates({})} == rates(summed(facts))

    by_sender = store.query(D1, D2, sender=A)
    assert counters_of(by_sender.totals) == summed(f for f in facts if f.sender == A)
    by_tag = store.query(D1, D2, tag="promo")
    assert counters_of(by_tag.totals) == summed(f for f in facts if f.tag == "promo")
    assert by_tag.totals["segments"] == 6
    both = store.query(D1, D2, sender=B, tag="news")
    assert counters_of(both.totals) == summed(f for f in facts
                                              if f.sender == B and f.tag == "news")
    assert store.query(D1, D2, sender=C).totals["sent"] == 0
    assert store.query(D1, D2, tag="nope").totals["sent"] == 0

    body = report.public()
    assert set(body) == {"totals", "days"}
    assert set(body["days"][0]) == {"date", *COUNTERS, "deliveryRate", "optOutRate",
                                    "responseRate"}


def test_the_same_facts_again_change_nothing(store: AnalyticsStore) -> None:
    facts = scenario()
    assert store.record(facts) == len(facts)
    before = store.query(D1, D3).public()
    assert store.record(facts) == 0
    assert store.record(list(reversed(facts))[:5]) == 0
    assert store.query(D1, D3).public() == before


def test_partially_overlapping_batches_count_each_fact_once(store: AnalyticsStore,
                                                            table: TableClient) -> None:
    rng = random.Random(7)
    facts = [sent(f"p{i}", rng.choice([D1, D2]), rng.choice([A, B]),
                  rng.choice([None, "x"]), rng.randint(1, 4)) for i in range(300)]
    assert store.record(facts[:120]) == 120
    assert store.record(facts[80:200]) == 80
    assert store.record(facts[150:] + facts[:10]) == 100
    assert store.record(facts) == 0
    assert counters_of(store.query(D1, D2).totals) == summed(facts)
    assert len(rows_in(table, D1, "l|")) + len(rows_in(table, D2, "l|")) == 300


def test_a_fact_twice_in_one_call_counts_once(store: AnalyticsStore) -> None:
    f = sent("dup", D1, A, None, 2)
    assert store.record([f, f, sent("other", D1, A, None)]) == 2
    assert store.query(D1, D1).totals["segments"] == 3


def test_more_than_99_facts_for_one_counter_row(table: TableClient) -> None:
    store = AnalyticsStore(table, shards=1)  # every fact on the same counter row
    facts = [sent(f"big{i:03d}", D1, A, "bulk", 1 + i % 3) for i in range(250)]
    assert store.record(facts[:250]) == 250  # 3 transactions: 99 + 99 + 52
    assert rows_in(table, D1, "c|") == [f"c|{A}|bulk|00"]
    assert len(rows_in(table, D1, "l|")) == 250
    totals = store.query(D1, D1).totals
    assert totals["sent"] == 250 and totals["segments"] == summed(facts)["segments"]

    more = [sent(f"big{i:03d}", D1, A, "bulk") for i in range(250, 260)]
    # 170 facts over two transactions, only the last 10 new, across a chunk boundary.
    assert store.record(facts[90:] + more) == 10
    assert store.query(D1, D1).totals["sent"] == 260


def test_large_totals_are_int64(store: AnalyticsStore, table: TableClient) -> None:
    huge = 3_000_000_000  # above Edm.Int32
    assert store.record([sent("h1", D1, A, None, huge), sent("h2", D1, A, None, huge)]) == 2
    assert store.record([sent("h3", D1, A, None, 5)]) == 1
    assert store.query(D1, D1).totals["segments"] == 2 * huge + 5


def test_awkward_ids_senders_and_tags(store: AnalyticsStore) -> None:
    facts = [
        Fact("inbound-a/b\\c#d?e", D1, "+1800/5550100", "a|b", {"inbound": 1}),
        Fact("inbound-tab\there\x00\x7f", D1, "+1800/5550100", "a|b", {"inbound": 1}),
        Fact("inbound-" + "z" * 3000, D1, A, "-", {"inbound": 1}),
        Fact("inbound-é😀", D1, A, "x" * 500, {"inbound": 1}),
        Fact("inbound-quote'it", D1, A, "it's", {"inbound": 1}),
    ]
    assert store.record(facts) == 5
    assert store.record(facts) == 0
    assert store.query(D1, D1, sender="+1800/5550100", tag="a|b").totals["inbound"] == 2
    assert store.query(D1, D1, tag="-").totals["inbound"] == 1
    assert store.query(D1, D1, tag="x" * 500).totals["inbound"] == 1
    assert store.query(D1, D1, tag="x" * 499).totals["inbound"] == 0
    assert store.query(D1, D1, tag="it's").totals["inbound"] == 1
    assert store.query(D1, D1).totals["inbound"] == 5


def test_a_different_shard_count_still_recognises_counted_facts(table: TableClient) -> None:
    facts = [sent(f"s{i}", D1, A, None) for i in range(40)]
    assert AnalyticsStore(table, shards=8).record(facts) == 40
    # The ledger keys on the fact id alone, so re-sharding never counts a fact twice.
    assert AnalyticsStore(table, shards=3).record(facts) == 0
    assert AnalyticsStore(table, shards=3).query(D1, D1).totals["sent"] == 40


# -- queries ----------------------------------------------------------------------------------


def test_empty_days_are_present_with_zeros(store: AnalyticsStore) -> None:
    store.record([sent("e1", D2, A, None), outcome("e1", "delivered", D2, A, None)])
    report = store.query(D1 - timedelta(days=2), D3 + timedelta(days=1))
    assert [d["date"] for d in report.days] == [
        "2024-02-28", "2024-02-29", "2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"]
    for d in report.days:
        if d["date"] != "2024-03-02":
            assert all(d[name] == 0 for name in COUNTERS)
            assert d["deliveryRate"] is None and d["optOutRate"] is None
    assert report.days[3]["sent"] == 1 and report.days[3]["deliveryRate"] == 1.0
    assert report.totals["sent"] == 1


def test_range_limits(store: AnalyticsStore) -> None:
    with pytest.raises(RequestInvalid) as exc:
        store.query(D1, D1 + timedelta(days=366))  # 367 days
    assert [e.field for e in exc.value.errors] == ["to"]
    with pytest.raises(RequestInvalid) as exc:
        store.query(D2, D1)
    assert [e.field for e in exc.value.errors] == ["from"]
    year = store.query(date(2024, 1, 1), date(2024, 12, 31))  # 366 days, a leap year
    assert len(year.days) == 366 and year.totals["sent"] == 0


def test_a_missing_table_reads_as_zeros_and_refuses_writes(azurite_connection_string: str
                                                          ) -> None:
    missing = TableClient.from_connection_string(azurite_connection_string,
                                                 f"Nothing{uuid.uuid4().hex[:10]}")
    store = AnalyticsStore(missing)
    assert store.query(D1, D2).totals["sent"] == 0
    with pytest.raises(StorageUnavailable):
        store.record([sent("x", D1, A, None)])


# -- concurrency ------------------------------------------------------------------------------


def random_fact(rng: random.Random, i: int) -> Fact:
    day = rng.choice([D1, D2])
    sender = rng.choice([A, B])
    tag = rng.choice([None, "promo"])
    kind = rng.randrange(6)
    if kind == 0:
        return sent(f"r{i}", day, sender, tag, rng.randint(1, 5))
    if kind in (1, 2, 3):
        status = ("delivered", "failed", "expired")[kind - 1]
        return outcome(f"r{i}", status, day, sender, tag)
    if kind == 4:
        return Fact(f"inbound-r{i}", day, sender, tag,
                    {"inbound": 1, "responses": rng.randint(0, 1), "optOuts": rng.randint(0, 1)})
    return Fact(f"status-r{i}-blocked", day, sender, tag, {"blocked": 1})


def run_ingesters(storage: str, table: TableClient, work: Sequence[Sequence[Fact]],
                  seed: int, shards: int = 8,
                  wrap: Callable[[TableClient], Any] = lambda t: t) -> list[int]:
    """Each list of facts recorded by its own thread and TableClient, in random batch sizes."""
    results = [0] * len(work)
    errors: list[BaseException] = []
    start = threading.Barrier(len(work))

    def ingest(n: int) -> None:
        try:
            store = AnalyticsStore(wrap(client_for(storage, table)), shards)
            rng = random.Random(seed + n)
            facts = list(work[n])
            start.wait()
            i = 0
            while i < len(facts):
                size = rng.randint(1, 120)
                results[n] += store.record(facts[i:i + size])
                i += size
        except BaseException as exc:  # re-raised by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=ingest, args=(n,)) for n in range(len(work))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_a_kept_counter_row_outdated_by_another_instance_loses_no_increment(
        table: TableClient) -> None:
    ours, theirs = AnalyticsStore(table, shards=1), AnalyticsStore(table, shards=1)
    facts = [sent(f"k{i}", D1, A, "otp") for i in range(30)]
    for i, fact in enumerate(facts):  # each instance writes on top of the other's sums
        assert (ours if i % 3 else theirs).record([fact]) == 1
    assert ours.record(facts) == theirs.record(facts) == 0
    assert counters_of(AnalyticsStore(table, shards=1).query(D1, D1).totals) == summed(facts)


def test_four_parallel_ingesters_with_heavy_overlap_count_exactly(
        azurite_connection_string: str, table: TableClient) -> None:
    rng = random.Random(20240301)
    facts = [random_fact(rng, i) for i in range(2000)]
    work: list[list[Fact]] = [[], [], [], []]
    for f in facts:  # every fact goes to 2 of the 4 ingesters
        for n in rng.sample(range(4), 2):
            work[n].append(f)
    for w in work:
        rng.shuffle(w)

    began = time.perf_counter()
    counted = run_ingesters(azurite_connection_string, table, work, seed=99)
    elapsed = time.perf_counter() - began
    print(f"\n4 ingesters, 2,000 facts x 2 submissions: {elapsed:.2f} s")  # informational

    assert sum(counted) == 2000  # each fact newly counted by exactly one ingester
    store = AnalyticsStore(table)
    assert counters_of(store.query(D1, D2).totals) == summed(facts)
    for day in (D1, D2):
        for sender in (A, B):
            got = store.query(day, day, sender=sender).totals
            assert counters_of(got) == summed(f for f in facts
                                              if f.day == day and f.sender == sender)
            got = store.query(day, day, sender=sender, tag="promo").totals
            assert counters_of(got) == summed(f for f in facts if f.day == day
                                              and f.sender == sender and f.tag == "promo")
    assert len(rows_in(table, D1, "l|")) + len(rows_in(table, D2, "l|")) == 2000
    # Redelivered once more, all at once: nothing changes.
    assert run_ingesters(azurite_connection_string, table, [facts[:1000], facts[1000:]],
                         seed=5) == [0, 0]
    assert counters_of(store.query(D1, D2).totals) == summed(facts)


def test_parallel_first_writes_to_a_new_counter_row(azurite_connection_string: str,
                                                    table: TableClient) -> None:
    # 8 writers race to insert the same brand-new counter row, on 10 fresh days.
    for k in range(10):
        day = D1 + timedelta(days=k)
        work = [[sent(f"first{k}-{n}", day, A, "race", n + 1)] for n in range(8)]
        counted = run_ingesters(azurite_connection_string, table, work, seed=k, shards=1)
        assert counted == [1] * 8
        totals = AnalyticsStore(table, shards=1).query(day, day).totals
        assert totals["sent"] == 8 and totals["segments"] == sum(range(1, 9))


class WithoutIndex:
    """A TableClient whose transaction errors do not name the failed operation."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def __getattr__(self, name: str) -> object:
        return getattr(self._table, name)

    def submit_transaction(self, ops: list[object]) -> object:
        try:
            return self._table.submit_transaction(ops)  # type: ignore[arg-type]
        except TableTransactionError as exc:
            bare = TableTransactionError(message="The specified entity already exists.")
            bare.error_code = exc.error_code  # type: ignore[attr-defined]
            raise bare from exc


def test_conflicts_are_resolved_without_an_operation_index(azurite_connection_string: str,
                                                           table: TableClient) -> None:
    facts = [sent(f"n{i}", D1, A, None) for i in range(30)]
    AnalyticsStore(table, shards=1).record(facts[:10])
    store = AnalyticsStore(WithoutIndex(table), shards=1)  # type: ignore[arg-type]
    assert store.record(facts) == 20  # redelivery: the ledger rows are read
    # A lost race for inserting a new counter row, told without an index.
    work = [[sent(f"n-race-{n}", D2, A, None)] for n in range(6)]
    assert run_ingesters(azurite_connection_string, table, work, seed=1, shards=1,
                         wrap=WithoutIndex) == [1] * 6
    assert store.query(D1, D2).totals["sent"] == 36


class HeldTransactions:
    """A TableClient that counts transactions and holds the first one open until released, so
    that other callers of the same store queue behind it."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self.transactions = 0
        self.first_started = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._table, name)

    def submit_transaction(self, ops: list[object]) -> object:
        self.transactions += 1
        if self.transactions == 1:
            self.first_started.set()
            assert self.release.wait(60)
        return self._table.submit_transaction(ops)  # type: ignore[arg-type]


def test_concurrent_callers_of_one_instance_share_transactions_and_count_exactly(
        table: TableClient) -> None:
    held = HeldTransactions(table)
    store = AnalyticsStore(held, shards=8)  # type: ignore[arg-type]
    facts = [sent(f"g{i}", D1, A, "otp") for i in range(40)]
    counted: dict[int, int] = {}

    def record(n: int, batch: list[Fact]) -> None:
        counted[n] = store.record(batch)

    first = threading.Thread(target=record, args=(-1, [sent("g-first", D1, A, "otp")]))
    first.start()
    assert held.first_started.wait(60)
    # 40 callers of one fact each, and 10 more bringing a fact another caller also brings
    # (an event delivered twice at once).
    callers = [threading.Thread(target=record, args=(i, [f])) for i, f in enumerate(facts)]
    callers += [threading.Thread(target=record, args=(100 + i, [facts[i]])) for i in range(10)]
    for t in callers:
        t.start()
    deadline = time.monotonic() + 60
    while store._together.waiting((D1, A, "otp")) < len(callers):  # the queue, from inside
        assert time.monotonic() < deadline, "the callers never queued"
        time.sleep(0.01)
    held.release.set()
    for t in [first, *callers]:
        t.join(60)

    assert counted[-1] == 1
    assert sum(counted.values()) == 41  # each fact counted by exactly one caller
    assert held.transactions == 2  # the first, and one for all 50 callers queued behind it
    assert AnalyticsStore(table).query(D1, D1).totals["sent"] == 41
    assert store.record(facts) == 0  # redelivered: nothing new
