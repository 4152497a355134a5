"""The `sms-campaigns` dispatcher: preparation jobs run a few at a time in one process, and the
others are put back for later, not lost and not waited for."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, cast

import pytest

from sms_core.errors import NotFound
from sms_core.models.campaigns import FanoutJob
from sms_core.use_cases import campaign_jobs
from sms_core.use_cases.campaign_jobs import (
    PREPARATION_JOBS_AT_ONCE,
    PREPARATION_RETRY_S,
    handle_campaign_job,
)
from tests.unit.fakes import FakeDeps


@pytest.mark.parametrize("kind", ["prepare", "bucket"])
def test_a_preparation_job_without_a_slot_is_put_back_for_later(deps: FakeDeps,
                                                                 kind: str) -> None:
    job = FanoutJob.model_validate({"kind": kind, "campaign": "c20261202000000aaaaaaaaaaaa",
                                    "chunk": 3})
    with ExitStack() as busy:  # every slot held by jobs running now
        for _ in range(PREPARATION_JOBS_AT_ONCE):
            assert busy.enter_context(campaign_jobs._preparation_slots.held())
        handle_campaign_job(cast(Any, deps), job)  # nothing is read: it would be NotFound
    assert deps.campaign_jobs.decoded(FanoutJob) == [(job, PREPARATION_RETRY_S)]
    # With the slots free again, it runs (here: its campaign does not exist).
    with pytest.raises(NotFound):
        handle_campaign_job(cast(Any, deps), job)
    assert len(deps.campaign_jobs.enqueued) == 1
