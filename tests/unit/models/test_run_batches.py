"""A campaign run's message batches name their run: dispatch finds the run of a batch to ask
whether it was canceled."""

from __future__ import annotations

from datetime import UTC, datetime

from sms_core.models.records import (
    RunRecord,
    new_campaign_id,
    run_batch,
    run_key,
    run_of_batch,
)


def test_every_block_batch_of_a_run_names_the_run() -> None:
    campaign = new_campaign_id()
    key = run_key(datetime(2026, 12, 2, 16, 5, 9, tzinfo=UTC))
    run = RunRecord(campaign, key, 30, "sending", datetime.now(UTC),
                    batch_id=run_batch(campaign, key), blocks=3)
    assert [run_of_batch(b) for b in run.batches] == [(campaign, key)] * 3
    assert key == "20261202T160509Z"


def test_other_batches_name_no_run() -> None:
    campaign = new_campaign_id()
    for batch in ("20261202160509a1b2c3d4e5f6a7b8c9d0", f"{campaign}r20261202T160509Z",
                  run_batch(campaign, "20261202T160509Z") + "x1", ""):
        assert run_of_batch(batch) is None, batch
