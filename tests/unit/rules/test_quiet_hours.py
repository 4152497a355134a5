"""Quiet hours: deferral to the recipient's morning, multi-zone numbers, DST, and fallbacks."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from sms_core.rules.phone import InvalidPhoneNumber, time_zones_of
from sms_core.rules.quiet_hours import QuietHours, next_allowed, zones_for

NIGHT = QuietHours.parse("21:00", "08:00")
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
NEW_YORK = ZoneInfo("America/New_York")
NL_MOBILE = "+31612345678"
# Idaho's 208 area code: this range is in both Mountain (Boise) and Pacific time.
IDAHO_TWO_ZONES = "+12085550123"
US_TOLL_FREE = "+18005550100"


def local(
    zone: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int = 0, *, fold: int = 0
) -> datetime:
    """A local wall-clock time in ``zone`` as an aware UTC datetime."""
    return datetime(year, month, day, hour, minute, tzinfo=zone, fold=fold).astimezone(UTC)


# --- QuietHours ---------------------------------------------------------------------------------


def test_parse() -> None:
    assert QuietHours.parse("21:00", "08:00") == QuietHours(time(21, 0), time(8, 0))
    assert QuietHours.parse(" 8:05 ", "00:00") == QuietHours(time(8, 5), time(0, 0))
    assert QuietHours.parse("23:59", "0:01") == QuietHours(time(23, 59), time(0, 1))


@pytest.mark.parametrize(
    "bad", ["25:00", "21:60", "2100", "9pm", "", "21:00:00", "21.00", "-1:00", "\u0662\u0661:00"]
)
def test_parse_rejects_anything_but_24_hour_hh_mm(bad: str) -> None:
    with pytest.raises(ValueError, match=r"quiet hours start .* is not a time: use HH:MM"):
        QuietHours.parse(bad, "08:00")
    with pytest.raises(ValueError, match=r"quiet hours end .* is not a time: use HH:MM"):
        QuietHours.parse("21:00", bad)


def test_parse_rejects_24_00_with_a_hint() -> None:
    with pytest.raises(ValueError, match="use '00:00'"):
        QuietHours.parse("21:00", "24:00")


def test_start_equal_to_end_is_an_error() -> None:
    with pytest.raises(ValueError, match="both 08:00"):
        QuietHours.parse("08:00", "8:00")
    with pytest.raises(ValueError, match="both 08:00"):
        QuietHours(time(8), time(8))


def test_times_must_be_naive() -> None:
    with pytest.raises(ValueError, match="naive"):
        QuietHours(time(21, tzinfo=UTC), time(8))


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (time(20, 59, 59), False),
        (time(21, 0), True),
        (time(23, 59, 59, 999999), True),
        (time(0, 0), True),
        (time(7, 59, 59), True),
        (time(8, 0), False),
        (time(12, 0), False),
        (time(22, 0, tzinfo=UTC), True),
    ],
)
def test_contains_across_midnight(moment: time, inside: bool) -> None:
    assert NIGHT.contains(moment) is inside


@pytest.mark.parametrize(
    ("moment", "inside"),
    [(time(11, 59), False), (time(12, 0), True), (time(12, 59), True), (time(13, 0), False)],
)
def test_contains_without_wrapping(moment: time, inside: bool) -> None:
    assert QuietHours.parse("12:00", "13:00").contains(moment) is inside


# --- next_allowed: single zone ------------------------------------------------------------------


def test_nl_number_at_22_local_waits_until_8_next_morning() -> None:
    zones = zones_for(NL_MOBILE)
    assert zones == ("Europe/Amsterdam",)
    result = next_allowed(NIGHT, zones, local(AMSTERDAM, 2025, 6, 10, 22, 0))
    assert result == local(AMSTERDAM, 2025, 6, 11, 8, 0)
    assert result.tzinfo is UTC


def test_nl_number_at_noon_is_not_deferred() -> None:
    at = local(AMSTERDAM, 2025, 6, 10, 12, 0)
    assert next_allowed(NIGHT, zones_for(NL_MOBILE), at) == at


def test_just_after_midnight_waits_until_8_the_same_day() -> None:
    at = local(AMSTERDAM, 2025, 6, 11, 0, 30)
    assert next_allowed(NIGHT, ["Europe/Amsterdam"], at) == local(AMSTERDAM, 2025, 6, 11, 8, 0)


def test_window_edges() -> None:
    zones = ["Europe/Amsterdam"]
    at_end = local(AMSTERDAM, 2025, 6, 11, 8, 0)
    assert next_allowed(NIGHT, zones, at_end) == at_end
    at_start = local(AMSTERDAM, 2025, 6, 10, 21, 0)
    assert next_allowed(NIGHT, zones, at_start) == at_end
    before_start = at_start - timedelta(microseconds=1)
    assert next_allowed(NIGHT, zones, before_start) == before_start


def test_window_not_wrapping_midnight() -> None:
    lunch = QuietHours.parse("12:00", "13:00")
    zones = ["Europe/Amsterdam"]
    assert next_allowed(lunch, zones, local(AMSTERDAM, 2025, 6, 10, 12, 30)) == local(
        AMSTERDAM, 2025, 6, 10, 13, 0
    )
    for hour, minute in [(11, 59), (13, 0), (23, 0), (0, 0)]:
        at = local(AMSTERDAM, 2025, 6, 10, hour, minute)
        assert next_allowed(lunch, zones, at) == at


def test_aware_non_utc_input_comes_back_in_utc() -> None:
    at = datetime(2025, 6, 10, 12, 0, tzinfo=AMSTERDAM)
    result = next_allowed(NIGHT, ["Europe/Amsterdam"], at)
    assert result == at
    assert result.tzinfo is UTC


def test_naive_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_allowed(NIGHT, ["Europe/Amsterdam"], datetime(2025, 6, 10, 12, 0))


# --- next_allowed: numbers in several zones -----------------------------------------------------


def test_area_code_in_two_zones_waits_for_the_later_one() -> None:
    zones = zones_for(IDAHO_TWO_ZONES)
    assert set(zones) == {"America/Boise", "America/Los_Angeles"}
    boise, los_angeles = ZoneInfo("America/Boise"), ZoneInfo("America/Los_Angeles")
    # 08:00 in Boise is 07:00 in Los Angeles, still quiet there.
    at = local(boise, 2025, 6, 10, 8, 0)
    result = next_allowed(NIGHT, zones, at)
    assert result == local(los_angeles, 2025, 6, 10, 8, 0)
    assert result.astimezone(boise).hour == 9
    # 20:30 in Los Angeles is 21:30 in Boise: already quiet there, so wait until LA's morning.
    evening = local(los_angeles, 2025, 6, 10, 20, 30)
    assert next_allowed(NIGHT, zones, evening) == local(los_angeles, 2025, 6, 11, 8, 0)


def test_us_toll_free_number_takes_the_strictest_of_all_its_zones() -> None:
    zones = zones_for(US_TOLL_FREE)
    assert len(zones) > 30  # from Guam to Newfoundland
    at = datetime(2025, 6, 10, 12, 0, tzinfo=UTC)  # 22:00 in Guam
    result = next_allowed(NIGHT, zones, at)
    for name in zones:
        assert not NIGHT.contains(result.astimezone(ZoneInfo(name)).time()), name
    # It is the first such instant: a minute earlier some zone was still quiet.
    earlier = result - timedelta(minutes=1)
    assert any(NIGHT.contains(earlier.astimezone(ZoneInfo(name)).time()) for name in zones)
    # 22:00 UTC in June: 08:00 in Guam, 18:30 in St. John's, 12:00 in Honolulu.
    assert result == datetime(2025, 6, 10, 22, 0, tzinfo=UTC)


def test_windows_covering_the_whole_day_fall_back_to_the_earliest_window_end() -> None:
    # Allowed 09:00-20:00 locally: 00:00-11:00 UTC in Tokyo, 13:00-00:00 UTC in New York (June).
    quiet = QuietHours.parse("20:00", "09:00")
    at = datetime(2025, 6, 10, 12, 0, tzinfo=UTC)
    result = next_allowed(quiet, ["Asia/Tokyo", "America/New_York"], at)
    assert result == local(NEW_YORK, 2025, 6, 10, 9, 0)


def test_duplicate_zones_are_harmless() -> None:
    at = local(AMSTERDAM, 2025, 6, 10, 22, 0)
    assert next_allowed(NIGHT, ["Europe/Amsterdam"] * 3, at) == local(AMSTERDAM, 2025, 6, 11, 8)


# --- next_allowed: unknown zones ----------------------------------------------------------------


def test_number_without_a_known_zone_uses_the_fallback() -> None:
    zones = zones_for("+15555555555")  # fictional: libphonenumber cannot place it
    assert zones == ()
    at = datetime(2025, 6, 10, 22, 0, tzinfo=UTC)
    assert next_allowed(NIGHT, zones, at) == datetime(2025, 6, 11, 8, 0, tzinfo=UTC)
    assert next_allowed(NIGHT, zones, at, fallback_zone="Europe/Amsterdam") == local(
        AMSTERDAM, 2025, 6, 11, 8, 0
    )


def test_zone_names_the_database_lacks_are_ignored() -> None:
    at = datetime(2025, 6, 10, 22, 0, tzinfo=UTC)
    assert next_allowed(NIGHT, ["Mars/Olympus_Mons", ""], at, "Asia/Tokyo") == datetime(
        2025, 6, 10, 23, 0, tzinfo=UTC
    )
    assert next_allowed(NIGHT, ["Mars/Olympus_Mons", "Europe/Amsterdam"], at) == local(
        AMSTERDAM, 2025, 6, 11, 8, 0
    )


def test_unknown_fallback_zone_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="unknown fallback time zone 'Nowhere/Land'"):
        next_allowed(NIGHT, [], datetime(2025, 6, 10, 22, 0, tzinfo=UTC), "Nowhere/Land")


# --- next_allowed: daylight saving time ---------------------------------------------------------


def test_amsterdam_spring_forward_night_is_an_hour_shorter() -> None:
    # 2025-03-30: clocks go from 02:00 CET to 03:00 CEST.
    at = local(AMSTERDAM, 2025, 3, 29, 22, 0)
    result = next_allowed(NIGHT, ["Europe/Amsterdam"], at)
    assert result == local(AMSTERDAM, 2025, 3, 30, 8, 0)
    assert result == datetime(2025, 3, 30, 6, 0, tzinfo=UTC)
    assert result - at == timedelta(hours=9)


def test_amsterdam_fall_back_night_is_an_hour_longer() -> None:
    # 2025-10-26: clocks go from 03:00 CEST back to 02:00 CET.
    at = local(AMSTERDAM, 2025, 10, 25, 22, 0)
    result = next_allowed(NIGHT, ["Europe/Amsterdam"], at)
    assert result == datetime(2025, 10, 26, 7, 0, tzinfo=UTC)  # 08:00 CET
    assert result - at == timedelta(hours=11)


def test_window_ending_in_the_skipped_hour_ends_when_the_clock_jumps() -> None:
    # 02:30 does not exist on 2025-03-30 in Amsterdam; the window ends at the jump (03:00 CEST).
    quiet = QuietHours.parse("22:00", "02:30")
    result = next_allowed(quiet, ["Europe/Amsterdam"], local(AMSTERDAM, 2025, 3, 30, 1, 0))
    assert result == datetime(2025, 3, 30, 1, 0, tzinfo=UTC)
    assert result.astimezone(AMSTERDAM).strftime("%H:%M %Z") == "03:00 CEST"


def test_window_ending_in_the_repeated_hour_ends_at_its_first_occurrence() -> None:
    quiet = QuietHours.parse("22:00", "02:30")
    result = next_allowed(quiet, ["Europe/Amsterdam"], local(AMSTERDAM, 2025, 10, 26, 1, 0))
    assert result == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)
    assert result.astimezone(AMSTERDAM).strftime("%H:%M %Z") == "02:30 CEST"


def test_new_york_spring_forward() -> None:
    # 2025-03-09: 02:00 EST -> 03:00 EDT.
    at = local(NEW_YORK, 2025, 3, 8, 23, 0)
    result = next_allowed(NIGHT, ["America/New_York"], at)
    assert result == datetime(2025, 3, 9, 12, 0, tzinfo=UTC)  # 08:00 EDT
    assert result - at == timedelta(hours=8)
    skipped_end = QuietHours.parse("22:00", "02:15")
    result = next_allowed(skipped_end, ["America/New_York"], at)
    assert result == datetime(2025, 3, 9, 7, 0, tzinfo=UTC)  # the jump to 03:00 EDT


def test_new_york_fall_back() -> None:
    # 2025-11-02: 02:00 EDT -> 01:00 EST.
    at = local(NEW_YORK, 2025, 11, 1, 23, 0)
    result = next_allowed(NIGHT, ["America/New_York"], at)
    assert result == datetime(2025, 11, 2, 13, 0, tzinfo=UTC)  # 08:00 EST
    assert result - at == timedelta(hours=10)
    # A window ending at 01:30 ends at the first 01:30 (EDT), not the repeat (EST).
    repeated_end = QuietHours.parse("22:00", "01:30")
    assert next_allowed(repeated_end, ["America/New_York"], at) == local(
        NEW_YORK, 2025, 11, 2, 1, 30, fold=0
    )
    # From the repeated hour itself (01:10 EST, inside the window again) to the second 01:30.
    second_pass = local(NEW_YORK, 2025, 11, 2, 1, 10, fold=1)
    assert next_allowed(repeated_end, ["America/New_York"], second_pass) == local(
        NEW_YORK, 2025, 11, 2, 1, 30, fold=1
    )


# --- next_allowed against a brute-force search ---------------------------------------------------

_ORACLE_ZONES = [
    "Europe/Amsterdam",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "America/St_Johns",
    "America/Santiago",  # DST changes at midnight
    "Australia/Sydney",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "Pacific/Chatham",  # UTC+12:45 / +13:45
    "Asia/Kathmandu",
    "Asia/Tokyo",
    "Pacific/Honolulu",
]
# Days around the 2025 DST changes of those zones, so many cases straddle one.
_DAYS = [
    datetime(2025, 3, 9, tzinfo=UTC),
    datetime(2025, 3, 30, tzinfo=UTC),
    datetime(2025, 4, 6, tzinfo=UTC),
    datetime(2025, 9, 7, tzinfo=UTC),
    datetime(2025, 9, 28, tzinfo=UTC),
    datetime(2025, 10, 5, tzinfo=UTC),
    datetime(2025, 10, 26, tzinfo=UTC),
    datetime(2025, 11, 2, tzinfo=UTC),
    datetime(2025, 6, 21, tzinfo=UTC),
]
_STEP = timedelta(minutes=15)


def _quiet_somewhere(quiet: QuietHours, zones: list[ZoneInfo], instant: datetime) -> bool:
    return any(quiet.contains(instant.astimezone(zone).time()) for zone in zones)


def _brute_force(quiet: QuietHours, names: list[str], at: datetime) -> datetime:
    """Step through time; exact because every input and offset here is a multiple of 15 min."""
    zones = [ZoneInfo(name) for name in names]
    for step in range(48 * 4 + 1):
        instant = at + step * _STEP
        if not _quiet_somewhere(quiet, zones, instant):
            return instant
    # No common allowed time: the first moment any zone leaves its window.
    instant = at
    while True:
        before = instant - _STEP
        for zone in zones:
            if quiet.contains(before.astimezone(zone).time()) and not quiet.contains(
                instant.astimezone(zone).time()
            ):
                return instant
        instant += _STEP


def test_matches_a_brute_force_search_around_dst_changes() -> None:
    rng = random.Random(20250330)
    for _ in range(2000):
        # Windows starting 05:00-22:45 only: a start inside a repeated (fall-back) hour creates
        # the allowed sliver next_allowed deliberately skips (see the module docstring). Half the
        # windows end between 00:00 and 03:45, where the clocks change.
        start = time(rng.randrange(5, 23), rng.choice([0, 15, 30, 45]))
        end_hour = rng.randrange(4) if rng.random() < 0.5 else rng.randrange(24)
        end = time(end_hour, rng.choice([0, 15, 30, 45]))
        if start == end:
            continue
        quiet = QuietHours(start, end)
        names = rng.sample(_ORACLE_ZONES, rng.choice([1, 1, 1, 2, 3]))
        at = rng.choice(_DAYS) + rng.randrange(-2 * 96, 96) * _STEP
        expected = _brute_force(quiet, names, at)
        assert next_allowed(quiet, names, at) == expected, (quiet, names, at)


# --- zones_for ----------------------------------------------------------------------------------


def test_zones_for_matches_time_zones_of_and_is_cached() -> None:
    for number in [NL_MOBILE, "+447400123456", IDAHO_TWO_ZONES, US_TOLL_FREE, "+15555555555"]:
        before = zones_for.cache_info().hits
        assert zones_for(number) == time_zones_of(number)
        assert zones_for(number) is zones_for(number)
        assert zones_for.cache_info().hits >= before + 2


def test_zones_for_rejects_what_is_not_e164() -> None:
    with pytest.raises(InvalidPhoneNumber):
        zones_for("not a number")
