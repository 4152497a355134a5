"""The work of the `sms-campaigns` queue and of the campaign timer, one entry point each."""

from __future__ import annotations

from typing import Protocol

from sms_core.concurrency import Slots
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


# Preparation jobs one process runs side by side. Each holds a chunk or a bucket in memory (tens
# of MB for 10,000 members) and is CPU-bound; the host hands out up to batchSize +
# newBatchThreshold (24) messages of a queue at once, which for a 200,000-member audience (20
# chunks) took the host past 600 MB. More than a few at once adds memory, not speed.
PREPARATION_JOBS_AT_ONCE = 4
PREPARATION_RETRY_S = 5  # a job that found no slot comes back this much later
_preparation_slots = Slots(PREPARATION_JOBS_AT_ONCE)


def handle_campaign_job(deps: CampaignJobDeps, job: FanoutJob) -> None:
    """Process one message of `sms-campaigns`: a run fired or fanned out, an audience file
    imported, or a part of a campaign's background preparation."""
    if job.kind == "import":
        import_audience(deps, job.audience)
    elif job.kind in ("prepare", "bucket"):
        with _preparation_slots.held() as slot:
            if not slot:  # put back, not waited for: a waiting job would hold a worker
                deps.campaign_jobs.enqueue(job, PREPARATION_RETRY_S)
            elif job.kind == "prepare":
                prepare_chunk(deps, job.campaign, job.chunk)
            else:
                dedupe_bucket(deps, job.campaign, job.chunk)
    else:
        handle_fanout_job(deps, job)


def campaign_tick(deps: CampaignDeps) -> int:
    """The campaign timer's work: fire due runs, settle finished ones, resume preparations
    that lost a job. Returns how many runs fired."""
    fired = run_due(deps)
    resume_preparations(deps)
    return fired
