"""Campaigns: prepare -> review -> confirm, then follow; cancel what has not left.

`prepare_campaign` validates everything, takes a snapshot of the audience (one row per
recipient with its verdict and rendered text) and answers with the preview and a confirmation
token; nothing is sent. `confirm_send` checks the token against the prepared snapshot and hands
the campaign to its schedule (`sms_core.use_cases.campaign_runs` fires runs and fans them out).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sms_core.errors import Conflict, NotFound
from sms_core.logs import concern, fields
from sms_core.models.campaign_views import (
    CampaignListPublic,
    CampaignPublic,
    CampaignSummaryPublic,
    InvalidRowPublic,
    PreparedCampaignPublic,
    SamplePublic,
)
from sms_core.models.campaigns import (
    AudienceIn,
    CampaignRequest,
    ScheduleIn,
    SendConfirmation,
    csv_audience_rows,
    invalid_field,
)
from sms_core.models.queries import PageQuery
from sms_core.models.records import (
    AudienceRecord,
    CampaignRecord,
    RecipientRecord,
    is_campaign_id,
    new_campaign_id,
)
from sms_core.rules.audience_filter import AudienceFilter, FilterSyntaxError, parse_filter
from sms_core.rules.quiet_hours import QuietHours, next_allowed, zones_for
from sms_core.rules.segments import SegmentInfo, count_segments
from sms_core.rules.templates import (
    MessageTemplate,
    TemplateSyntaxError,
    parse_template,
)
from sms_core.rules.times import check_send_at
from sms_core.use_cases.campaign_preparation import (
    drop_preparation,
    preparation_view,
    runs_in_background,
    start_preparation,
)
from sms_core.use_cases.campaign_preview import (
    SAMPLE_COUNT,
    PreviewTally,
    add_invalid,
    classify_row,
    duplicate_reason,
    opted_out_reason,
    preview_of,
)
from sms_core.use_cases.campaign_runs import CampaignDeps, arm, cancel_runs, refresh_runs
from sms_core.use_cases.ports import Campaigns
from sms_core.use_cases.sending import resolve_sender

log = logging.getLogger(__name__)



@dataclass(frozen=True, slots=True)
class _Source:
    """One audience row before classification, with where it came from."""

    to: str
    attributes: dict[str, str]
    line: int | None = None


def load_audience(deps: CampaignDeps, audience: AudienceIn) -> list[_Source]:
    """The audience rows a campaign asks for (inline, CSV or saved), after its filter."""
    rows: list[_Source]
    if audience.recipients is not None:
        rows = [_Source(r.to, r.attributes()) for r in audience.recipients]
    elif audience.csv is not None:
        rows = [_Source(r.to, r.attributes, r.line)
                for r in csv_audience_rows(audience.csv, "audience.csv")]
    else:
        assert audience.audience_id is not None
        try:
            ready_audience(deps.audiences.get(audience.audience_id))
            members = deps.audiences.members(audience.audience_id)
        except NotFound as exc:
            raise invalid_field("audience.audienceId", exc.detail) from None
        rows = [_Source(m.to, m.attributes) for m in members]
    if audience.filter is not None:
        rule = checked_filter(audience.filter, [r.attributes for r in rows], "audience.filter")
        total = len(rows)
        rows = [r for r in rows if rule.matches(r.attributes)]
        if not rows:
            raise invalid_field("audience.filter",
                                f"the filter matches none of the {total} members")
    if not rows:
        raise invalid_field("audience", "the audience has no recipients")
    return rows


def ready_audience(info: AudienceRecord) -> AudienceRecord:
    """The audience, if its members can be used: a 409 while its file is imported, or when
    the import failed."""
    if info.status == "importing":
        raise Conflict(f"The audience {info.id} is still importing its file ({info.size} "
                       "member(s) so far); use it once its status is ready.")
    if info.status == "failed":
        raise Conflict(f"The audience {info.id} could not be imported (line "
                       f"{info.error_line}: {info.error}); upload the file again.")
    return info


def checked_filter(text: str, members: Sequence[Mapping[str, str]],
                   field_name: str) -> AudienceFilter:
    """The parsed audience rule, or a 400 naming `field_name`: a syntax error, or a column no
    member has (a typo would otherwise quietly match nobody)."""
    if not members:  # "the audience has no recipients" says more than any column could
        return checked_rule(text, None, field_name)
    return checked_rule(text, {key for m in members for key in m}, field_name)


def checked_rule(text: str, columns: Iterable[str] | None, field_name: str) -> AudienceFilter:
    """The parsed rule, checked against the audience's `columns` (not checked with None)."""
    try:
        rule = parse_filter(text)
    except FilterSyntaxError as exc:
        raise invalid_field(field_name, str(exc)) from None
    if columns is None:
        return rule
    columns = sorted(set(columns), key=str.casefold)
    unknown = rule.unknown_attributes(columns)
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        known = (f"the audience's columns are: {', '.join(columns)}" if columns
                 else "the audience has no columns besides to")
        raise invalid_field(field_name,
                            f"unknown column{'s' if len(unknown) > 1 else ''} {names}; {known}")
    return rule


def compile_template(text: str, field_name: str = "template") -> MessageTemplate:
    """A template, or a 400 pointing at the column of the bad placeholder."""
    try:
        return parse_template(text)
    except TemplateSyntaxError as exc:
        raise invalid_field(field_name, str(exc)) from None


def _classify(deps: CampaignDeps, sender: str, template: MessageTemplate,
              sources: Sequence[_Source], quiet: QuietHours | None, starts_at: datetime,
              fallback_zone: str) -> tuple[list[RecipientRecord], PreviewTally]:
    tally = PreviewTally()
    seen: dict[str, int] = {}
    candidates: list[tuple[int, str, str, SegmentInfo]] = []
    segments_by_body: dict[str, SegmentInfo] = {}
    verdicts: list[RecipientRecord | None] = [None] * len(sources)
    for i, src in enumerate(sources):
        number, reason, body = classify_row(src.to, src.attributes, template)
        if reason is not None:
            verdicts[i] = RecipientRecord(i, number, "invalid", reason=reason)
            add_invalid(tally, InvalidRowPublic(index=i, to=src.to, reason=reason,
                                                line=src.line))
        elif number in seen:
            verdicts[i] = RecipientRecord(i, number, "duplicate",
                                          reason=duplicate_reason(seen[number]))
            tally.counts.duplicates += 1
        else:
            seen[number] = i
            info = segments_by_body.get(body)
            if info is None:
                info = segments_by_body[body] = count_segments(body)
            candidates.append((i, number, body, info))
    opted_out = deps.optouts.opted_out_among(sender, [c[1] for c in candidates])
    ucs2: dict[str, None] = {}
    for i, number, body, info in candidates:
        if number in opted_out:
            verdicts[i] = RecipientRecord(i, number, "optedOut",
                                          reason=opted_out_reason(number, sender))
            tally.counts.opted_out += 1
            continue
        verdicts[i] = RecipientRecord(i, number, "valid", body=body, segments=info.segments,
                                      encoding=info.encoding)
        tally.add_sent(info.segments, info.encoding)
        ucs2.update(dict.fromkeys(info.ucs2_characters))
        if len(tally.samples) < SAMPLE_COUNT:
            tally.samples.append(SamplePublic(to=number, message=body, segments=info.segments,
                                              encoding=info.encoding))
        if quiet is not None:
            allowed = next_allowed(quiet, zones_for(number), starts_at, fallback_zone)
            if allowed > starts_at:
                tally.deferred[allowed] += 1
    tally.counts.total = len(sources)
    tally.ucs2_characters = list(ucs2)
    return [v for v in verdicts if v is not None], tally


def _template_text(deps: CampaignDeps, request: CampaignRequest) -> tuple[str, str]:
    if request.template is not None:
        return request.template, "template"
    assert request.template_id is not None
    try:
        return deps.templates.get(request.template_id).text, "templateId"
    except NotFound as exc:
        raise invalid_field("templateId", exc.detail) from None


def _first_run(schedule: ScheduleIn | None, now: datetime) -> datetime:
    if schedule is None:
        return now
    if schedule.send_at is not None:
        # The rule of POST /api/messages too; a campaign has no upper limit (it is not held
        # on a queue, the scheduler's index keeps it).
        try:
            return check_send_at(schedule.send_at, now, most_ahead=None)
        except ValueError as exc:
            raise invalid_field("schedule.sendAt", str(exc)) from None
    first = schedule.next_after(now)
    if first is None:  # a cron expression always has a next run; kept for safety
        raise invalid_field("schedule.cron", "has no run after now")
    return first


def prepare_campaign(deps: CampaignDeps, request: CampaignRequest) -> PreparedCampaignPublic:
    """`POST /api/campaigns`: validate, snapshot, preview. Sends nothing.

    A large saved audience is prepared in the background (`campaign_preparation`): the answer
    is then the campaign `preparing`, whose preview comes once its jobs are done.
    """
    sender = resolve_sender(request.from_, deps.settings.default_from)
    text, template_field = _template_text(deps, request)
    template = compile_template(text, template_field)
    now = datetime.now(UTC)
    starts_at = _first_run(request.schedule, now)
    fallback = (request.schedule.timezone if request.schedule else None) or "UTC"
    token, token_hash = deps.campaigns.new_token()
    campaign = CampaignRecord(
        id=new_campaign_id(), name=request.name, sender=sender, template=text,
        status="prepared", created_at=now, updated_at=now, total=0, valid=0, preview={},
        token_hash=token_hash, template_id=request.template_id, tag=request.tag,
        delivery_report=request.delivery_report,
        schedule=request.schedule.public() if request.schedule else None,
        quiet_hours=request.quiet_hours.model_dump() if request.quiet_hours else None,
        layout=2)
    concern(campaignId=campaign.id)
    large = _large_audience(deps, request.audience)
    if large is not None:
        start_preparation(deps, campaign, large, request.audience.filter, starts_at, fallback)
    else:
        sources = load_audience(deps, request.audience)
        quiet = request.quiet_hours.window() if request.quiet_hours else None
        rows, tally = _classify(deps, sender, template, sources, quiet, starts_at, fallback)
        campaign.total, campaign.valid = len(sources), tally.counts.valid
        campaign.preview = preview_of(tally, deps.settings.sender_rate_per_minute,
                                      starts_at).public()
        deps.campaigns.create(campaign, rows)
        log.info("campaign %s prepared: %d recipient row(s), %d valid", campaign.id,
                 campaign.total, campaign.valid,
                 extra=fields(campaign.id, campaignId=campaign.id, rows=campaign.total,
                              valid=campaign.valid))
    return PreparedCampaignPublic(**dict(campaign_view(deps, campaign)),
                                  confirmation_token=token)


def _large_audience(deps: CampaignDeps, audience: AudienceIn) -> AudienceRecord | None:
    """The saved audience, when it is one that is prepared in the background (its filter
    checked against its columns first); None for every other audience."""
    if audience.audience_id is None:
        return None
    try:
        info = ready_audience(deps.audiences.get(audience.audience_id))
    except NotFound as exc:
        raise invalid_field("audience.audienceId", exc.detail) from None
    if not runs_in_background(deps.settings, info):
        return None
    if audience.filter is not None:
        checked_rule(audience.filter, info.columns, "audience.filter")
    return info


def review_campaign(deps: CampaignDeps, campaign_id: str) -> PreparedCampaignPublic:
    """`POST /api/campaigns/{id}/review`: a prepared campaign's preview again, with a new
    confirmation token.

    The token is stored only as its hash, so a campaign prepared earlier (in another browser
    session, by another person) is confirmed by reviewing it again. The new token replaces the
    old one: whoever sends has seen the latest review. Only a prepared campaign is reviewed.
    """
    concern(campaignId=campaign_id)
    token, new_hash = deps.campaigns.new_token()

    def rotate(c: CampaignRecord) -> bool:
        if c.status != "prepared":
            return False
        c.token_hash = new_hash
        return True

    campaign = deps.campaigns.change(deps.campaigns.get(campaign_id), rotate)
    if campaign.token_hash != new_hash:
        raise Conflict(f"The campaign is {campaign.status}; only a prepared campaign is "
                       "reviewed before it is sent.")
    return PreparedCampaignPublic(**dict(campaign_view(deps, campaign)),
                                  confirmation_token=token)


def confirm_send(deps: CampaignDeps, campaign_id: str,
                 confirmation: SendConfirmation) -> CampaignPublic:
    """`POST /api/campaigns/{id}/send`: confirm with the token from the preparation.

    A retry with the same token answers with the campaign as it is now and starts nothing new.
    """
    concern(campaignId=campaign_id)
    campaign = deps.campaigns.get(campaign_id)
    if not campaign.token_matches(confirmation.confirmation_token):
        raise Conflict("confirmationToken does not match this campaign's latest review: use "
                       "the token of POST /api/campaigns or, when the campaign was reviewed "
                       "since, of its latest POST /api/campaigns/{id}/review.")
    if campaign.status == "canceled":
        raise Conflict("The campaign was canceled; prepare a new one to send it.")
    if campaign.status == "preparing":
        raise Conflict("The campaign is still being prepared; send it once its status is "
                       "prepared (GET /api/campaigns/{id} shows how far it is).")
    if campaign.status == "failed":
        raise Conflict("The campaign could not be prepared (see preparation.error); prepare "
                       "a new one.")
    if campaign.status != "prepared":
        return campaign_view(deps, campaign)
    schedule = ScheduleIn.model_validate(campaign.schedule) if campaign.schedule else None
    now = datetime.now(UTC)
    due = (schedule.next_after(now) if schedule else None) or now
    # The schedule index first: if this request dies here, the timer still fires the run.
    deps.campaigns.schedule(campaign.id, due)

    def to_scheduled(c: CampaignRecord) -> bool:
        if c.status != "prepared":
            return False
        c.status, c.next_run_at = "scheduled", due
        return True

    campaign = deps.campaigns.change(campaign, to_scheduled)
    log.info("campaign %s confirmed: first run due %s", campaign.id, due.isoformat(),
             extra=fields(campaign.id, campaignId=campaign.id, dueAt=due.isoformat()))
    arm(deps, campaign.id, due)
    return campaign_view(deps, deps.campaigns.get(campaign.id))


def cancel_campaign(deps: CampaignDeps, campaign_id: str) -> CampaignPublic:
    """`POST /api/campaigns/{id}/cancel`: no further runs; queued messages become canceled.

    Messages already handed to ACS (or being handed right now) are not called back.
    """
    concern(campaignId=campaign_id)
    campaign = deps.campaigns.get(campaign_id)
    if campaign.status == "completed":
        raise Conflict("The campaign has completed; nothing is left to cancel.")

    def to_canceled(c: CampaignRecord) -> bool:
        if c.status in ("canceled", "completed"):
            return False
        c.status, c.next_run_at = "canceled", None
        return True

    campaign = deps.campaigns.change(campaign, to_canceled)
    if campaign.status != "canceled":
        raise Conflict("The campaign has completed; nothing is left to cancel.")
    cancel_runs(deps, campaign)
    drop_preparation(deps, campaign)
    return campaign_view(deps, campaign)


def campaign_view(deps: CampaignDeps, campaign: CampaignRecord) -> CampaignPublic:
    """The campaign with its preview, its runs and live counts over all runs."""
    # A campaign that was never confirmed has no runs to read.
    campaign, runs = ((campaign, []) if campaign.status in _UNCONFIRMED
                      else refresh_runs(deps, campaign))
    return CampaignPublic.with_runs(campaign, runs, preparation_view(deps, campaign))


_UNCONFIRMED = ("preparing", "failed", "prepared")


def get_campaign(deps: CampaignDeps, campaign_id: str) -> CampaignPublic:
    """`GET /api/campaigns/{id}`."""
    concern(campaignId=campaign_id)
    return campaign_view(deps, deps.campaigns.get(campaign_id))


def list_campaigns(campaigns: Campaigns, query: PageQuery) -> CampaignListPublic:
    """`GET /api/campaigns?limit=&after=`: oldest first, paged by the last id seen.

    An `after` that is no campaign id is a 400 naming it: as a cursor it would silently answer
    an empty page (or skip campaigns), as if there were none.
    """
    if query.after is not None and not is_campaign_id(query.after):
        raise invalid_field("after", "not a cursor of this API: give the `next` of the "
                                     "previous page (a campaign id)")
    items, after = campaigns.page(query.limit, query.after)
    return CampaignListPublic(campaigns=[CampaignSummaryPublic.of(c) for c in items],
                              next=after)
