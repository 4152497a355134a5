"""The work of the `sms-campaigns` queue and of the campaign timer, one entry point each."""

from __future__ import annotations

from typing import Protocol

from sms_core.models.campaigns import FanoutJob
from sms_core.use_cases.audience_import import import_audience
from sms_core.use_cases.campaign_preparation import (
    dedupe_bucket,
    prepare_chunk,
    resume_preparations,
)
from sms_core.use_cases.campaign_runs import CampaignDeps, handle_fanout_job, run_due
from sms_core.use_cases.ports import AudienceImports, Audiences, Uploads


class _AudienceRows(Audiences, AudienceImports, Protocol):
    """The audiences as campaigns read them and as an import writes them."""


class CampaignJobDeps(CampaignDeps, Protocol):
    """What every kind of `sms-campaigns` job needs (`ImportDeps` too)."""

    @property
    def audiences(self) -> _AudienceRows: ...
    @property
    def uploads(self) -> Uploads: ...


def handle_campaign_job(deps: CampaignJobDeps, job: FanoutJob) -> None:
    """Process one message of `sms-campaigns`: a run fired or fanned out, an audience file
    imported, or a part of a campaign's background preparation."""
    if job.kind == "import":
        import_audience(deps, job.audience)
    elif job.kind == "prepare":
        prepare_chunk(deps, job.campaign, job.chunk)
    elif job.kind == "bucket":
        dedupe_bucket(deps, job.campaign, job.chunk)
    else:
        handle_fanout_job(deps, job)


def campaign_tick(deps: CampaignDeps) -> int:
    """The campaign timer's work: fire due runs, settle finished ones, resume preparations
    that lost a job. Returns how many runs fired."""
    fired = run_due(deps)
    resume_preparations(deps)
    return fired
