"""Campaign, audience and template views: what the campaign use cases return (`*Public` out).

The shapes are documented in openapi.yaml (`PreparedCampaign`, `Campaign`, `CampaignList`,
`Audience`, `Template`) and walked through in README "Campaigns". `public()` gives the JSON
body: camelCase names, times as `datetime.isoformat()` writes them (`+00:00`), and a key left
out only where its field says so (`exclude_if`): the optional campaign fields that are not set
and the CSV `line` of an invalid row. The nullable keys (`encoding`, `deferredUntil`,
`finishedAt`, `next`) are always there, null when there is nothing to say.

The preview is stored with the campaign as the JSON `PreviewPublic.public()` gives, and read back
with `PreviewPublic.model_validate`; the stored schedule and quiet hours are read the same way.
So those parts take their camelCase names in as well as out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from sms_core.models.records import (
    AudienceRecord,
    CampaignRecord,
    RunRecord,
    TemplateRecord,
    UploadRecord,
)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


# A time as these answers have always written it: `isoformat()`, so `+00:00` for UTC where
# pydantic's own JSON form would write `Z`.
IsoDatetime = Annotated[datetime, PlainSerializer(_iso, return_type=str, when_used="json")]


def _unset(value: object) -> bool:
    return value is None


class _Public(BaseModel):
    """A view: `public()` is its JSON body."""

    def public(self) -> dict[str, Any]:
        """The JSON shape (keys left out only where a field's `exclude_if` says so)."""
        return self.model_dump(mode="json", by_alias=True)


class _Stored(_Public):
    """A view part that is also stored as JSON with the campaign, and read back from it."""

    model_config = ConfigDict(populate_by_name=True)


# -- the preview (stored with the campaign) ----------------------------------------------------

class RecipientCountsPublic(_Stored):
    """How the audience was classified; exact, however many rows are listed."""

    total: int = 0
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    opted_out: int = Field(0, alias="optedOut")
    deferred: int = 0  # valid, but inside quiet hours at the planned start


class InvalidRowPublic(_Stored):
    """A row that will not be sent, and why."""

    index: int  # among the rows the campaign selected (after its filter)
    to: str  # as given
    reason: str
    line: int | None = Field(None, exclude_if=_unset)  # the CSV line, for a CSV audience


class SegmentRangePublic(_Stored):
    """Segments per message over the valid recipients."""

    min: int
    max: int
    total: int


class SamplePublic(_Stored):
    """One rendered message, as a valid recipient will get it."""

    to: str
    message: str
    segments: int
    encoding: str


class EstimatePublic(_Stored):
    """When the run starts and when its last message leaves, at the sender's pace."""

    rate_per_minute: int = Field(alias="ratePerMinute")
    duration_seconds: int = Field(alias="durationSeconds")
    starts_at: IsoDatetime = Field(alias="startsAt")
    finishes_at: IsoDatetime = Field(alias="finishesAt")
    deferred_until: IsoDatetime | None = Field(None, alias="deferredUntil")


class PreviewPublic(_Stored):
    """What a campaign will send, as prepared: counts, listed invalid rows, samples, estimate."""

    recipients: RecipientCountsPublic
    invalid_rows: list[InvalidRowPublic] = Field(alias="invalidRows")
    invalid_rows_truncated: bool = Field(alias="invalidRowsTruncated")
    segments: SegmentRangePublic
    encoding: str | None  # GSM-7, UCS-2, mixed; null when nobody is valid
    ucs2_characters: list[str] = Field(alias="ucs2Characters")
    samples: list[SamplePublic]
    estimate: EstimatePublic


class SchedulePublic(_Stored):
    """The schedule as the request gave it (`ScheduleIn.public()`, stored so)."""

    # Stored in pydantic's JSON form (`Z`), and answered the same way.
    send_at: datetime | None = Field(None, alias="sendAt", exclude_if=_unset)
    cron: str | None = Field(None, exclude_if=_unset)
    timezone: str | None = Field(None, exclude_if=_unset)


class QuietHoursPublic(_Stored):
    """The daily window, as the request gave it."""

    start: str
    end: str


# -- campaigns ---------------------------------------------------------------------------------

class CampaignCountsPublic(_Public):
    """Messages of a run (or of every run) by status; `queued` includes `scheduled`."""

    queued: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    blocked: int = 0
    canceled: int = 0
    expired: int = 0

    @classmethod
    def of(cls, statuses: Mapping[str, int]) -> CampaignCountsPublic:
        """The counts of a message status tally (statuses the view does not show are left out)."""
        out = dict.fromkeys(cls.model_fields, 0)
        for status, n in statuses.items():
            key = "queued" if status == "scheduled" else status
            if key in out:
                out[key] += n
        return cls(**out)


class RunPublic(_Public):
    """One delivery of a campaign with its live counts."""

    id: str  # the run's due time, e.g. 20261122T090000Z
    status: str  # sending | completed | canceled
    started_at: IsoDatetime = Field(serialization_alias="startedAt")
    finished_at: IsoDatetime | None = Field(serialization_alias="finishedAt")
    counts: CampaignCountsPublic

    @classmethod
    def of(cls, run: RunRecord, statuses: Mapping[str, int]) -> RunPublic:
        """The view of a stored run and the status tally of its messages."""
        return cls(id=run.key, status=run.status, started_at=run.started_at,
                   finished_at=run.finished_at, counts=CampaignCountsPublic.of(statuses))


class PreparationPublic(_Public):
    """How far the background preparation of a large audience is; its counts grow as its
    chunks are read (duplicates and opt-outs once every chunk is), and are the preview's when
    it is done."""

    stage: str  # chunks | buckets | done
    rows_read: int = Field(serialization_alias="rowsRead")
    rows_total: int = Field(serialization_alias="rowsTotal")
    counts: RecipientCountsPublic
    error: str | None = Field(None, exclude_if=_unset)


class CampaignSummaryPublic(_Public):
    """A campaign without its preview and live counts: an entry of `GET /api/campaigns`."""

    id: str
    name: str
    status: str  # preparing | failed | prepared | scheduled | sending | completed | canceled
    from_: str = Field(serialization_alias="from")
    template: str
    created_at: IsoDatetime = Field(serialization_alias="createdAt")
    updated_at: IsoDatetime = Field(serialization_alias="updatedAt")
    run_count: int = Field(serialization_alias="runCount")
    recipients: RecipientCountsPublic
    template_id: str | None = Field(None, serialization_alias="templateId", exclude_if=_unset)
    tag: str | None = Field(None, exclude_if=_unset)
    schedule: SchedulePublic | None = Field(None, exclude_if=_unset)
    quiet_hours: QuietHoursPublic | None = Field(None, serialization_alias="quietHours",
                                                 exclude_if=_unset)
    next_run_at: IsoDatetime | None = Field(None, serialization_alias="nextRunAt",
                                            exclude_if=_unset)

    @classmethod
    def of(cls, campaign: CampaignRecord,
           recipients: RecipientCountsPublic | None = None) -> CampaignSummaryPublic:
        """The summary of a stored campaign (its counts from the stored preview, unless given)."""
        return cls(
            id=campaign.id, name=campaign.name, status=campaign.status, from_=campaign.sender,
            template=campaign.template, created_at=campaign.created_at,
            updated_at=campaign.updated_at, run_count=campaign.runs,
            recipients=(recipients if recipients is not None else
                        RecipientCountsPublic.model_validate(
                            campaign.preview.get("recipients", {}))),
            template_id=campaign.template_id, tag=campaign.tag,
            schedule=(SchedulePublic.model_validate(campaign.schedule)
                      if campaign.schedule is not None else None),
            quiet_hours=(QuietHoursPublic.model_validate(campaign.quiet_hours)
                         if campaign.quiet_hours is not None else None),
            next_run_at=campaign.next_run_at)


class CampaignPublic(CampaignSummaryPublic):
    """Body of `GET /api/campaigns/{id}` and of the send and cancel answers; `preview` is null
    until a background preparation is done (`preparation` says how far it is)."""

    preview: PreviewPublic | None
    counts: CampaignCountsPublic  # over all runs
    runs: list[RunPublic]
    preparation: PreparationPublic | None = Field(None, exclude_if=_unset)

    @classmethod
    def with_runs(cls, campaign: CampaignRecord,
                  runs: Sequence[tuple[RunRecord, Mapping[str, int]]],
                  preparation: PreparationPublic | None = None) -> CampaignPublic:
        """The view of a stored campaign and of its runs with their status tallies."""
        preview = PreviewPublic.model_validate(campaign.preview) if campaign.preview else None
        totals: dict[str, int] = {}
        for _run, statuses in runs:
            for status, n in statuses.items():
                totals[status] = totals.get(status, 0) + n
        summary = CampaignSummaryPublic.of(
            campaign, preview.recipients if preview is not None else
            preparation.counts if preparation is not None else None)
        return cls(**dict(summary), preview=preview, counts=CampaignCountsPublic.of(totals),
                   runs=[RunPublic.of(run, statuses) for run, statuses in runs],
                   preparation=preparation)


class PreparedCampaignPublic(CampaignPublic):
    """Body of `POST /api/campaigns` (201 prepared, or 202 preparing in the background) and of
    a review: the campaign and the token that confirms it."""

    confirmation_token: str = Field(serialization_alias="confirmationToken")


class CampaignListPublic(_Public):
    """Body of `GET /api/campaigns`: oldest first; `next` is the `after` of the next page."""

    campaigns: list[CampaignSummaryPublic]
    next: str | None


# -- saved audiences and templates -------------------------------------------------------------

class ImportProgressPublic(_Public):
    """How far the import of an uploaded file has read it."""

    bytes_read: int = Field(serialization_alias="bytesRead")
    total_bytes: int = Field(serialization_alias="totalBytes")


class ImportErrorPublic(_Public):
    """Why an import failed: the file's line and what is wrong there."""

    line: int
    detail: str


class AudiencePublic(_Public):
    """A saved audience, without its members; `status` says whether an uploaded file is
    still being imported (`size` counts the members so far), or failed and why."""

    id: str
    name: str
    size: int
    columns: list[str]
    created_at: IsoDatetime = Field(serialization_alias="createdAt")
    status: Literal["ready", "importing", "failed"] = "ready"
    progress: ImportProgressPublic | None = Field(None, exclude_if=_unset)
    error: ImportErrorPublic | None = Field(None, exclude_if=_unset)

    @classmethod
    def of(cls, info: AudienceRecord) -> AudiencePublic:
        """The view of a stored audience."""
        progress = (ImportProgressPublic(bytes_read=info.bytes_read,
                                         total_bytes=info.upload_bytes)
                    if info.upload_id is not None else None)
        error = (ImportErrorPublic(line=info.error_line or 1, detail=info.error)
                 if info.status == "failed" and info.error else None)
        return cls(id=info.id, name=info.name, size=info.size, columns=info.columns,
                   created_at=info.created_at,
                   status=info.status,
                   progress=progress, error=error)


class UploadPublic(_Public):
    """An upload to send an audience file to, part by part."""

    id: str
    part_bytes: int = Field(serialization_alias="partBytes")
    expires_at: IsoDatetime = Field(serialization_alias="expiresAt")

    @classmethod
    def of(cls, info: UploadRecord, part_bytes: int) -> UploadPublic:
        """The view of a new upload."""
        return cls(id=info.id, part_bytes=part_bytes, expires_at=info.expires_at)


class UploadPartPublic(_Public):
    """A part received."""

    upload_id: str = Field(serialization_alias="uploadId")
    part: int
    bytes: int


class AudienceListPublic(_Public):
    """Body of `GET /api/audiences`."""

    audiences: list[AudiencePublic]


class AudienceCountPublic(_Public):
    """Body of `GET /api/audiences/{id}/count`: the members, and how many the rule matches."""

    members: int
    matching: int


class TemplatePublic(_Public):
    """A saved template with the variables it asks for."""

    id: str
    name: str
    text: str
    variables: list[str]
    created_at: IsoDatetime = Field(serialization_alias="createdAt")

    @classmethod
    def of(cls, info: TemplateRecord) -> TemplatePublic:
        """The view of a stored template."""
        return cls(id=info.id, name=info.name, text=info.text, variables=info.variables,
                   created_at=info.created_at)


class TemplateListPublic(_Public):
    """Body of `GET /api/templates`."""

    templates: list[TemplatePublic]
