"""The outbox sweeper (`sweep_outbox`): accepted messages whose job was never written."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from sms_core.models.messages import DispatchJob, MessageStatus
from sms_core.use_cases.outbox import FIRST_LOOKBACK, GRACE, OVERLAP, sweep_outbox
from sms_core.use_cases.ports import Job
from tests.unit.fakes import FakeDeps
from tests.unit.use_cases.steps import ALICE, BOB, run_jobs, send


class Crash(Exception):
    """The accepting process dies here."""


@pytest.fixture
def stranded(deps: FakeDeps, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Two messages stored whose job was never written (the request died in between)."""
    deps.pacer.room_now = False

    def die(jobs: Sequence[Job], delay_s: float = 0) -> None:
        raise Crash

    monkeypatch.setattr(deps.jobs, "enqueue_many", die)
    with pytest.raises(Crash):
        send(deps, to=[ALICE, BOB], message="Hi")
    monkeypatch.undo()
    return [r.id for r in deps.messages.all()]


def later(by: timedelta = GRACE + timedelta(seconds=1)) -> datetime:
    return datetime.now(UTC) + by


def test_a_stranded_message_is_enqueued_once_after_the_grace_period(
        deps: FakeDeps, stranded: list[str]) -> None:
    assert sweep_outbox(deps) == 0  # the request may still be working on it
    assert deps.jobs.enqueued == []
    assert sweep_outbox(deps, later()) == 2
    ((job, delay),) = deps.jobs.decoded(DispatchJob)
    assert job.indices == [0, 1] and delay == 0
    assert sweep_outbox(deps, later()) == 0  # its row is gone: never twice
    run_jobs(deps)
    assert deps.gateway.texts_to(ALICE) == deps.gateway.texts_to(BOB) == ["Hi"]


def test_messages_that_left_meanwhile_are_not_enqueued_again(
        deps: FakeDeps, stranded: list[str]) -> None:
    batch = stranded[0].rsplit("-", 1)[0]
    deps.jobs.enqueue_many([DispatchJob(batch=batch, indices=[0, 1])])  # the job did get out
    run_jobs(deps)
    assert sweep_outbox(deps, later()) == 0  # both sent: the row is only cleared
    assert deps.jobs.enqueued == [] and deps.messages.outbox_rows == {}
    assert deps.gateway.texts_to(ALICE) == ["Hi"]


def test_a_scheduled_message_stranded_keeps_its_time(deps: FakeDeps,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    deps.pacer.room_now = False
    at = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)

    def die(jobs: Sequence[Job], delay_s: float = 0) -> None:
        raise Crash

    monkeypatch.setattr(deps.jobs, "enqueue_many", die)
    with pytest.raises(Crash):
        send(deps, to=ALICE, message="Later", sendAt=at.isoformat())
    monkeypatch.undo()
    assert sweep_outbox(deps, later()) == 1
    ((job, delay),) = deps.jobs.decoded(DispatchJob)
    assert job.not_before == at and 3 * 3600 - 60 < delay <= 3 * 3600
    assert deps.messages.all()[0].status == MessageStatus.SCHEDULED


def test_the_cursor_moves_to_the_grace_boundary_and_the_first_sweep_looks_back_a_day(
        deps: FakeDeps) -> None:
    now = datetime.now(UTC)
    sweep_outbox(deps, now)
    assert deps.messages.cursor == now - GRACE
    assert FIRST_LOOKBACK > OVERLAP > GRACE
