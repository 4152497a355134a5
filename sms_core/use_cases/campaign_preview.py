"""The preview of a campaign: how each audience row is classified, and what the counts,
listed invalid rows, segments, samples and estimate add up to. Shared by the preparation in the
request (`use_cases.campaigns`) and the one in background jobs (`use_cases.campaign_preparation`),
so both give the same preview of the same audience."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sms_core.models.campaign_views import (
    EstimatePublic,
    InvalidRowPublic,
    PreviewPublic,
    RecipientCountsPublic,
    SamplePublic,
    SegmentRangePublic,
)
from sms_core.models.messages import MAX_MESSAGE_CHARS
from sms_core.rules.message_text import text_problem
from sms_core.rules.phone import InvalidPhoneNumber, to_e164
from sms_core.rules.templates import MessageTemplate, MissingVariables

MAX_LISTED_INVALID = 1000  # the preview lists at most this many invalid rows (counts are exact)
SAMPLE_COUNT = 3


def classify_row(to: str, attributes: Mapping[str, str], template: MessageTemplate
                 ) -> tuple[str, str | None, str]:
    """(number, why it cannot be sent or None, rendered body) of one audience row: the number
    in E.164 when it is one, as given otherwise."""
    number = to.strip()
    try:
        number = to_e164(to)
        body = template.render(attributes)
    except InvalidPhoneNumber as exc:
        return number, exc.reason, ""
    except MissingVariables as exc:
        return number, str(exc), ""
    problem = text_problem(body)  # a variable's value can make it so
    if problem is not None:
        return number, f"the rendered message {problem}", body
    if len(body) > MAX_MESSAGE_CHARS:
        return number, (f"the rendered message is {len(body)} characters; the maximum is "
                        f"{MAX_MESSAGE_CHARS}"), body
    return number, None, body


def opted_out_reason(number: str, sender: str) -> str:
    """Why a snapshot row of an opted-out recipient is not sent."""
    return f"{number} opted out of messages from {sender}"


def duplicate_reason(first_index: int) -> str:
    """Why a snapshot row of a number an earlier row has is not sent."""
    return f"same number as row {first_index}"


@dataclass
class PreviewTally:
    """What a preview is made of, as a preparation adds it up (in the request, or from the
    tallies of its background jobs)."""

    counts: RecipientCountsPublic = field(default_factory=RecipientCountsPublic)
    invalid_rows: list[InvalidRowPublic] = field(default_factory=list)
    segments_min: int | None = None
    segments_max: int = 0
    segments_total: int = 0
    encodings: set[str] = field(default_factory=set)
    ucs2_characters: list[str] = field(default_factory=list)  # in order of first appearance
    samples: list[SamplePublic] = field(default_factory=list)
    deferred: Counter[datetime] = field(default_factory=Counter)  # until when: how many

    def add_sent(self, segments: int, encoding: str) -> None:
        """Count one message that will be sent."""
        self.counts.valid += 1
        self.segments_min = segments if self.segments_min is None else min(self.segments_min,
                                                                          segments)
        self.segments_max = max(self.segments_max, segments)
        self.segments_total += segments
        self.encodings.add(encoding)


def add_invalid(tally: PreviewTally, row: InvalidRowPublic) -> None:
    """Count an invalid row, listing it while fewer than `MAX_LISTED_INVALID` are."""
    tally.counts.invalid += 1
    if len(tally.invalid_rows) < MAX_LISTED_INVALID:
        tally.invalid_rows.append(row)


def _paced_finish(starts_at: datetime, now_count: int, deferred: Mapping[datetime, int],
                  rate_per_minute: int) -> datetime:
    """When the last message leaves: `now_count` from the start, the deferred ones from the end
    of their quiet hours, all at the sender's pace (one every 60/rate seconds)."""
    gap = timedelta(seconds=60 / rate_per_minute)
    finish = starts_at + gap * now_count
    for due in sorted(deferred):  # each after the one before, or once its window ends
        finish = max(finish, due) + gap * deferred[due]
    return finish


def preview_of(tally: PreviewTally, rate_per_minute: int, starts_at: datetime
               ) -> PreviewPublic:
    """The preview a tally adds up to, with the estimate at the sender's pace."""
    tally.counts.deferred = sum(tally.deferred.values())
    finishes_at = _paced_finish(starts_at, tally.counts.valid - tally.counts.deferred,
                                tally.deferred, rate_per_minute)
    encodings = set(tally.encodings)
    return PreviewPublic(
        recipients=tally.counts,
        invalid_rows=tally.invalid_rows,
        invalid_rows_truncated=tally.counts.invalid > len(tally.invalid_rows),
        segments=SegmentRangePublic(min=tally.segments_min or 0, max=tally.segments_max,
                                    total=tally.segments_total),
        encoding=(encodings.pop() if len(encodings) == 1 else
                  "mixed" if encodings else None),
        ucs2_characters=tally.ucs2_characters[:100],
        samples=tally.samples[:SAMPLE_COUNT],
        estimate=EstimatePublic(
            rate_per_minute=rate_per_minute,
            duration_seconds=math.ceil((finishes_at - starts_at).total_seconds()),
            starts_at=starts_at, finishes_at=finishes_at,
            deferred_until=max(tally.deferred) if tally.deferred else None),
    )
