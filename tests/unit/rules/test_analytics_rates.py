"""Analytics without storage: rates, the date range of a query, facts and their RowKeys."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from sms_core.adapters.analytics_store import (
    counter_row_key,
    key_part,
    ledger_row_key,
    parse_counter_row_key,
    shard_of,
    tag_part,
)
from sms_core.errors import RequestInvalid
from sms_core.rules.analytics import (
    COUNTERS,
    MAX_RANGE_DAYS,
    Fact,
    parse_date_range,
    rates,
    utc_day,
)

# What Table keys forbid, plus the separator our RowKeys use.
FORBIDDEN_IN_KEY = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


# -- rates ------------------------------------------------------------------------------------


def test_rates_of_typical_counts() -> None:
    r = rates({"sent": 200, "delivered": 150, "failed": 30, "expired": 20, "optOuts": 3,
               "responses": 17})
    assert r == {"deliveryRate": 0.75, "optOutRate": 0.015, "responseRate": 0.085}


def test_rates_are_none_when_their_denominator_is_zero() -> None:
    assert rates({}) == {"deliveryRate": None, "optOutRate": None, "responseRate": None}
    # Opt-outs and replies without anything sent (an inbound-only day): still no rate.
    assert rates({"optOuts": 2, "responses": 5, "inbound": 9}) == {
        "deliveryRate": None, "optOutRate": None, "responseRate": None}


def test_delivery_rate_counts_only_final_outcomes() -> None:
    # 100 sent, only 10 reports so far, all delivered: 1.0, not 0.1.
    r = rates({"sent": 100, "delivered": 10})
    assert r["deliveryRate"] == 1.0
    assert rates({"sent": 100, "failed": 4})["deliveryRate"] == 0.0
    assert rates({"sent": 100, "expired": 1, "delivered": 3})["deliveryRate"] == 0.75
    # sent == 0 but outcomes known (failed at send time): the delivery rate still exists.
    assert rates({"failed": 2})["deliveryRate"] == 0.0
    assert rates({"failed": 2})["optOutRate"] is None


def test_rates_round_to_four_decimals() -> None:
    r = rates({"sent": 3, "delivered": 1, "failed": 2, "optOuts": 2, "responses": 1})
    assert r == {"deliveryRate": 0.3333, "optOutRate": 0.6667, "responseRate": 0.3333}
    assert rates({"sent": 7, "optOuts": 1})["optOutRate"] == 0.1429
    assert rates({"sent": 1_000_000, "optOuts": 1})["optOutRate"] == 0.0


def test_rates_ignore_other_counters() -> None:
    assert rates({"sent": 10, "segments": 40, "blocked": 5, "rejected": 2, "inbound": 3,
                  "optIns": 1, "unverifiedTollFree": 9, "delivered": 5, "failed": 5}) == {
        "deliveryRate": 0.5, "optOutRate": 0.0, "responseRate": 0.0}


# -- parse_date_range -------------------------------------------------------------------------


def _field_of(exc: pytest.ExceptionInfo[RequestInvalid]) -> list[str]:
    return [e.field for e in exc.value.errors]


def test_parse_date_range_good() -> None:
    assert parse_date_range({"from": "2024-02-01", "to": "2024-02-29"}) == (
        date(2024, 2, 1), date(2024, 2, 29))
    assert parse_date_range({"from": "2024-03-05", "to": "2024-03-05"}) == (
        date(2024, 3, 5), date(2024, 3, 5))
    assert parse_date_range({"from": " 2024-03-05 ", "to": "2024-03-06", "tag": "x"}) == (
        date(2024, 3, 5), date(2024, 3, 6))


def test_parse_date_range_accepts_366_days_but_not_367() -> None:
    start = date(2024, 1, 1)
    last_ok = start + timedelta(days=MAX_RANGE_DAYS - 1)
    assert parse_date_range({"from": "2024-01-01", "to": last_ok.isoformat()}) == (
        start, last_ok)
    with pytest.raises(RequestInvalid) as exc:
        parse_date_range({"from": "2024-01-01",
                          "to": (last_ok + timedelta(days=1)).isoformat()})
    assert _field_of(exc) == ["to"]


@pytest.mark.parametrize(("params", "field"), [
    ({"to": "2024-01-02"}, "from"),
    ({"from": "", "to": "2024-01-02"}, "from"),
    ({"from": "2024-01-01"}, "to"),
    ({"from": "2024-01-01", "to": "  "}, "to"),
    ({"from": "yesterday", "to": "2024-01-02"}, "from"),
    ({"from": "20240101", "to": "2024-01-02"}, "from"),  # fromisoformat would take it
    ({"from": "2024-W01-1", "to": "2024-01-02"}, "from"),
    ({"from": "2024-01-01T00:00:00", "to": "2024-01-02"}, "from"),
    ({"from": "2024-01-01", "to": "2023-02-29"}, "to"),  # not a leap year
    ({"from": "2024-01-01", "to": "2024-13-01"}, "to"),
    ({"from": "2024-01-01", "to": "2024-1-2"}, "to"),
    ({"from": "2024-01-01", "to": "\uff12\uff10\uff12\uff14-01-02"}, "to"),  # fullwidth: \d
    ({"from": "2024-01-03", "to": "2024-01-02"}, "from"),  # from after to
    ({}, "from"),
])
def test_parse_date_range_bad(params: dict[str, str], field: str) -> None:
    with pytest.raises(RequestInvalid) as exc:
        parse_date_range(params)
    assert _field_of(exc) == [field]


# -- facts ------------------------------------------------------------------------------------


def test_fact_validates_its_counts_and_day() -> None:
    day = date(2024, 5, 1)
    with pytest.raises(ValueError, match="unknown counters"):
        Fact("a", day, "+18005550100", None, {"clicks": 1})
    with pytest.raises(ValueError, match="non-negative"):
        Fact("a", day, "+18005550100", None, {"sent": -1})
    with pytest.raises(ValueError, match="non-negative"):
        Fact("a", day, "+18005550100", None, {"sent": True})
    with pytest.raises(ValueError, match="date"):
        Fact("a", datetime(2024, 5, 1, tzinfo=UTC), "+18005550100", None, {"sent": 1})
    with pytest.raises(ValueError, match="id"):
        Fact("", day, "+18005550100", None, {"sent": 1})


def test_fact_keeps_a_copy_of_its_counts() -> None:
    counts = {"sent": 1, "segments": 2}
    fact = Fact("status-b-00001-sent", date(2024, 5, 1), "+18005550100", "promo", counts)
    counts["sent"] = 99
    assert dict(fact.counts) == {"sent": 1, "segments": 2}
    with pytest.raises(TypeError):
        fact.counts["sent"] = 5  # type: ignore[index]
    assert hash(fact) == hash(Fact("status-b-00001-sent", date(2024, 5, 1), "+18005550100",
                                   "promo", {"sent": 1, "segments": 2}))


def test_utc_day() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert utc_day(datetime(2024, 5, 2, 1, 30, tzinfo=plus_two)) == date(2024, 5, 1)
    assert utc_day(datetime(2024, 5, 1, 23, 59, tzinfo=UTC)) == date(2024, 5, 1)
    assert utc_day(datetime(2024, 5, 1, 23, 59)) == date(2024, 5, 1)


def test_counters_are_the_contract() -> None:
    assert COUNTERS == ("sent", "delivered", "failed", "expired", "blocked", "rejected",
                        "segments", "inbound", "optOuts", "optIns", "responses",
                        "unverifiedTollFree")


# -- RowKeys ----------------------------------------------------------------------------------


def test_counter_row_key_shape() -> None:
    assert counter_row_key("+18005550100", "spring", 3) == "c|+18005550100|spring|03"
    assert counter_row_key("+18005550100", None, 7) == "c|+18005550100|-|07"
    assert parse_counter_row_key("c|+18005550100|spring|03") == ("+18005550100", "spring", 3)
    assert parse_counter_row_key("l|status-x") is None
    assert parse_counter_row_key("c|a|b") is None


def test_no_tag_and_a_dash_tag_differ() -> None:
    assert tag_part(None) != tag_part("-")
    assert counter_row_key("s", None, 0) != counter_row_key("s", "-", 0)
    assert tag_part("") == ""


@pytest.mark.parametrize("value", [
    "a/b", "a\\b", "a#b", "a?b", "tab\there", "nl\nhere", "nul\x00", "del\x7f", "c1\x85",
    "pipe|in|tag", "per%cent", "tilde~", "-", "é ünïcödé 😀", "quote'it",
])
def test_key_parts_are_safe_and_keep_the_row_key_parseable(value: str) -> None:
    key = counter_row_key(value, value, 5)
    assert not FORBIDDEN_IN_KEY.search(key)
    parsed = parse_counter_row_key(key)
    assert parsed == (key_part(value), tag_part(value), 5)
    ledger = ledger_row_key(value)
    assert not FORBIDDEN_IN_KEY.search(ledger)
    assert ledger.startswith("l|") and "|" not in ledger[2:]


def test_escaping_is_injective() -> None:
    values = ["a/b", "a%2Fb", "a%252Fb", "a|b", "a%7Cb", "-", "%2D", "a~b", "a%7Eb", "", "x"]
    assert len({ledger_row_key(v) for v in values}) == len(values)
    assert len({tag_part(v) for v in [*values, None]}) == len(values) + 1


def test_long_values_are_hashed_within_the_key_limit() -> None:
    long_a = "x" * 5000 + "a"
    long_b = "x" * 5000 + "b"
    ka, kb = ledger_row_key(long_a), ledger_row_key(long_b)
    assert ka != kb
    assert "~" in ka and len(ka) < 200
    # A counter RowKey with a long sender and a long emoji tag stays under 1 KiB in UTF-16.
    key = counter_row_key("/" * 1000, "😀" * 1000, 99)
    assert len(key.encode("utf-16-le")) <= 1024
    assert parse_counter_row_key(key) is not None
    # At the boundary: 200 escaped characters are kept as they are, 201 are hashed.
    assert key_part("y" * 200) == "y" * 200
    assert "~" in key_part("y" * 201)


def test_shard_is_stable_and_spreads() -> None:
    assert shard_of("status-20240501-00001-sent", 8) == shard_of("status-20240501-00001-sent", 8)
    # A fixed value: the shard must not change between processes (no salted hash()).
    assert shard_of("inbound-abc", 8) == int.from_bytes(
        hashlib.sha256(b"inbound-abc").digest()[:8], "big") % 8
    shards = [shard_of(f"status-m{i}-sent", 8) for i in range(800)]
    assert set(shards) == set(range(8))
    assert max(shards.count(s) for s in range(8)) < 150
    assert {shard_of(f"f{i}", 1) for i in range(50)} == {0}
