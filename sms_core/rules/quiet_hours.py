"""Quiet hours: when a campaign must not text a recipient, judged by the recipient's local time.

A campaign defers each recipient whose local wall-clock time is inside the quiet window (for
example 21:00 to 08:00) to the first moment it is outside, using the time zones libphonenumber
gives for the number (:func:`zones_for`).

Decisions worth knowing:

* The window is ``[start, end)`` in local wall-clock time and may wrap midnight. ``start == end``
  is refused: it could mean "never quiet" or "always quiet", and guessing either is wrong.
* A number may belong to several zones (a US toll-free number: 42 of them, from Guam to
  Newfoundland; a few area codes straddle a zone line). The strictest reading applies: a message
  is allowed only when it is outside the window in *every* zone of the number.
* When the zones' windows together cover the whole day, so no instant is allowed everywhere,
  :func:`next_allowed` falls back to the earliest window end among the zones: the message then
  goes out when at least one plausible zone is awake, rather than never.
* DST: window ends are computed in each zone's own rules (``zoneinfo``). If the end falls in the
  hour that a spring-forward skips, the window ends at the transition (when the local clock jumps
  past it). If it falls in the hour that a fall-back repeats, its first occurrence ends the
  window. The wall clock then passes the window start again in the repeated hour only for windows
  that start inside it; such a sliver is not treated as allowed (the recipient waits for the
  window end), which is later than strictly necessary but never sends inside the window.
* Zone names the time zone database does not know are ignored, and a number with no known zone
  uses the caller's fallback zone: one odd number should neither fail a campaign nor skip the
  quiet hours altogether. An unknown *fallback* zone is a configuration error and raises.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sms_core.rules.phone import time_zones_of

__all__ = ["QuietHours", "next_allowed", "zones_for"]

_HH_MM = re.compile(r"([0-9]{1,2}):([0-9]{2})")
# No window lasts a day (start == end is refused), so within 48 hours every zone has passed at
# least one window end, and the zones' allowed periods, which repeat daily, have met if they ever
# do; window ends are generated for local days -1 .. +3 to cover that span in every zone.
_SEARCH = timedelta(hours=48)
_DAYS = range(-1, 4)
# One entry per distinct number of a campaign (at most 100,000 recipients) with room to spare;
# measured at about 160 bytes an entry with its key, so a full cache holds roughly 20 MB. A miss
# costs what time_zones_of costs (~19 us: parse and number type), a hit ~0.1 us.
_ZONES_CACHE_SIZE = 131_072


@dataclass(frozen=True)
class QuietHours:
    """A daily quiet window ``[start, end)`` in local wall-clock time; it may wrap midnight.

    Attributes:
        start: first minute of the window (naive time).
        end: first minute after the window (naive time); must differ from ``start``.
    """

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("quiet hours are local wall-clock times: pass naive times")
        if self.start == self.end:
            raise ValueError(
                f"quiet hours start and end are both {self.start:%H:%M}: give a window with "
                "different start and end, e.g. 21:00 to 08:00"
            )

    @classmethod
    def parse(cls, start: str, end: str) -> QuietHours:
        """Build quiet hours from ``"HH:MM"`` 24-hour strings, e.g. ``("21:00", "08:00")``.

        Raises:
            ValueError: if either is not a 24-hour ``HH:MM`` time (``"24:00"`` is refused in
                favour of ``"00:00"``) or if both are the same.
        """
        return cls(_parse_time("start", start), _parse_time("end", end))

    def contains(self, local: time) -> bool:
        """Whether a local wall-clock time is inside the window (any tzinfo is ignored)."""
        if local.tzinfo is not None:
            local = local.replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def _parse_time(which: str, text: str) -> time:
    match = _HH_MM.fullmatch(text.strip())
    if match is not None:
        hour, minute = int(match.group(1)), int(match.group(2))
        if hour == 24 and minute == 0:
            raise ValueError(f"quiet hours {which} '24:00' is not a time of day: use '00:00'")
        if hour < 24 and minute < 60:
            return time(hour, minute)
    raise ValueError(
        f"quiet hours {which} {text!r} is not a time: use HH:MM on a 24-hour clock, e.g. '21:00'"
    )


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError: a malformed key such as an absolute path or ''.
        return None


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _allowed(quiet: QuietHours, zones: Sequence[ZoneInfo], instant: datetime) -> bool:
    return not any(quiet.contains(instant.astimezone(zone).time()) for zone in zones)


def _skipped_to(naive: datetime, zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The instant the clock jumps over a skipped wall time ``naive``.

    ``before`` and ``after`` are the two readings of ``naive`` (fold=1 and fold=0): the local wall
    time is earlier than ``naive`` at ``before`` and later at ``after``. zoneinfo has no public
    list of transitions, so bisect to the second; a gap is at most a few hours (13 steps).
    """
    low, high = 0, int((after - before).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if _wall(before + timedelta(seconds=middle), zone) >= naive:
            high = middle
        else:
            low = middle
    return before + timedelta(seconds=high)


def _instants(naive: datetime, zone: ZoneInfo) -> Iterator[datetime]:
    """The UTC instants at which the local clock in ``zone`` reaches ``naive``."""
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        yield first
    elif _wall(first, zone) == naive:
        # Repeated by a fall-back: it happens twice, and both are real instants.
        yield first
        yield second
    else:
        # Skipped by a spring-forward: fold=0 reads it with the old offset (after the jump),
        # fold=1 with the new one (before it).
        yield _skipped_to(naive, zone, before=second, after=first)


def _window_ends(quiet: QuietHours, zone: ZoneInfo, at: datetime) -> Iterator[datetime]:
    today = at.astimezone(zone).date()
    for days in _DAYS:
        yield from _instants(datetime.combine(today + timedelta(days=days), quiet.end), zone)


def next_allowed(
    quiet: QuietHours, zones: Sequence[str], at: datetime, fallback_zone: str = "UTC"
) -> datetime:
    """The earliest instant at or after ``at`` that is outside the quiet window in all ``zones``.

    Args:
        quiet: the window.
        zones: IANA zone names of the recipient (e.g. from :func:`zones_for`); names the time
            zone database does not know are ignored.
        at: the intended send time, timezone-aware.
        fallback_zone: used when ``zones`` has no known zone.

    Returns:
        An aware UTC datetime: ``at`` itself (converted to UTC) when it is allowed everywhere;
        otherwise the first window end in one of the zones that is allowed in all of them. If
        none is within 48 hours (the windows together cover the whole day), the earliest window
        end among the zones.

    Raises:
        ValueError: if ``at`` is naive or ``fallback_zone`` is not a known zone.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must be a timezone-aware datetime")
    return _next_allowed(quiet, tuple(zones), at.astimezone(UTC), fallback_zone)


# A campaign asks for one send time and few distinct zone tuples (zones_for returns the same
# tuple for a country or area), so most of its 100,000 calls repeat an earlier one; that matters
# for multi-zone numbers, where a deferral costs up to ~0.7 ms (US toll-free: 42 zones).
@functools.lru_cache(maxsize=4096)
def _next_allowed(
    quiet: QuietHours, zones: tuple[str, ...], at: datetime, fallback_zone: str
) -> datetime:
    known = [zone for name in dict.fromkeys(zones) if (zone := _zone(name)) is not None]
    if not known:
        fallback = _zone(fallback_zone)
        if fallback is None:
            raise ValueError(f"unknown fallback time zone {fallback_zone!r}")
        known = [fallback]
    if _allowed(quiet, known, at):
        return at
    ends = sorted({end for zone in known for end in _window_ends(quiet, zone, at) if end >= at})
    limit = at + _SEARCH
    for candidate in ends:
        if candidate > limit:
            break
        if _allowed(quiet, known, candidate):
            return candidate
    return ends[0]


@functools.lru_cache(maxsize=_ZONES_CACHE_SIZE)
def zones_for(e164: str) -> tuple[str, ...]:
    """IANA time zones of an E.164 number (:func:`sms_core.rules.phone.time_zones_of`), memoised.

    Empty when libphonenumber does not know the zone; pass the result to :func:`next_allowed`,
    which then uses its fallback zone. Raises
    :class:`sms_core.rules.phone.InvalidPhoneNumber` if the number cannot be parsed (not cached).

    Within one campaign of distinct numbers every call is a miss (the cache adds ~0.5 us to the
    ~19 us lookup); it pays off when numbers repeat: recurring campaigns, retries, overlapping
    audiences in the same worker. The cache is keyed on the whole number: libphonenumber's answer
    depends on the number's type (mobile numbers are placed by country, fixed lines by prefix,
    invalid numbers nowhere), which a prefix does not determine.
    """
    return time_zones_of(e164)
