"""Campaign, audience and template models: requests in, jobs on the `sms-campaigns` queue.

The shapes are documented in openapi.yaml and README "Campaigns". Everything a campaign request
can get wrong is caught here or in `sms_core.use_cases.campaigns` before anything is written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from sms_core.errors import FieldError, RequestInvalid
from sms_core.models.messages import MAX_MESSAGE_CHARS, MAX_TAG_CHARS
from sms_core.rules.audience_csv import AudienceRow, CsvAudienceError, parse_audience_csv
from sms_core.rules.message_text import check_text
from sms_core.rules.quiet_hours import QuietHours

MAX_CAMPAIGN_RECIPIENTS = 100_000  # message row keys hold 5 digits
MAX_NAME_CHARS = 200
MAX_UPLOAD_PART_BYTES = 4 * 1024 * 1024  # a part of an uploaded audience file
MAX_UPLOAD_PARTS = 10_000  # 40 GiB in all

# Template variables arrive as JSON scalars; they are rendered as text.
VarValue = StrictStr | int | float | bool


def _text(value: VarValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class RecipientIn(BaseModel):
    """One recipient of an inline audience: a number and the variables for the template."""

    model_config = ConfigDict(extra="forbid")

    to: StrictStr
    vars: dict[str, VarValue] = Field(default_factory=dict)

    def attributes(self) -> dict[str, str]:
        """The variables as text."""
        return {k: _text(v) for k, v in self.vars.items()}


class AudienceIn(BaseModel):
    """A campaign's audience: inline recipients, an inline CSV, or a saved audience."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    recipients: list[RecipientIn] | None = Field(None, max_length=MAX_CAMPAIGN_RECIPIENTS)
    csv: StrictStr | None = None
    audience_id: StrictStr | None = Field(None, alias="audienceId")
    filter: StrictStr | None = None

    @model_validator(mode="after")
    def _one_source(self) -> AudienceIn:
        given = [n for n, v in (("recipients", self.recipients), ("csv", self.csv),
                                ("audienceId", self.audience_id)) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of recipients, csv or audienceId"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


class ScheduleIn(BaseModel):
    """When to send: once at `sendAt`, or on a 5-field `cron` in an IANA `timezone`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    send_at: datetime | None = Field(None, alias="sendAt")
    cron: StrictStr | None = None
    timezone: StrictStr | None = None

    @field_validator("send_at")
    @classmethod
    def _offset(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("sendAt must include a UTC offset, e.g. 2030-01-31T09:00:00+01:00")
        return value.astimezone(UTC)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = " ".join(value.split())
        if len(value.split(" ")) != 5 or not croniter.is_valid(value):
            raise ValueError("cron must be 5 fields: minute hour day-of-month month "
                             "day-of-week, e.g. '0 9 * * 1' (Mondays at 09:00)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/Amsterdam)"
                             ) from None
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleIn:
        if (self.send_at is None) == (self.cron is None):
            raise ValueError("give either sendAt or cron")
        if self.timezone is not None and self.cron is None:
            raise ValueError("timezone goes with cron (sendAt carries its own offset)")
        return self

    @property
    def recurring(self) -> bool:
        """True for a cron schedule."""
        return self.cron is not None

    def next_after(self, moment: datetime) -> datetime | None:
        """The first run strictly after `moment` (UTC), or None when there is none."""
        if self.send_at is not None:
            return self.send_at if self.send_at > moment else None
        zone = ZoneInfo(self.timezone or "UTC")
        it = croniter(self.cron, moment.astimezone(zone))
        nxt: datetime = it.get_next(datetime)
        return nxt.astimezone(UTC)

    def public(self) -> dict[str, Any]:
        """The JSON shape."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class QuietHoursIn(BaseModel):
    """`{"start": "21:00", "end": "08:00"}` in each recipient's local time."""

    model_config = ConfigDict(extra="forbid")

    start: StrictStr
    end: StrictStr

    @model_validator(mode="after")
    def _valid(self) -> QuietHoursIn:
        QuietHours.parse(self.start, self.end)  # raises ValueError with a clear message
        return self

    def window(self) -> QuietHours:
        """The parsed window."""
        return QuietHours.parse(self.start, self.end)


class CampaignRequest(BaseModel):
    """Body of `POST /api/campaigns` (prepare)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: StrictStr = Field(min_length=1, max_length=MAX_NAME_CHARS)
    from_: StrictStr | None = Field(None, alias="from")
    template: StrictStr | None = Field(None, min_length=1, max_length=MAX_MESSAGE_CHARS)
    template_id: StrictStr | None = Field(None, alias="templateId")
    audience: AudienceIn
    tag: StrictStr | None = Field(None, max_length=MAX_TAG_CHARS)
    schedule: ScheduleIn | None = None
    quiet_hours: QuietHoursIn | None = Field(None, alias="quietHours")
    delivery_report: bool = Field(True, alias="deliveryReport")

    @field_validator("template")
    @classmethod
    def _template_text(cls, value: str | None) -> str | None:
        return None if value is None else check_text(value)

    @model_validator(mode="after")
    def _one_template(self) -> CampaignRequest:
        if (self.template is None) == (self.template_id is None):
            raise ValueError("give either template (the text) or templateId")
        return self


class SendConfirmation(BaseModel):
    """Body of `POST /api/campaigns/{id}/send`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    confirmation_token: StrictStr = Field(alias="confirmationToken", min_length=1,
                                          max_length=200)


class TemplateRequest(BaseModel):
    """Body of `POST /api/templates`."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(min_length=1, max_length=MAX_NAME_CHARS)
    text: StrictStr = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return check_text(value)


class AudienceRequest(BaseModel):
    """Body of `POST /api/audiences` as JSON (a CSV upload gives the name as `?name=`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: StrictStr = Field(min_length=1, max_length=MAX_NAME_CHARS)
    recipients: list[RecipientIn] | None = Field(None, max_length=MAX_CAMPAIGN_RECIPIENTS)
    csv: StrictStr | None = None
    # A file sent in parts (`POST /api/audiences/uploads`), imported in the background.
    upload_id: StrictStr | None = Field(None, alias="uploadId", min_length=1, max_length=64)
    parts: StrictInt | None = Field(None, ge=1, le=MAX_UPLOAD_PARTS)

    @model_validator(mode="after")
    def _one_source(self) -> AudienceRequest:
        given = [n for n, v in (("recipients", self.recipients), ("csv", self.csv),
                                ("uploadId", self.upload_id)) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of recipients, csv or uploadId"
                             + (f" (got {', '.join(given)})" if given else ""))
        if (self.parts is None) != (self.upload_id is None):
            raise ValueError("parts goes with uploadId: how many parts were uploaded")
        return self


class FanoutJob(BaseModel):
    """A message on `sms-campaigns`: fire a due run, fan out one chunk of a run, cancel the
    waiting messages of one chunk of a canceled run, import (a slice of) an uploaded audience
    file, or do a part (`chunk`: a chunk or a bucket) of a campaign's background preparation."""

    model_config = ConfigDict(populate_by_name=True)

    v: Literal[1] = 1
    kind: Literal["fire", "chunk", "cancel", "import", "prepare", "bucket"]
    campaign: str = ""
    run: str = ""
    chunk: int = 0
    audience: str = ""

    @model_validator(mode="after")
    def _names_its_subject(self) -> FanoutJob:
        if (self.kind == "import") != bool(self.audience) or (
                self.kind in ("fire", "chunk", "cancel") and not (self.campaign and self.run)
        ) or (
                self.kind in ("prepare", "bucket") and not self.campaign):
            raise ValueError("an import names its audience; a fire, chunk or cancel job its "
                             "campaign and run; a prepare or bucket job its campaign")
        return self

    def encode(self) -> str:
        """The queue message text."""
        return self.model_dump_json(by_alias=True)


def invalid_field(field_name: str, message: str) -> RequestInvalid:
    """A 400 about one field, saying what is wrong with it."""
    return RequestInvalid(f"{field_name}: {message}", [FieldError(field_name, message)])


def csv_audience_rows(text: str, field_name: str = "body") -> list[AudienceRow]:
    """A CSV audience as rows, or a 400 naming the field and the line of the malformed row."""
    try:
        return parse_audience_csv(text, max_rows=MAX_CAMPAIGN_RECIPIENTS)
    except CsvAudienceError as exc:
        raise invalid_field(field_name, str(exc)) from None
