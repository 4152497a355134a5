"""Times that come from outside: when a message or campaign is to be sent, when an event arrived.

One `sendAt` rule for `POST /api/messages` and for a campaign's `schedule.sendAt`:

- more than `CLOCK_SKEW` (60 s) in the past is refused ("in the past"): a client that asks for a
  moment long gone has a bug (or a year typed as `0496`), and sending at once would hide it;
- within the last 60 s means now: the client's clock may run a little ahead of ours;
- at most `MAX_SCHEDULE_AHEAD` (30 days) ahead, where the caller has an upper limit.

Storage keeps times as Edm.DateTime, which Azure Tables accepts from 1601-01-01 on; the Tables
SDK writes a year below 1000 without its leading zeros and then cannot read it back. No time
earlier than `EARLIEST_STORABLE` may reach storage: `sendAt` cannot (it is never in the past)
and an event's own timestamp is ignored when it is (`storable_time`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

CLOCK_SKEW = timedelta(seconds=60)
MAX_SCHEDULE_AHEAD = timedelta(days=30)
EARLIEST_STORABLE = datetime(1601, 1, 1, tzinfo=UTC)


def check_send_at(value: datetime, now: datetime, *,
                  most_ahead: timedelta | None = MAX_SCHEDULE_AHEAD) -> datetime:
    """The moment to send at, in UTC: `now` for a `sendAt` within the last minute.

    Raises ValueError, saying what is wrong, for a moment more than a minute in the past or
    more than `most_ahead` ahead (None: no upper limit). `value` carries a UTC offset.
    """
    value = value.astimezone(UTC)
    if value < now - CLOCK_SKEW:
        raise ValueError(f"is in the past (more than {CLOCK_SKEW.seconds} seconds ago)")
    if most_ahead is not None and value - now > most_ahead:
        raise ValueError(f"may be at most {most_ahead.days} days ahead")
    return max(value, now)


def storable_time(value: datetime | None) -> datetime | None:
    """`value` when storage can keep it (from 1601 on, with an offset), else None."""
    if value is None or value.tzinfo is None or value < EARLIEST_STORABLE:
        return None
    return value
