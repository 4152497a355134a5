"""The one `sendAt` rule of messages and campaigns (`sms_core.rules.times`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sms_core.rules.times import CLOCK_SKEW, MAX_SCHEDULE_AHEAD, check_send_at

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("at", [
    datetime(496, 9, 26, 0, 2, 24, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC),
    NOW - CLOCK_SKEW - timedelta(seconds=1), NOW - timedelta(days=1)],
    ids=["year-496", "year-1", "61s-ago", "yesterday"])
def test_a_send_at_more_than_60_seconds_ago_is_in_the_past(at: datetime) -> None:
    with pytest.raises(ValueError, match="in the past"):
        check_send_at(at, NOW)


@pytest.mark.parametrize("at", [NOW - CLOCK_SKEW, NOW - timedelta(seconds=1), NOW])
def test_a_send_at_within_the_last_60_seconds_means_now(at: datetime) -> None:
    assert check_send_at(at, NOW) == NOW


def test_a_send_at_ahead_is_kept_up_to_the_limit() -> None:
    ahead = NOW + MAX_SCHEDULE_AHEAD
    assert check_send_at(ahead, NOW) == ahead
    with pytest.raises(ValueError, match="30 days ahead"):
        check_send_at(ahead + timedelta(seconds=1), NOW)
    far = NOW + timedelta(days=400)
    assert check_send_at(far, NOW, most_ahead=None) == far
