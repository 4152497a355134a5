"""Analytics rules: the counters, the facts that add to them, the rates, the date range.

Storage of the counters (sharded, exact under redelivery): `sms_core.adapters.analytics_store`.

Rates (`rates()`), rounded to 4 decimals, None when the denominator is 0
-----------------------------------------------------------------------
- `deliveryRate` = delivered / (delivered + failed + expired): of the messages whose outcome is
  known, the share that was delivered. Not delivered / sent, because `sent` also holds messages
  still waiting for their report (the figure of today and yesterday would look poor until the
  reports arrive) and messages sent without `deliveryReport`, which never get one; a final
  outcome is what the rate is about. `failed` includes messages ACS refused at send time.
- `optOutRate` = optOuts / sent: opt-outs per message sent (not per recipient).
- `responseRate` = responses / sent: replies per message sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Any

from sms_core.errors import FieldError, RequestInvalid

COUNTERS = ("sent", "delivered", "failed", "expired", "blocked", "rejected", "segments",
            "inbound", "optOuts", "optIns", "responses", "unverifiedTollFree")
RATES = ("deliveryRate", "optOutRate", "responseRate")
MAX_RANGE_DAYS = 366  # a leap year, inclusive of both ends
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


@dataclass(frozen=True)
class Fact:
    """One real-world fact and what it adds to the counters of its day, sender and tag.

    `id` is stable per fact (`status-<message id>-delivered`, `inbound-<inbound id>`): recording
    the same id again is a no-op. `day` must be derived from the fact itself (the message's send
    time, the inbound message's receive time), never from the clock of the handler, so that a
    redelivery after midnight lands in the same day partition and is recognised.
    """

    id: str
    day: date
    sender: str
    tag: str | None
    counts: Mapping[str, int] = field(hash=False)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("A fact needs an id")
        if isinstance(self.day, datetime) or not isinstance(self.day, date):
            raise ValueError(f"Fact {self.id}: day must be a date (see utc_day), "
                             f"not {type(self.day).__name__}")
        unknown = sorted(set(self.counts) - set(COUNTERS))
        if unknown:
            raise ValueError(f"Fact {self.id}: unknown counters {unknown}")
        for name, value in self.counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Fact {self.id}: {name} must be a non-negative int")
        # A read-only copy: a caller mutating its dict later must not change a recorded fact.
        object.__setattr__(self, "counts", MappingProxyType(dict(self.counts)))


def utc_day(at: datetime) -> date:
    """The UTC day of a moment; a naive datetime is taken as UTC, like Table storage's."""
    return (at.astimezone(UTC) if at.tzinfo is not None else at).date()


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def rates(counts: Mapping[str, int]) -> dict[str, float | None]:
    """deliveryRate, optOutRate and responseRate of some counts (module docstring)."""
    c = {name: int(counts.get(name, 0)) for name in COUNTERS}
    return {
        "deliveryRate": _ratio(c["delivered"], c["delivered"] + c["failed"] + c["expired"]),
        "optOutRate": _ratio(c["optOuts"], c["sent"]),
        "responseRate": _ratio(c["responses"], c["sent"]),
    }


@dataclass
class AnalyticsReport:
    """Totals over a date range and one entry per day (every day present, zeros included).

    `totals` holds every counter and the rates; a rate is None when its denominator is 0.
    """

    totals: dict[str, int | float | None]
    days: list[dict[str, Any]]

    def public(self) -> dict[str, Any]:
        """The JSON body of GET /api/analytics."""
        return {"totals": dict(self.totals), "days": [dict(d) for d in self.days]}


def check_range(start: date, end: date) -> None:
    """RequestInvalid naming `from` or `to` unless start <= end within MAX_RANGE_DAYS."""
    if start > end:
        raise RequestInvalid("'from' is after 'to'.",
                             [FieldError("from", "must not be after 'to'")])
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise RequestInvalid(f"The range holds more than {MAX_RANGE_DAYS} days.",
                             [FieldError("to", f"at most {MAX_RANGE_DAYS} days after 'from' "
                                               "(both included)")])


def _parse_day(params: Mapping[str, str], name: str) -> date:
    raw = (params.get(name) or "").strip()
    if not raw:
        raise RequestInvalid(f"'{name}' is required.",
                             [FieldError(name, "required, as YYYY-MM-DD")])
    try:
        # The regex first: date.fromisoformat also takes 20240131 and week dates.
        if not _DATE.fullmatch(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise RequestInvalid(f"'{name}' is not a date.",
                             [FieldError(name, "must be a date as YYYY-MM-DD")]) from None


def parse_date_range(params: Mapping[str, str]) -> tuple[date, date]:
    """`?from=YYYY-MM-DD&to=YYYY-MM-DD` as (start, end), both included; checks the range too."""
    start = _parse_day(params, "from")
    end = _parse_day(params, "to")
    check_range(start, end)
    return start, end
