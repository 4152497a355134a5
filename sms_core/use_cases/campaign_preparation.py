"""Preparing a campaign for a large saved audience in the background, in parallel chunks.

`POST /api/campaigns` for an audience of more than `SMS_CAMPAIGN_PREPARE_INLINE_MAX` members
answers 202 with the campaign `preparing` (`start_preparation`); jobs on `sms-campaigns` then do
the work that the request does for a small audience, and end with the same preview:

1. `chunk` jobs, one per `SMS_CAMPAIGN_PREPARE_CHUNK` members side by side (the size is kept in
   the plan: a setting changed meanwhile does not split a preparation): read the members, apply
   the filter, classify each row (number, rendered text, length), write the snapshot rows (a row
   that could be sent is written `valid` for now) and a claim per such row into the bucket its
   number hashes to. Each job ends with a marker holding its tally.
2. When every chunk is marked, the one job that moves the plan to the `buckets` stage (an
   ETag-guarded change) enqueues the `bucket` jobs. A bucket holds every claim of its numbers in
   key order (number, then row), so its job finds duplicates exactly: the first row of a number
   stays, later ones become `duplicate` ("same number as row N", N the row's place among the
   selected rows as in the request). Opted-out numbers become `optedOut`. Its marker holds the
   tally of what will be sent: segments, encodings, UCS-2 characters, deferrals, first samples.
3. When every bucket is marked, the tallies add up to the preview and the campaign becomes
   `prepared` (or `failed`, when no member is selected), ETag-guarded, exactly once.

Every job is idempotent by key: a redelivered chunk rewrites the same rows and marker; a job of
a part already marked does nothing but try to advance. A preparation whose jobs were lost (an
enqueue that failed, a message that went to poison) is resumed by the campaign timer once no
marker was written for `STALL_S` (`resume_preparations`).
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sms_core.concurrency import run_all
from sms_core.errors import NotFound
from sms_core.logs import fields
from sms_core.models.campaign_views import (
    InvalidRowPublic,
    PreparationPublic,
    RecipientCountsPublic,
    SamplePublic,
)
from sms_core.models.campaigns import FanoutJob
from sms_core.models.records import AudienceRecord, CampaignRecord, ClaimRecord, RecipientRecord
from sms_core.rules.audience_filter import parse_filter
from sms_core.rules.quiet_hours import QuietHours, next_allowed, zones_for
from sms_core.rules.segments import SegmentInfo, count_segments
from sms_core.rules.templates import parse_template
from sms_core.settings import Settings
from sms_core.use_cases.campaign_preview import (
    MAX_LISTED_INVALID,
    SAMPLE_COUNT,
    PreviewTally,
    classify_row,
    duplicate_reason,
    opted_out_reason,
    preview_of,
)
from sms_core.use_cases.campaign_runs import CampaignDeps

log = logging.getLogger(__name__)

_PLAN_CHUNK_BEFORE = 10_000  # the chunk size of plans stored before it was a setting
BUCKET_CLAIMS = 20_000  # claims per bucket, on average: what one bucket job holds in memory
STALL_S = 600  # a preparation with no marker written for this long has lost a job


@dataclass(frozen=True, slots=True)
class _Plan:
    """A background preparation's plan, stored on the campaign (`CampaignRecord.preparation`)."""

    audience: str
    filter: str | None
    chunks: int
    buckets: int
    starts_at: datetime
    fallback_zone: str
    chunk_size: int  # members per chunk job
    stage: str = "chunks"  # chunks | buckets | done
    error: str | None = None

    def stored(self) -> dict[str, Any]:
        """The JSON kept on the campaign."""
        return {"audience": self.audience, "filter": self.filter, "chunks": self.chunks,
                "buckets": self.buckets, "startsAt": self.starts_at.isoformat(),
                "fallbackZone": self.fallback_zone, "chunkSize": self.chunk_size,
                "stage": self.stage, "error": self.error}

    @classmethod
    def of(cls, campaign: CampaignRecord) -> _Plan:
        """The plan of a campaign prepared in the background."""
        p = campaign.preparation
        assert p is not None, "a campaign prepared in the background"
        return cls(p["audience"], p["filter"], int(p["chunks"]), int(p["buckets"]),
                   datetime.fromisoformat(p["startsAt"]), p["fallbackZone"],
                   int(p.get("chunkSize", _PLAN_CHUNK_BEFORE)), p["stage"], p.get("error"))


def runs_in_background(settings: Settings, info: AudienceRecord) -> bool:
    """True when a campaign for this saved audience is prepared by background jobs: a large
    audience saved in blocks (`member_range` reads it a chunk at a time)."""
    return info.layout == 2 and info.size > settings.campaign_prepare_inline_max


def start_preparation(deps: CampaignDeps, campaign: CampaignRecord, info: AudienceRecord,
                      rule: str | None, starts_at: datetime, fallback_zone: str) -> None:
    """Store `campaign` as `preparing` with its plan and enqueue its chunk jobs.

    The caller has validated everything a request can get wrong (sender, template, the
    audience being ready, the filter against its columns).
    """
    size = deps.settings.campaign_prepare_chunk
    chunks = max(1, -(-info.size // size))
    plan = _Plan(info.id, rule, chunks, max(1, -(-info.size // BUCKET_CLAIMS)), starts_at,
                 fallback_zone, size)
    campaign.status, campaign.layout, campaign.span = "preparing", 2, info.size
    campaign.preparation = plan.stored()
    deps.campaigns.create(campaign, [])
    deps.campaign_jobs.enqueue_many(
        [FanoutJob(kind="prepare", campaign=campaign.id, chunk=n) for n in range(chunks)])
    log.info("campaign %s preparing in the background: %d member(s), %d chunk(s), "
             "%d bucket(s)", campaign.id, info.size, chunks, plan.buckets,
             extra=fields(campaign.id, campaignId=campaign.id, members=info.size,
                          chunks=chunks, buckets=plan.buckets))


def _bucket_of(number: str, buckets: int) -> int:
    return zlib.crc32(number.encode("ascii", "replace")) % buckets


def prepare_chunk(deps: CampaignDeps, campaign_id: str, chunk: int) -> None:
    """The `prepare` job: classify one chunk of the audience and write its rows and claims."""
    campaign = deps.campaigns.get(campaign_id)
    if campaign.status != "preparing":
        return
    plan = _Plan.of(campaign)
    if not deps.preparations.marked(campaign_id, "chunk", chunk):
        try:
            info = deps.audiences.get(plan.audience)
        except NotFound:
            _fail(deps, campaign, f"the audience {plan.audience} was deleted while the "
                                  "campaign was prepared")
            return
        _write_chunk(deps, campaign, plan, info, chunk)
    advance(deps, campaign_id)


def _write_chunk(deps: CampaignDeps, campaign: CampaignRecord, plan: _Plan,
                 info: AudienceRecord, chunk: int) -> None:
    lo = chunk * plan.chunk_size
    members = deps.audiences.member_range(info, lo, min(info.size, lo + plan.chunk_size))
    rule = parse_filter(plan.filter) if plan.filter is not None else None
    template = parse_template(campaign.template)
    segments_by_body: dict[str, SegmentInfo] = {}
    rows: list[RecipientRecord] = []
    claims: dict[int, list[ClaimRecord]] = {}
    listed: list[dict[str, Any]] = []
    selected = invalid = 0
    for index, member in members:
        if rule is not None and not rule.matches(member.attributes):
            continue
        place = selected  # among this chunk's selected rows
        selected += 1
        number, reason, body = classify_row(member.to, member.attributes, template)
        if reason is not None:
            rows.append(RecipientRecord(index, number, "invalid", reason=reason))
            invalid += 1
            if len(listed) < MAX_LISTED_INVALID:
                listed.append({"place": place, "to": member.to, "reason": reason})
            continue
        seg = segments_by_body.get(body)
        if seg is None:
            seg = segments_by_body[body] = count_segments(body)
        rows.append(RecipientRecord(index, number, "valid", body=body, segments=seg.segments,
                                    encoding=seg.encoding))
        claims.setdefault(_bucket_of(number, plan.buckets), []).append(ClaimRecord(
            number, index, seg.segments, seg.encoding, "".join(seg.ucs2_characters), place))
    deps.campaigns.write_rows(campaign, rows, new=True)
    deps.preparations.save_claims(campaign.id, claims)
    deps.preparations.mark(campaign.id, "chunk", chunk, {
        "read": len(members), "selected": selected, "invalid": invalid,
        "candidates": selected - invalid, "invalidRows": listed})


def _offsets(chunk_marks: Mapping[int, Mapping[str, Any]], chunks: int) -> list[int]:
    """Where each chunk's selected rows start among all selected rows."""
    out, at = [], 0
    for n in range(chunks):
        out.append(at)
        at += int(chunk_marks[n]["selected"])
    return out


def dedupe_bucket(deps: CampaignDeps, campaign_id: str, bucket: int) -> None:
    """The `bucket` job: keep the first row of each number, block duplicates and opt-outs."""
    campaign = deps.campaigns.get(campaign_id)
    if campaign.status != "preparing":
        return
    plan = _Plan.of(campaign)
    if not deps.preparations.marked(campaign_id, "bucket", bucket):
        offsets = _offsets(deps.preparations.marks(campaign_id, "chunk", full=False),
                           plan.chunks)

        def place(claim: ClaimRecord) -> int:
            return offsets[claim.index // plan.chunk_size] + claim.place

        firsts: list[ClaimRecord] = []
        changed: list[RecipientRecord] = []
        for claim in deps.preparations.claims(campaign_id, bucket):
            if firsts and firsts[-1].to == claim.to:
                changed.append(RecipientRecord(claim.index, claim.to, "duplicate",
                                               reason=duplicate_reason(place(firsts[-1]))))
            else:
                firsts.append(claim)
        opted_out = deps.optouts.opted_out_among(campaign.sender, [c.to for c in firsts])
        changed += [RecipientRecord(c.index, c.to, "optedOut",
                                    reason=opted_out_reason(c.to, campaign.sender))
                    for c in firsts if c.to in opted_out]
        deps.campaigns.write_rows(campaign, changed, new=False)
        sent = [c for c in firsts if c.to not in opted_out]
        deps.preparations.mark(campaign_id, "bucket", bucket, _bucket_tally(
            campaign, plan, sent, duplicates=len(changed) - (len(firsts) - len(sent)),
            opted_out=len(firsts) - len(sent)))
    advance(deps, campaign_id)


def _bucket_tally(campaign: CampaignRecord, plan: _Plan, sent: Sequence[ClaimRecord], *,
                  duplicates: int, opted_out: int) -> dict[str, Any]:
    quiet = (QuietHours.parse(campaign.quiet_hours["start"], campaign.quiet_hours["end"])
             if campaign.quiet_hours else None)
    deferred: Counter[str] = Counter()
    ucs2: dict[str, tuple[int, int]] = {}  # character: (row, place in that row's characters)
    encodings: dict[str, None] = {}
    for c in sent:
        encodings[c.encoding] = None
        for k, ch in enumerate(c.ucs2):
            if ch not in ucs2 or ucs2[ch] > (c.index, k):
                ucs2[ch] = (c.index, k)
        if quiet is not None:
            allowed = next_allowed(quiet, zones_for(c.to), plan.starts_at, plan.fallback_zone)
            if allowed > plan.starts_at:
                deferred[allowed.isoformat()] += 1
    return {
        "valid": len(sent), "duplicates": duplicates, "optedOut": opted_out,
        "segmentsMin": min((c.segments for c in sent), default=0),
        "segmentsMax": max((c.segments for c in sent), default=0),
        "segmentsTotal": sum(c.segments for c in sent),
        "encodings": list(encodings), "ucs2": {ch: list(at) for ch, at in ucs2.items()},
        "deferred": dict(deferred),
        "samples": sorted(c.index for c in sent)[:SAMPLE_COUNT]}


def advance(deps: CampaignDeps, campaign_id: str) -> None:
    """Move a preparation on when its stage is complete: chunks to buckets, buckets to the
    preview. Each move is one ETag-guarded change, so it is done once however many jobs try."""
    campaign = deps.campaigns.get(campaign_id)
    if campaign.status != "preparing":
        return
    plan = _Plan.of(campaign)
    if plan.stage == "chunks":
        if len(deps.preparations.marks(campaign_id, "chunk", full=False)) < plan.chunks:
            return

        def to_buckets(c: CampaignRecord) -> bool:
            if c.status != "preparing" or _Plan.of(c).stage != "chunks":
                return False
            c.preparation = {**(c.preparation or {}), "stage": "buckets"}
            return True

        campaign, moved = _change(deps, campaign, to_buckets)
        if moved:
            deps.campaign_jobs.enqueue_many(
                [FanoutJob(kind="bucket", campaign=campaign_id, chunk=n)
                 for n in range(plan.buckets)])
        return
    if plan.stage == "buckets" and len(
            deps.preparations.marks(campaign_id, "bucket", full=False)) >= plan.buckets:
        _finish(deps, campaign, plan)


def _finish(deps: CampaignDeps, campaign: CampaignRecord, plan: _Plan) -> None:
    chunk_marks = deps.preparations.marks(campaign.id, "chunk")
    bucket_marks = deps.preparations.marks(campaign.id, "bucket")
    offsets = _offsets(chunk_marks, plan.chunks)
    tally = PreviewTally()
    for n in range(plan.chunks):
        mark = chunk_marks[n]
        tally.counts.total += int(mark["selected"])
        tally.counts.invalid += int(mark["invalid"])
        room = MAX_LISTED_INVALID - len(tally.invalid_rows)
        tally.invalid_rows += [InvalidRowPublic(index=offsets[n] + int(r["place"]),
                                                to=r["to"], reason=r["reason"])
                               for r in mark["invalidRows"][:max(0, room)]]
    ucs2: dict[str, tuple[int, int]] = {}
    sample_rows: list[int] = []
    for mark in bucket_marks.values():
        tally.counts.valid += int(mark["valid"])
        tally.counts.duplicates += int(mark["duplicates"])
        tally.counts.opted_out += int(mark["optedOut"])
        if int(mark["valid"]):
            tally.segments_min = min(int(mark["segmentsMin"]),
                                     tally.segments_min or int(mark["segmentsMin"]))
            tally.segments_max = max(tally.segments_max, int(mark["segmentsMax"]))
            tally.segments_total += int(mark["segmentsTotal"])
        tally.encodings.update(mark["encodings"])
        for ch, at in mark["ucs2"].items():
            ucs2[ch] = min(ucs2.get(ch, (at[0], at[1])), (at[0], at[1]))
        for due, n in mark["deferred"].items():
            tally.deferred[datetime.fromisoformat(due)] += int(n)
        sample_rows += mark["samples"]
    tally.ucs2_characters = sorted(ucs2, key=lambda ch: ucs2[ch])
    tally.samples = [SamplePublic(to=r.to, message=r.body, segments=r.segments,
                                  encoding=r.encoding)
                     for r in deps.campaigns.rows(campaign, sorted(sample_rows)[:SAMPLE_COUNT])]
    if tally.counts.total == 0:
        read = sum(int(m["read"]) for m in chunk_marks.values())
        _fail(deps, campaign, f"the filter matches none of the {read} members" if plan.filter
              else "the audience has no recipients")
        return
    preview = preview_of(tally, deps.settings.sender_rate_per_minute, plan.starts_at)
    # Every bucket is marked, so nothing reads the claims again: deleted before the campaign is
    # prepared, so a prepared campaign has nothing of its preparation left to clean up.
    run_all(lambda b: deps.preparations.forget_claims(campaign.id, b), range(plan.buckets))

    def to_prepared(c: CampaignRecord) -> bool:
        if c.status != "preparing":
            return False
        c.status, c.total, c.valid = "prepared", tally.counts.total, tally.counts.valid
        c.preview, c.preparation = preview.public(), {**(c.preparation or {}), "stage": "done"}
        return True

    campaign, moved = _change(deps, campaign, to_prepared)
    if not moved:
        return
    log.info("campaign %s prepared in the background: %d recipient row(s), %d valid",
             campaign.id, campaign.total, campaign.valid,
             extra=fields(campaign.id, campaignId=campaign.id, rows=campaign.total,
                          valid=campaign.valid))


def _change(deps: CampaignDeps, campaign: CampaignRecord,
            mutate: Callable[[CampaignRecord], bool]) -> tuple[CampaignRecord, bool]:
    """`Campaigns.change`, and whether this call made the change (False when it found it
    made by another job, or not to be made)."""
    made = False

    def tracked(c: CampaignRecord) -> bool:
        nonlocal made
        made = mutate(c)
        return made

    return deps.campaigns.change(campaign, tracked), made


def _fail(deps: CampaignDeps, campaign: CampaignRecord, reason: str) -> None:
    def to_failed(c: CampaignRecord) -> bool:
        if c.status != "preparing":
            return False
        c.status = "failed"
        c.preparation = {**(c.preparation or {}), "error": reason}
        return True

    deps.campaigns.change(campaign, to_failed)
    log.warning("campaign %s could not be prepared: %s", campaign.id, reason,
                extra=fields(campaign.id, campaignId=campaign.id, reason=reason))


def drop_preparation(deps: CampaignDeps, campaign: CampaignRecord) -> None:
    """After a cancel: delete the claims of a preparation that had not finished (its jobs
    stop at the status; best effort, a chunk job writing just now may leave a few)."""
    if campaign.preparation is None or _Plan.of(campaign).stage == "done":
        return
    run_all(lambda b: deps.preparations.forget_claims(campaign.id, b),
            range(_Plan.of(campaign).buckets))


def preparation_view(deps: CampaignDeps, campaign: CampaignRecord
                     ) -> PreparationPublic | None:
    """How far a background preparation is (None for a campaign prepared in the request).

    A preparing campaign's counts come from the markers of its done chunks and buckets: one
    query each, of their counts only.
    """
    if campaign.preparation is None:
        return None
    plan = _Plan.of(campaign)
    counts = RecipientCountsPublic()
    read = 0
    if campaign.status == "prepared" or plan.stage == "done":
        counts = RecipientCountsPublic.model_validate(campaign.preview["recipients"])
        read = campaign.span
    elif campaign.status in ("preparing", "failed"):
        candidates = 0
        for mark in deps.preparations.marks(campaign.id, "chunk", full=False).values():
            read += int(mark["read"])
            counts.total += int(mark["selected"])
            counts.invalid += int(mark["invalid"])
            candidates += int(mark["candidates"])
        for mark in deps.preparations.marks(campaign.id, "bucket", full=False).values():
            counts.duplicates += int(mark["duplicates"])
            counts.opted_out += int(mark["optedOut"])
        counts.valid = candidates - counts.duplicates - counts.opted_out
    return PreparationPublic(stage=plan.stage, rows_read=read, rows_total=campaign.span,
                             counts=counts, error=plan.error)


def resume_preparations(deps: CampaignDeps, now: datetime | None = None) -> int:
    """The timer's share: enqueue again the missing jobs of a preparation whose markers have
    not moved for `STALL_S` (a lost enqueue, a job gone to poison). Returns how many."""
    now = now or datetime.now(UTC)
    resumed = 0
    for campaign in deps.campaigns.with_status("preparing"):
        plan = _Plan.of(campaign)
        stage = "chunk" if plan.stage == "chunks" else "bucket"
        marks = deps.preparations.marks(campaign.id, stage, full=False)
        latest = max([campaign.updated_at, *(m["at"] for m in marks.values() if "at" in m)])
        if now - latest < timedelta(seconds=STALL_S):
            continue
        parts = plan.chunks if stage == "chunk" else plan.buckets
        missing = [n for n in range(parts) if n not in marks]
        if not missing:  # every part is done: only the move to the next stage was lost
            advance(deps, campaign.id)
            continue
        deps.campaign_jobs.enqueue_many(
            [FanoutJob(kind="prepare" if stage == "chunk" else "bucket", campaign=campaign.id,
                       chunk=n) for n in missing])
        resumed += 1
        log.warning("campaign %s: preparation resumed, %d %s job(s) enqueued again",
                    campaign.id, len(missing), stage,
                    extra=fields(campaign.id, campaignId=campaign.id, stage=stage,
                                 jobs=len(missing)))
    return resumed
